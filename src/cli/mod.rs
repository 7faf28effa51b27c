//! The command line (clap): each subcommand maps its arguments onto the
//! library and the daemon; nothing else lives here.

mod bundle;
mod crawl;
mod docs;
mod helper;
mod list;
mod mount;
mod publish;
mod serve;
mod which;

use crate::config::Config;
use crate::daemon::settings::Settings;
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// List the bundles a mount with the same settings serves (or a running mount's).
    List(list::ListArgs),
    /// The headers of a kernel: the running one, a release, a package file, a bundle name.
    Which(which::WhichArgs),
    /// Refresh package lists and the manifest from the repositories in sources.yml.
    Crawl(crawl::CrawlArgs),
    /// Build the selected bundles a bucket or directory lacks and upload them.
    Publish(publish::PublishArgs),
    /// Serve the bundles' .tgz files over HTTP, for hosts without FUSE.
    Serve(serve::ServeArgs),
    /// Print a shell completion script (bash, zsh, fish).
    Completions(docs::CompletionsArgs),
    /// Print the man page, or write every page into a directory.
    Man(docs::ManArgs),
}

/// Where packages come from: cache, mirrors, timeouts. Unset flags fall
/// back to the configuration file, then to the defaults (docs/operations.md).
#[derive(Args, Clone, Debug, Default)]
pub struct FetchArgs {
    /// Cache directory (packages, bundles, index).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<String>,
    /// Rewrite a canonical URL prefix to a mirror at fetch time (repeatable).
    #[arg(long = "mirror", value_name = "CANONICAL=LOCAL")]
    pub mirrors: Vec<String>,
    /// Do not use the host's apt Debian mirror for Debian URLs.
    #[arg(long)]
    pub no_apt_mirrors: bool,
    /// Give up on a transfer that sends nothing for this long (default 30s).
    #[arg(long, value_name = "DURATION")]
    pub stall_timeout: Option<String>,
    /// Give up on a transfer averaging less than this per second after 30 s (default 20K).
    #[arg(long, value_name = "SIZE")]
    pub min_rate: Option<String>,
    /// Give up on a package after this long, all attempts included (default 30m).
    #[arg(long, value_name = "DURATION")]
    pub download_deadline: Option<String>,
    /// Attempts after the first on transient HTTP failures (default 3).
    #[arg(long)]
    pub retries: Option<String>,
    /// The shared bundle tier, read before building and written after: s3://bucket/prefix, gs://…, az://…,
    /// file:///path, or read-only http(s)://… (S3 settings from AWS_* variables; docs/operations.md).
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
    /// Read the remote tier, never write to it.
    #[arg(long)]
    pub remote_read_only: bool,
}

/// What a mount or server serves from: the manifest and the cache's budget.
#[derive(Args, Clone, Debug, Default)]
pub struct ServedArgs {
    /// Manifest to serve (default: the shipped manifest, merged with the latest crawl result).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<String>,
    /// kernel-packer package lists (*.txt) for a manifest of simplified names.
    #[arg(long, value_name = "DIR")]
    pub lists_dir: Option<String>,
    /// Byte budget of the cache (default 10G).
    #[arg(long, value_name = "SIZE")]
    pub cache_size: Option<String>,
}

impl ServedArgs {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        [("manifest", &self.manifest), ("lists_dir", &self.lists_dir), ("cache_size", &self.cache_size)]
            .into_iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
            .collect()
    }
}

impl FetchArgs {
    /// Flags as `(key, value)` settings.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let single = [
            ("cache_dir", &self.cache_dir),
            ("stall_timeout", &self.stall_timeout),
            ("min_rate", &self.min_rate),
            ("download_deadline", &self.download_deadline),
            ("retries", &self.retries),
            ("remote", &self.remote),
        ];
        for (k, v) in single {
            if let Some(v) = v {
                out.push((k, v.clone()));
            }
        }
        out.extend(self.mirrors.iter().map(|m| ("mirror", m.clone())));
        if self.no_apt_mirrors {
            out.push(("apt_mirrors", "false".into()));
        }
        if self.remote_read_only {
            out.push(("remote_read_only", "true".into()));
        }
        out
    }
}

/// Settings from defaults, the configuration file, then `extra` (mount
/// options and flags, in that order).
pub fn settings(config: &Config, extra: &[(&str, String)]) -> Result<Settings> {
    let mut s = Settings::defaults();
    for (k, v) in &config.pairs {
        s.set(k, v).map_err(|e| anyhow::anyhow!("config: {e:#}"))?;
    }
    for (k, v) in extra {
        s.set(k, v).map_err(|e| anyhow::anyhow!("--{}: {e:#}", k.replace('_', "-")))?;
    }
    s.finish();
    Ok(s)
}

