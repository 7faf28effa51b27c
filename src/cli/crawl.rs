//! `kpackfs crawl [SOURCE…]`: refresh package lists and the manifest from
//! the repositories in sources.yml. Every selected source is tried; the
//! exit code says the worst outcome ([`crawl::report::exit`]).

use super::FetchArgs;
use crate::crawl::{self, sources, Progress};
use crate::settings::Settings;
use anyhow::{Context, Result};
use clap::Args;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

#[derive(Args)]
pub struct CrawlArgs {
    /// Sources to crawl, by name or by type (default: all).
    sources: Vec<String>,
    /// The sources file (default: the shipped kernel-package-lists/sources.yml).
    #[arg(long = "sources", value_name = "FILE")]
    sources_file: Option<PathBuf>,
    /// Where the package lists (<source>.txt) go (default: <cache-dir>/crawl/kernel-package-lists).
    #[arg(long, value_name = "DIR")]
    lists_dir: Option<PathBuf>,
    /// The manifest to update (default: <cache-dir>/crawl/manifest.yml, which the mount merges).
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Sources crawled at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    #[command(flatten)]
    fetch: FetchArgs,
}

/// One spinner per source on a terminal.
struct Bars {
    multi: indicatif::MultiProgress,
    bars: Mutex<HashMap<String, indicatif::ProgressBar>>,
}

impl Bars {
    fn bar(&self, source: &str) -> indicatif::ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        bars.entry(source.to_string())
            .or_insert_with(|| {
                let bar = self.multi.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {prefix:28} {wide_msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar.set_prefix(source.to_string());
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                bar
            })
            .clone()
    }
}

impl Progress for Bars {
    fn step(&self, source: &str, message: &str) {
        self.bar(source).set_message(message.to_string());
    }
    fn done(&self, source: &str, outcome: &crawl::Outcome) {
        self.bar(source).finish_with_message(outcome.line());
    }
}

pub fn run(args: CrawlArgs, base: &Settings) -> Result<ExitCode> {
    let settings = super::settings(base, |s| {
        args.fetch.apply(s);
        if let Some(f) = &args.sources_file {
            // So the sources' client certificates and archives apply.
            s.sources = Some(f.clone());
        }
    });
    let sources_file = settings.sources.clone();
    let all = sources::load(sources_file.as_deref())?;
    let selected = sources::select(&all, &args.sources)?;
    let cache_dir = settings.cache_dir.clone();
    let (default_lists, default_manifest) = crawl::default_paths(&cache_dir);
    let opts = crawl::Options {
        lists_dir: args.lists_dir.unwrap_or(default_lists),
        manifest: args.manifest.clone().unwrap_or_else(|| default_manifest.clone()),
        index_cache: cache_dir.join("crawl/index-cache"),
        fetch: settings.fetch,
        parallel: args.parallel,
        state: crawl::state_path(&cache_dir),
        // Sources named by hand are tried now; a crawl of all of them skips
        // those that keep being unreachable until their backoff ends.
        backoff: args.sources.is_empty(),
    };
    let served_by_mount = opts.manifest == default_manifest;
    let progress: Arc<dyn Progress> = if std::io::stderr().is_terminal() {
        Arc::new(Bars { multi: indicatif::MultiProgress::new(), bars: Mutex::default() })
    } else {
        Arc::new(crawl::LogProgress)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = runtime.block_on(crawl::run(&selected, &opts, progress))?;
    // What a mount of this cache serves, counted as the mount and status count.
    let mount_counts = if served_by_mount {
        let inputs =
            crate::namespace::served::Inputs::new(settings.manifest.clone(), settings.lists_dir.clone(), &cache_dir);
        match inputs.index_read_only() {
            Ok(index) => format!("a mount of {} serves {}\n", cache_dir.display(), index.counts.summary()),
            Err(e) => format!("a mount of {} could not load its manifest: {e:#}\n", cache_dir.display()),
        }
    } else {
        String::new()
    };
    super::print(&format!(
        "{}{mount_counts}lists: {}  manifest: {}\n",
        report.summary(),
        opts.lists_dir.display(),
        opts.manifest.display()
    ))?;
    Ok(ExitCode::from(report.exit_code()))
}
