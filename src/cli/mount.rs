//! `kpackfs mount`, `kpackfs umount` and `kpackfs status`.
//!
//! `mount` returns once the filesystem is ready: it re-executes itself with
//! `--foreground`, detached (new session, log in `<cache-dir>/kpackfs.log`),
//! and waits for the child to report readiness on an inherited pipe. The
//! daemon unmounts cleanly on SIGINT or SIGTERM, and exits when unmounted by
//! `kpackfs umount` or plain `umount`. A stale mount left by a killed daemon
//! ("Transport endpoint is not connected") is detached before mounting.

use super::refresh::{Crawler, Served};
use super::{load_manifest, FetchArgs};
use crate::cache::{Backoff, Cache, Settings};
use crate::config::Config;
use crate::fetch::{Fetcher, PackageStore};
use crate::fs::KpackFs;
use crate::manifest::Manifest;
use crate::package::Limits;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const READY_FD_ENV: &str = "KPACKFS_READY_FD";

#[derive(Args, Clone)]
pub struct MountArgs {
    /// Where to mount.
    mountpoint: PathBuf,
    /// Manifest to serve (default: the shipped manifest, merged with the latest crawl result).
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// kernel-packer package lists (*.txt) for a manifest of simplified names.
    #[arg(long, value_name = "DIR")]
    lists_dir: Option<PathBuf>,
    /// Byte budget of the cache (default 10G).
    #[arg(long, value_name = "SIZE", value_parser = crate::util::parse_size)]
    cache_size: Option<u64>,
    /// Stay attached (logs to stderr) instead of returning once mounted.
    #[arg(long)]
    foreground: bool,
    /// FUSE worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// After a failed build, refuse (EIO at once) for this long, doubling per failure.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = crate::util::parse_duration)]
    retry_backoff: Duration,
    /// Largest uncompressed size of one bundle's contents.
    #[arg(long, value_name = "SIZE", default_value = "2G", value_parser = crate::util::parse_size)]
    max_bundle_size: u64,
    /// Crawl the sources this often in the background; new bundles appear without a remount.
    #[arg(long, value_name = "DURATION", value_parser = crate::util::parse_duration)]
    crawl_interval: Option<Duration>,
    /// The sources file for the background crawl (default: the shipped sources.yml).
    #[arg(long = "sources", value_name = "FILE")]
    sources_file: Option<PathBuf>,
    /// Keep this much of the cache's filesystem free, evicting below the budget if needed: a size or a percentage.
    #[arg(long, value_name = "SIZE|PCT", default_value = "5%", value_parser = crate::util::FreeFloor::parse)]
    min_free: crate::util::FreeFloor,
    /// A bundle used this recently counts as in use: eviction spares it.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::util::parse_duration)]
    evict_grace: Duration,
    #[command(flatten)]
    fetch: FetchArgs,
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| anyhow!("{} contains a NUL byte", path.display()))
}

/// Detach a stale mount (its daemon is gone). Returns whether there was one.
/// `stat` may still answer from the kernel's cache (our TTLs are long), so
/// the probe is `statfs`, which always asks the daemon.
fn clean_stale_mount(path: &Path) -> Result<bool> {
    let c = c_path(path)?;
    // SAFETY: statfs into a zeroed struct from a valid C string.
    let alive = unsafe {
        let mut buf: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut buf) == 0
            || !matches!(errno().raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED))
    };
    if alive {
        return Ok(false);
    }
    // SAFETY: valid C string; umount2 has no other preconditions.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        bail!("{} is a stale mount and detaching it failed: {}", path.display(), errno());
    }
    log::warn!("cleaned up a stale mount at {} (its daemon was gone)", path.display());
    Ok(true)
}

/// Whether `path` is a mount point of a kpackfs filesystem.
fn is_kpackfs_mount(path: &Path) -> bool {
    let Ok(canonical) = path.canonicalize() else { return false };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    info.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-");
        f.len() > 4
            && Path::new(&f[4].replace("\\040", " ")) == canonical
            && sep.and_then(|s| f.get(s + 1)).is_some_and(|t| t.starts_with("fuse") && l.contains("kpackfs"))
    })
}

/// The manifest the mount starts from: `--manifest`, or the shipped one.
fn base_manifest(args_manifest: Option<&Path>, lists_dir: Option<&Path>) -> Result<(Manifest, String)> {
    match args_manifest {
        Some(p) => Ok((load_manifest(Some(p), lists_dir)?, format!("from {}", p.display()))),
        None => Ok((load_manifest(None, None)?, "shipped".into())),
    }
}

/// What the mount serves: the base manifest merged with the crawler's latest result.
fn served_manifest(mut manifest: Manifest, cache_dir: &Path) -> Manifest {
    let (_, crawled) = super::crawl::default_paths(cache_dir);
    if crawled.exists() {
        match Manifest::load(&crawled, None) {
            Ok(m) => manifest.merge(&m),
            Err(e) => log::warn!("ignoring the crawl result: {e:#}"),
        }
    }
    manifest
}

