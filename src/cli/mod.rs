//! The command line (clap): each subcommand maps its arguments onto the
//! library and the daemon; nothing else lives here.

mod bundle;
mod crawl;
mod docs;
mod helper;
mod index;
mod list;
mod mount;
mod publish;
mod serve;
mod warm;
mod which;

use crate::settings::{parse, Settings};
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Write the index beside a manifest (<manifest>.idx), which a mount maps instead of parsing the YAML.
    Index(index::IndexArgs),
    /// Build bundles into a running mount's cache ahead of use (--pin keeps them from eviction).
    Warm(warm::WarmArgs),
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
/// Each flag is parsed once, by its setting's parser.
#[derive(Args, Clone, Debug, Default)]
pub struct FetchArgs {
    /// Cache directory (packages, bundles, index).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Rewrite a canonical URL prefix to a mirror at fetch time (repeatable).
    #[arg(long = "mirror", value_name = "CANONICAL=LOCAL", value_parser = parse::mirror)]
    pub mirrors: Vec<(String, String)>,
    /// Do not use the host's apt Debian mirror for Debian URLs.
    #[arg(long)]
    pub no_apt_mirrors: bool,
    /// Credentials in apt's auth.conf format (plus `token`, `query`, `cert`, `key`, `ca`); the file must be
    /// root's or yours and mode 0600 (repeatable; before the host's: the first match wins).
    #[arg(long = "auth-file", value_name = "FILE", value_parser = auth_file)]
    pub auth_files: Vec<crate::fetch::Credentials>,
    /// Do not read the host's credentials (apt's auth.conf and auth.conf.d, yum's .repo files).
    #[arg(long)]
    pub no_host_credentials: bool,
    /// Only a package's own locations: no canonical archive behind a mirror, no archives of old
    /// releases, no snapshot archives (air-gapped sites).
    #[arg(long)]
    pub no_archives: bool,
    /// Where packages under CANONICAL go when they leave it, same layout (repeatable).
    #[arg(long = "archive", value_name = "CANONICAL=ARCHIVE", value_parser = parse::mirror)]
    pub archives: Vec<(String, String)>,
    /// A snapshot archive with Debian's snapshot API for packages under CANONICAL (repeatable).
    #[arg(long = "snapshot", value_name = "CANONICAL=BASE", value_parser = parse::mirror)]
    pub snapshots: Vec<(String, String)>,
    /// Give up on a transfer that sends nothing for this long (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse::timeout)]
    pub stall_timeout: Option<Duration>,
    /// Give up on a transfer averaging less than this per second after 30 s (default 20K).
    #[arg(long, value_name = "SIZE", value_parser = parse::size)]
    pub min_rate: Option<u64>,
    /// Give up on a package after this long, all attempts included (default 30m).
    #[arg(long, value_name = "DURATION", value_parser = parse::timeout)]
    pub download_deadline: Option<Duration>,
    /// Attempts after the first on transient HTTP failures (default 3).
    #[arg(long, value_parser = parse::count)]
    pub retries: Option<u32>,
    /// The shared bundle tier, read before building and written after: s3://bucket/prefix, gs://…, az://…,
    /// file:///path, or read-only http(s)://… (S3 settings from AWS_* variables; docs/operations.md).
    #[arg(long, value_name = "URL", value_parser = parse::url)]
    pub remote: Option<String>,
    /// Read the remote tier, never write to it.
    #[arg(long)]
    pub remote_read_only: bool,
    /// Share only bundles through the remote tier, not packages.
    #[arg(long)]
    pub no_package_tier: bool,
}

