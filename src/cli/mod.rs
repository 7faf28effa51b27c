//! The command line (clap). Each subcommand lives in its own module.

mod bundle;
mod crawl;
mod list;
mod mount;
mod refresh;

use crate::config::{default_cache_dir, Config};
use crate::fetch::{FetchConfig, MirrorMap};
use crate::manifest::Manifest;
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The repository's manifest, compiled in: what `mount` and `bundle` serve by default.
pub const SHIPPED_MANIFEST: &str = include_str!("../../manifest.yml");

#[derive(Parser)]
#[command(name = "kpackfs", version, about = "Kernel build headers of every distribution kernel, one path away")]
pub struct Cli {
    /// Configuration file (default: $KPACKFS_CONFIG, else /etc/kpackfs/config.yml if present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a bundle .tgz from local package files or from a manifest entry.
    Bundle(bundle::BundleArgs),
    /// Mount every bundle of the manifest, built on first access.
    Mount(mount::MountArgs),
    /// Unmount a kpackfs mount (the daemon then exits).
    Umount(mount::UmountArgs),
    /// Show a mount's bundles, cache use and hit counts.
    Status(mount::StatusArgs),
    /// List the manifest's bundles.
    List(list::ListArgs),
    /// Refresh package lists and the manifest from the repositories in sources.yml.
    Crawl(crawl::CrawlArgs),
}

/// Where packages come from: cache, mirrors, timeouts.
#[derive(Args, Clone, Debug)]
pub struct FetchArgs {
    /// Cache directory (packages, bundles, index).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Rewrite a canonical URL prefix to a mirror at fetch time (repeatable).
    #[arg(long = "mirror", value_name = "CANONICAL=LOCAL")]
    pub mirrors: Vec<String>,
    /// Do not use the host's apt Debian mirror for Debian URLs.
    #[arg(long)]
    pub no_apt_mirrors: bool,
    /// Give up on a transfer that sends nothing for this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::util::parse_duration)]
    pub stall_timeout: std::time::Duration,
    /// Attempts after the first on transient HTTP failures.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
}

impl FetchArgs {
    pub fn cache_dir(&self, config: &Config) -> PathBuf {
        self.cache_dir.clone().or_else(|| config.cache_dir.clone()).unwrap_or_else(default_cache_dir)
    }

    pub fn fetch_config(&self, config: &Config) -> Result<FetchConfig> {
        let mut mirrors = MirrorMap::default();
        for rule in &self.mirrors {
            mirrors.add_rule(rule)?;
        }
        for (canonical, mirror) in &config.mirrors {
            if !mirrors.rules().iter().any(|(c, _)| c == canonical.trim_end_matches('/')) {
                mirrors.add(canonical, mirror);
            }
        }
        if !self.no_apt_mirrors && config.apt_mirrors.unwrap_or(true) {
            mirrors.add_defaults(&MirrorMap::from_apt(Path::new("/etc/apt")));
        }
        Ok(FetchConfig { stall_timeout: self.stall_timeout, retries: self.retries, mirrors, ..FetchConfig::default() })
    }
}

/// Load `--manifest FILE`, or the shipped one.
pub fn load_manifest(path: Option<&Path>, lists_dir: Option<&Path>) -> Result<Manifest> {
    match path {
        Some(p) => Manifest::load(p, lists_dir),
        None => Manifest::parse(SHIPPED_MANIFEST, &Default::default()).context("loading the shipped manifest"),
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info,fuser=error",
        1 => "debug,fuser=warn,hyper=info,reqwest=info,rustls=info",
        _ => "trace",
    };
    let env = env_logger::Env::default().default_filter_or(default);
    let _ = env_logger::Builder::from_env(env).format_target(false).try_init();
}

/// Run the command line; errors print as one line and exit 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = Config::load(cli.config.as_deref()).and_then(|config| match cli.command {
        Command::Bundle(args) => bundle::run(args, &config),
        Command::Mount(args) => mount::run(args, &config),
        Command::Umount(args) => mount::umount(args),
        Command::Status(args) => mount::status(args),
        Command::List(args) => list::run(args),
        Command::Crawl(args) => crawl::run(args, &config),
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kpackfs: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