pub fn run(args: MountArgs, config: &Config) -> Result<ExitCode> {
    let mountpoint = &args.mountpoint;
    clean_stale_mount(mountpoint)?;
    if !mountpoint.is_dir() {
        bail!("mount point {} is not a directory", mountpoint.display());
    }
    if is_kpackfs_mount(mountpoint) {
        bail!("{} is already a kpackfs mount", mountpoint.display());
    }
    let cache_dir = args.fetch.cache_dir(config);
    if !args.foreground {
        // The daemon loads everything once; a bad manifest, config or sources
        // file ends it before it is ready, and its error line is shown here.
        return detach_and_wait(&args, &cache_dir);
    }
    serve(&args, config, cache_dir)
}

/// Start the daemon detached and wait until it reports readiness (or dies).
fn detach_and_wait(args: &MountArgs, cache_dir: &Path) -> Result<ExitCode> {
    std::fs::create_dir_all(cache_dir).with_context(|| format!("creating {}", cache_dir.display()))?;
    let log_path = cache_dir.join("kpackfs.log");
    rotate_log(&log_path);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe: {}", errno());
    }
    // SAFETY: pipe2 just returned these descriptors; each is owned once.
    let (read_end, write_end) = unsafe { (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1])) };
    let write_fd = write_end.as_raw_fd();
    let exe = std::env::current_exe().context("finding the kpackfs executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1)).arg("--foreground").env(READY_FD_ENV, "3");
    cmd.stdin(std::process::Stdio::null()).stdout(log.try_clone()?).stderr(log);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(write_fd, 3) < 0 || libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the kpackfs daemon")?;
    drop(write_end);
    let mut line = String::new();
    BufReader::new(read_end).read_line(&mut line).ok();
    if let Some(pid) = line.trim().strip_prefix("ready ") {
        println!("kpackfs: mounted {} (pid {pid}, log {})", args.mountpoint.display(), log_path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let status = child.wait().ok();
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    // The daemon's error, whole (a parse error spans several lines).
    let cause = match log_text.rfind("kpackfs: error: ") {
        Some(at) => log_text[at + "kpackfs: error: ".len()..].trim_end(),
        None => log_text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output"),
    };
    bail!("the daemon did not start ({}): {cause}", status.map_or("unknown status".into(), |s| s.to_string()))
}

/// The daemon's log grows by a few lines per build and crawl; past this
/// size it is moved to `kpackfs.log.1` (replacing the previous one) at the
/// next mount.
const LOG_ROTATE_BYTES: u64 = 8 << 20;

fn rotate_log(path: &Path) {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let old = path.with_extension("log.1");
        if let Err(e) = std::fs::rename(path, &old) {
            log::warn!("rotating {}: {e}", path.display());
        }
    }
}

/// Hold an exclusive lock on the cache directory for the daemon's life.
fn lock_cache_dir(dir: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("lock"))?;
    // SAFETY: flock on a valid descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!("cache directory {} is in use by another kpackfs", dir.display());
    }
    Ok(file)
}