/// Write to stdout. A reader that went away (`kpackfs list | head`) ends
/// the command quietly, with success: see [`main`].
pub fn print(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush())?;
    Ok(())
}

/// Write to stderr, ignoring a closed one (`kpackfs … 2>&1 | head`).
pub fn eprint(text: &str) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

/// Which bundles to look at, for commands that name them: what a mount
/// with these settings serves, or what a running mount serves.
#[derive(Args, Clone, Debug, Default)]
pub struct ViewArgs {
    /// The manifest (default: the shipped one), merged with the last crawl in the cache directory.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// kernel-packer package lists (*.txt) for a manifest of simplified names.
    #[arg(long, value_name = "DIR")]
    pub lists_dir: Option<PathBuf>,
    /// Look at exactly what the kpackfs mount at MOUNTPOINT serves.
    #[arg(long, value_name = "MOUNTPOINT")]
    pub mount: Option<PathBuf>,
}

impl ViewArgs {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(m) = &self.manifest {
            out.push(("manifest", m.display().to_string()));
        }
        if let Some(l) = &self.lists_dir {
            out.push(("lists_dir", l.display().to_string()));
        }
        out
    }

    /// The view, with settings from the config, `cache_dir` and these flags.
    pub fn open(&self, config: &Config, extra: &[(&'static str, String)]) -> Result<crate::lookup::view::View> {
        let mut pairs = extra.to_vec();
        pairs.extend(self.pairs());
        let settings = settings(config, &pairs)?;
        crate::lookup::view::View::open(self.mount.as_deref(), &settings)
    }
}

fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info,fuser=error",
        1 => "debug,fuser=warn,hyper=info,reqwest=info,rustls=info",
        _ => "trace",
    };
    // fuser tries to unmount again when its session ends after an external
    // `umount` and warns that it failed: not news, and not a failure.
    let filter = match std::env::var("RUST_LOG") {
        Ok(user) => format!("{user},fuser::mnt=error"),
        Err(_) => format!("{default},fuser::mnt=error"),
    };
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(&filter).format_target(false);
    if crate::daemon::notify::logging_to_journal() {
        // journald stamps each line itself; a sd-daemon(3) prefix gives it the priority.
        builder.format(|buf, record| {
            use std::io::Write;
            let priority = match record.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            writeln!(buf, "<{priority}>{}", record.args())
        });
    }
    let _ = builder.try_init();
}

/// The command line as parsed (after the mount helper's translation):
/// what a detaching `kpackfs mount` re-executes.
static ARGV: std::sync::OnceLock<Vec<std::ffi::OsString>> = std::sync::OnceLock::new();

fn argv_after_program() -> Vec<std::ffi::OsString> {
    ARGV.get().map(|a| a.iter().skip(1).cloned().collect()).unwrap_or_else(|| std::env::args_os().skip(1).collect())
}

/// Run the command line; errors print as one line and exit 1.
pub fn main() -> ExitCode {
    // Whatever umask we inherit, nothing we create is writable by others.
    // SAFETY: umask has no preconditions.
    unsafe {
        let old = libc::umask(0o022);
        libc::umask(old | 0o022);
    }
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let argv = match helper::translate(&argv) {
        Some(helper::Helper::Fake) => return ExitCode::SUCCESS,
        Some(helper::Helper::Mount(translated)) => translated,
        None => argv,
    };
    let _ = ARGV.set(argv.clone());
    let cli = Cli::parse_from(argv);
    init_logging(cli.verbose);
    let result = Config::load(cli.config.as_deref()).and_then(|config| match cli.command {
        Command::Bundle(args) => bundle::run(args, &config),
        Command::Mount(args) => mount::run(args, &config),
        Command::Umount(args) => mount::umount(args),
        Command::Status(args) => mount::status(args),
        Command::List(args) => list::run(args, &config),
        Command::Which(args) => which::run(args, &config),
        Command::Crawl(args) => crawl::run(args, &config),
        Command::Publish(args) => publish::run(args, &config),
        Command::Serve(args) => serve::run(args, &config),
        Command::Completions(args) => docs::completions(args),
        Command::Man(args) => docs::man(args),
    });
    match result {
        Ok(code) => code,
        Err(e) if is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprint(&format!("kpackfs: error: {}\n", crate::util::printable(&format!("{e:#}"))));
            ExitCode::FAILURE
        }
    }
}