impl FetchArgs {
    pub fn apply(&self, s: &mut Settings) {
        if let Some(v) = &self.cache_dir {
            s.cache_dir = v.clone();
        }
        for (canonical, local) in &self.mirrors {
            s.fetch.mirrors.add(canonical, local);
        }
        if self.no_apt_mirrors {
            s.apt_mirrors = false;
        }
        for found in &self.auth_files {
            if let Err(e) = s.fetch.credentials.extend(found.clone()) {
                log::warn!("credentials: {e:#}");
            }
        }
        if self.no_host_credentials {
            s.host_credentials = false;
        }
        if self.no_archives {
            s.fetch.archives.enabled = false;
        }
        for (canonical, archive) in &self.archives {
            s.fetch.archives.add_prefix(canonical, archive);
        }
        for (canonical, base) in &self.snapshots {
            s.fetch.archives.add_snapshot(canonical, base);
        }
        if let Some(v) = self.stall_timeout {
            s.fetch.stall_timeout = v;
        }
        if let Some(v) = self.min_rate {
            s.fetch.min_rate = v;
        }
        if let Some(v) = self.download_deadline {
            s.fetch.deadline = v;
        }
        if let Some(v) = self.retries {
            s.fetch.retry.retries = v;
        }
        if let Some(v) = &self.remote {
            s.remote = Some(v.clone());
        }
        if self.remote_read_only {
            s.remote_read_only = true;
        }
        if self.no_package_tier {
            s.package_tier = false;
        }
    }
}

/// `--auth-file`: read and checked when the flag is parsed, so a refused
/// file is a usage error naming it (and never echoing its contents).
fn auth_file(v: &str) -> Result<crate::fetch::Credentials, String> {
    crate::fetch::auth::netrc::read_file(std::path::Path::new(v)).map_err(|e| format!("{e:#}"))
}

/// What a mount or server serves from: the manifest and the cache's budget.
#[derive(Args, Clone, Debug, Default)]
pub struct ServedArgs {
    /// Manifest to serve (default: the shipped manifest, merged with the latest crawl result).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// kernel-packer package lists (*.txt) for a manifest of simplified names.
    #[arg(long, value_name = "DIR")]
    pub lists_dir: Option<PathBuf>,
    /// Byte budget of the cache (default 10G).
    #[arg(long, value_name = "SIZE", value_parser = parse::size)]
    pub cache_size: Option<u64>,
}

impl ServedArgs {
    pub fn apply(&self, s: &mut Settings) {
        if let Some(v) = &self.manifest {
            s.manifest = Some(v.clone());
        }
        if let Some(v) = &self.lists_dir {
            s.lists_dir = Some(v.clone());
        }
        if let Some(v) = self.cache_size {
            s.cache_size = v;
        }
    }
}

/// A command's settings: the configuration file's (`base`), then what
/// `apply` sets (mount options, then flags), then the host's apt mirrors.
pub fn settings(base: &Settings, apply: impl FnOnce(&mut Settings)) -> Settings {
    let mut s = base.clone();
    apply(&mut s);
    s.finish()
}

/// The largest bundle a command builds, from its flag.
pub fn max_bundle_size(s: &mut Settings, flag: Option<u64>) {
    if let Some(v) = flag {
        s.max_bundle_size = v;
    }
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
    pub fn apply(&self, s: &mut Settings) {
        if let Some(m) = &self.manifest {
            s.manifest = Some(m.clone());
        }
        if let Some(l) = &self.lists_dir {
            s.lists_dir = Some(l.clone());
        }
    }

    /// The view: `--mount`'s, else what a mount with `settings` serves
    /// (`settings` has these flags applied).
    pub fn open(&self, settings: &Settings) -> Result<crate::lookup::view::View> {
        crate::lookup::view::View::open(self.mount.as_deref(), settings)
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
    let loaded = crate::settings::file::load(cli.config.as_deref()).map(|(settings, _)| settings);
    let result = loaded.and_then(|config| match cli.command {
        Command::Bundle(args) => bundle::run(args, &config),
        Command::Mount(args) => mount::run(args, &config),
        Command::Umount(args) => mount::umount(args),
        Command::Status(args) => mount::status(args),
        Command::List(args) => list::run(args, &config),
        Command::Which(args) => which::run(args, &config),
        Command::Crawl(args) => crawl::run(args, &config),
        Command::Index(args) => index::run(args),
        Command::Warm(args) => warm::run(args),
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
            // A failed build says its class (docs/operations.md); anything else is 1.
            crate::error::class_of(&e).map_or(ExitCode::FAILURE, |class| ExitCode::from(class.exit_code()))
        }
    }
}