/// The daemon: load the manifest, config and sources, mount, serve until unmounted.
fn serve(args: &MountArgs, config: &Config, cache_dir: PathBuf) -> Result<ExitCode> {
    let base_stamp = Served::stamp_of(args.manifest.as_deref());
    let (base, note) = base_manifest(args.manifest.as_deref(), args.lists_dir.as_deref())?;
    let fetch_config = args.fetch.fetch_config(config)?;
    let sources = match args.crawl_interval {
        Some(_) => Some(crate::crawl::sources::load(args.sources_file.as_deref().or(config.sources.as_deref()))?),
        None => None,
    };
    let _lock = lock_cache_dir(&cache_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("kpackfs-worker")
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let store = PackageStore::open(&cache_dir.join("packages"))?;
    let fetcher = Fetcher::new(fetch_config.clone(), store)?;
    let budget = match (args.cache_size, &config.cache_size) {
        (Some(b), _) => b,
        (None, Some(s)) => crate::util::parse_size(s).map_err(|e| anyhow!("config cache_size: {e}"))?,
        (None, None) => 10 << 30,
    };
    let settings = Settings {
        dir: cache_dir.clone(),
        budget,
        limits: Limits { max_total_bytes: args.max_bundle_size, ..Limits::default() },
        backoff: Backoff { base: args.retry_backoff, max: Duration::from_secs(300) },
        grace: args.evict_grace,
        min_free: args.min_free,
    };
    let cache = Cache::open(settings, fetcher, runtime.handle().clone())?;
    let mountpoint =
        args.mountpoint.canonicalize().with_context(|| format!("resolving {}", args.mountpoint.display()))?;
    let manifest = served_manifest(base, &cache_dir);
    let fs = KpackFs::new(cache.clone(), &manifest, mountpoint.clone());
    let inner = fs.inner();
    let served = Served::new(
        inner.clone(),
        args.manifest.clone(),
        args.lists_dir.clone(),
        &cache_dir,
        note,
        manifest,
        base_stamp,
    );

    let mut fuse_config = fuser::Config::default();
    fuse_config.mount_options = vec![
        fuser::MountOption::FSName("kpackfs".into()),
        fuser::MountOption::Subtype("kpackfs".into()),
        fuser::MountOption::RO,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoAtime,
        fuser::MountOption::DefaultPermissions,
    ];
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        fuse_config.acl = fuser::SessionACL::All;
    }
    fuse_config.n_threads = Some(args.threads.unwrap_or_else(crate::bundle::default_threads).max(1));
    fuse_config.clone_fd = true;
    let session = fuser::Session::new(fs.clone(), &mountpoint, &fuse_config)
        .with_context(|| format!("mounting {}", mountpoint.display()))?;
    fs.set_notifier(session.notifier());
    let background = session.spawn().context("starting the FUSE session")?;
    raise_readahead(&mountpoint);
    log::info!(
        "mounted {} ({} bundles, cache {} of {})",
        mountpoint.display(),
        inner.namespace().named,
        cache_dir.display(),
        crate::util::human_bytes(budget)
    );
    signal_ready();
    served.watch();
    if let (Some(interval), Some(sources)) = (args.crawl_interval, sources) {
        let crawler = Crawler { served: served.clone(), sources, cache_dir: cache_dir.clone(), fetch: fetch_config };
        runtime.spawn(crawler.run(interval));
    }

    runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        let mut flush = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = term.recv() => { log::info!("SIGTERM: unmounting"); break; }
                _ = int.recv() => { log::info!("SIGINT: unmounting"); break; }
                _ = hup.recv() => {
                    log::info!("SIGHUP: reloading the manifest");
                    let served = served.clone();
                    tokio::task::spawn_blocking(move || served.reload(true));
                }
                _ = flush.tick() => cache.flush(),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if background.guard.is_finished() { log::info!("unmounted"); break; }
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    if !background.guard.is_finished() {
        unmount(&mountpoint, true)?;
    }
    if let Err(e) = background.join() {
        log::warn!("FUSE session ended with: {e}");
    }
    cache.flush();
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(ExitCode::SUCCESS)
}

/// Reads of a .tgz go through the daemon; larger FUSE read-ahead means
/// fewer, larger requests (docs/performance.md). Best effort: needs root.
fn raise_readahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(mountpoint) else { return };
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let knob = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    if let Err(e) = std::fs::write(&knob, "1024") {
        log::debug!("could not raise read-ahead ({knob}): {e}");
    }
}

/// Tell the waiting parent (if any) that the mount is ready.
fn signal_ready() {
    let Some(fd) = std::env::var(READY_FD_ENV).ok().and_then(|v| v.parse::<i32>().ok()) else { return };
    // SAFETY: the parent handed us this descriptor; we own it from here.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
    let _ = writeln!(pipe, "ready {}", std::process::id());
}

/// Unmount; when busy, detach lazily if `lazy`.
fn unmount(path: &Path, lazy: bool) -> Result<()> {
    let c = c_path(path)?;
    // SAFETY: valid C string.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let err = errno();
    match err.raw_os_error() {
        Some(libc::EBUSY) if lazy => {
            log::warn!("{} is busy; detaching it lazily", path.display());
            // SAFETY: as above.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                bail!("detaching {}: {}", path.display(), errno());
            }
            Ok(())
        }
        Some(libc::EBUSY) => bail!("{} is busy (files open under it); close them or use --lazy", path.display()),
        Some(libc::EINVAL) => bail!("{} is not mounted", path.display()),
        _ => bail!("unmounting {}: {err}", path.display()),
    }
}

#[derive(Args)]
pub struct UmountArgs {
    mountpoint: PathBuf,
    /// Detach now even if busy; the daemon exits when the last user goes.
    #[arg(long)]
    lazy: bool,
}

/// Unmount, then wait for the daemon to exit (it saves its index on the way
/// out), so that a new mount on the same cache can start at once.
pub fn umount(args: UmountArgs) -> Result<ExitCode> {
    if clean_stale_mount(&args.mountpoint)? {
        return Ok(ExitCode::SUCCESS);
    }
    let pid = std::fs::read_to_string(args.mountpoint.join(".kpackfs/status.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v["pid"].as_u64());
    unmount(&args.mountpoint, args.lazy)?;
    if let Some(pid) = pid {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while proc_dir.exists() && std::time::Instant::now() < deadline {
            let zombie = std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|s| s.contains(") Z "));
            if zombie {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct StatusArgs {
    mountpoint: PathBuf,
    /// Print the JSON form.
    #[arg(long)]
    json: bool,
}

pub fn status(args: StatusArgs) -> Result<ExitCode> {
    let file = args.mountpoint.join(".kpackfs").join(if args.json { "status.json" } else { "status" });
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!("{} is not a kpackfs mount (reading {})", args.mountpoint.display(), file.display())
    })?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
