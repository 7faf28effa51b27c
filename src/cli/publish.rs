//! `kpackfs publish [SELECTOR…] --to URL`: build every selected bundle the
//! destination lacks and upload it (src/publish.rs). Selectors: NAME,
//! TYPE/NAME, TYPE/ (a whole type), or a regular expression over TYPE/NAME;
//! none: every bundle served. `--shard I/N`: this worker's share of them.
//! Exit 1 when any bundle failed (each named with its cause in the
//! summary).

use super::{FetchArgs, ViewArgs};
use crate::lookup::select::select;
use crate::publish::{self, Job, Layout, Outcome, Shard};
use crate::settings::{parse, Settings};
use anyhow::{Context, Result};
use clap::Args;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

#[derive(Args)]
pub struct PublishArgs {
    /// Bundles: NAME, TYPE/NAME, TYPE/ (every bundle of a type), or a regular expression over TYPE/NAME. None: all.
    #[arg(value_name = "SELECTOR")]
    selectors: Vec<String>,
    /// Where: s3://bucket/prefix, gs://…, az://…, file:///path, or a directory.
    #[arg(long, value_name = "URL|DIR")]
    to: String,
    /// Bundles in flight at once (their downloads overlap the CPU-bound builds).
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// The id layout (what --remote reads), collector's bundle-<name>.tgz, or both.
    #[arg(long, value_enum, default_value = "both")]
    layout: Layout,
    /// Also keep every selected bundle's packages in the destination by sha256 (the package tier: other
    /// hosts download them once, and bundles can be rebuilt after upstream deleted them).
    #[arg(long)]
    packages: bool,
    /// Only this worker's share, I of N (0 ≤ I < N), split by bundle id: N workers given 0/N to N-1/N
    /// publish every bundle between them (a Kubernetes Indexed Job: --shard $(JOB_COMPLETION_INDEX)/N).
    /// Workers without shards may share a bucket too: each bundle is still built once.
    #[arg(long, value_name = "I/N", value_parser = Shard::parse)]
    shard: Option<Shard>,
    /// Largest uncompressed size of one bundle's contents (default 2G).
    #[arg(long, value_name = "SIZE", value_parser = parse::size)]
    max_bundle_size: Option<u64>,
    #[command(flatten)]
    view: ViewArgs,
    #[command(flatten)]
    fetch: FetchArgs,
}

fn destination(to: &str) -> Result<String> {
    if to.contains("://") {
        return Ok(to.to_string());
    }
    let dir = std::path::Path::new(to);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {to}"))?;
    let abs = dir.canonicalize().with_context(|| format!("resolving {to}"))?;
    Ok(url::Url::from_directory_path(&abs).map_err(|()| anyhow::anyhow!("{to}: not a path"))?.to_string())
}

pub fn run(args: PublishArgs, base: &Settings) -> Result<ExitCode> {
    let settings = super::settings(base, |s| {
        args.fetch.apply(s);
        args.view.apply(s);
        super::max_bundle_size(s, args.max_bundle_size);
    });
    let view = args.view.open(&settings)?;
    let slots = select(&view.index, &args.selectors)?;
    let jobs: Vec<Job> = slots
        .iter()
        .filter_map(|s| {
            let (id, spec, _) = view.index.entry(*s)?;
            if args.shard.is_some_and(|shard| !shard.holds(&id)) {
                return None;
            }
            let name = spec.name.clone()?;
            Some(Job { id, label: format!("{}/{name}", spec.kind), name, spec: Arc::new(spec) })
        })
        .collect();
    let url = destination(&args.to)?;
    let remote = Arc::new(crate::remote::Remote::open(&url, crate::remote::options_from(&settings.fetch, false))?);
    let counters: Arc<crate::observe::Counters> = Arc::default();
    let store = crate::fetch::PackageStore::open(&settings.cache_dir.join("packages"))?;
    let env = crate::build::Env {
        fetcher: crate::daemon::with_package_tier(
            crate::fetch::Fetcher::http(settings.fetch.clone(), store)?,
            &settings,
            Some(&remote),
            // Read, never written by the fetcher: `--packages` writes each
            // package itself (once, and counted), and without it publish
            // writes bundles alone.
            false,
        ),
        tier: Some(remote.clone()),
        limits: settings.limits(),
        sandbox: crate::build::source::sandbox::Limits::of(&settings),
        image: crate::build::image::Limits::of(&settings),
        counters: counters.clone(),
        cache: None,
    };
    let total = jobs.len();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} bundles, {per_sec}, ETA {eta} {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let shown = Arc::new(Mutex::new(bar.clone()));
    let done: publish::OnDone = Arc::new(move |job, outcome| {
        let bar = shown.lock().unwrap_or_else(|e| e.into_inner());
        match (bar.as_ref(), outcome) {
            (Some(b), _) => {
                b.set_message(job.label.clone());
                b.inc(1);
            }
            (None, Outcome::Failed(e)) => log::error!("publish {}: {e}", job.label),
            (None, o) => log::info!("publish {}: {o:?}", job.label),
        }
    });
    let started = std::time::Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let (results, deferred) = runtime.block_on(publish::publish_all(
        jobs,
        env,
        publish::Asked { layout: args.layout, packages: args.packages },
        args.parallel,
        done,
    ));
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let count = |f: fn(&Outcome) -> bool| results.iter().filter(|(_, o)| f(o)).count();
    let published = count(|o| matches!(o, Outcome::Published(_)));
    let present = count(|o| matches!(o, Outcome::Present));
    let failed: Vec<&(Job, Outcome)> = results.iter().filter(|(_, o)| matches!(o, Outcome::Failed(_))).collect();
    let mut summary = format!(
        "published {published}, already there {present}, failed {} of {total} bundles to {} in {:.1}s \
         (built here {}, deferred behind another worker's claim {deferred})\n",
        failed.len(),
        remote.url(),
        started.elapsed().as_secs_f64(),
        counters.builds.load(std::sync::atomic::Ordering::Relaxed),
    );
    for (job, outcome) in &failed {
        if let Outcome::Failed(cause) = outcome {
            summary.push_str(&format!("  failed {}: {cause}\n", job.label));
        }
    }
    super::print(&summary)?;
    Ok(if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
