//! The daemon: load what to serve, mount, serve until unmounted, keep the
//! manifest current, let go of killed readers, shut down cleanly.
//!
//! - [`settings`]: every setting and default, one parser for flags, `-o`
//!   options and the configuration file.
//! - [`refresh`]: the served manifest kept current (background crawl,
//!   reload on file change or SIGHUP).
//! - [`mountpoint`]: stale mounts, unmounting.
//! - `detach`: starting in the background and reporting readiness.

mod detach;
pub mod mountpoint;
pub mod notify;
pub mod refresh;
pub mod served;
pub mod settings;

pub use detach::{detach_and_wait, lock_cache_dir};

use crate::cache::Cache;
use crate::fetch::{Fetcher, PackageStore};
use crate::fs::fuse::{FuseAdapter, NotifierInvalidator};
use crate::fs::namespace::Namespace;
use crate::fs::{FsCore, ProcProbe};
use anyhow::{Context, Result};
use refresh::{Crawler, Served};
use settings::Settings;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often queued answers are checked for killed callers.
const SWEEP: Duration = Duration::from_millis(100);

/// What a mount or `kpackfs serve` serves from: the cache directory
/// (locked: one daemon per cache), the cache, and the served manifest.
pub struct Backend {
    pub runtime: tokio::runtime::Runtime,
    pub cache: Arc<Cache>,
    pub namespace: Namespace,
    pub inputs: served::Inputs,
    /// The inputs' stamps from before the namespace was built.
    pub stamps: (served::Stamp, served::Stamp),
    pub _lock: detach::CacheLock,
}

impl Backend {
    /// Lock the cache directory, load the manifest (a bad base manifest is
    /// an error here, before anything is served), open the cache.
    pub fn open(settings: &Settings) -> Result<Backend> {
        let cache_dir = settings.cache_dir.clone();
        let inputs = served::Inputs::new(settings.manifest.clone(), settings.lists_dir.clone(), &cache_dir);
        let stamps = inputs.stamps();
        let lock = lock_cache_dir(&cache_dir)?;
        crate::files::create_owned_dir_all(&cache_dir)?;
        let namespace = Namespace::new(inputs.index(None, true)?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kpackfs-worker")
            .enable_all()
            .build()
            .context("starting the runtime")?;
        let store = PackageStore::open(&cache_dir.join("packages"))?;
        let fetcher = Fetcher::http(settings.fetch.clone(), store)?;
        let cache = Cache::open(settings.cache_settings()?, fetcher, runtime.handle().clone())?;
        Ok(Backend { runtime, cache, namespace, inputs, stamps, _lock: lock })
    }
}

/// Serve `mountpoint` in this process until it is unmounted or signalled.
pub fn serve(mountpoint: &Path, settings: Settings) -> Result<()> {
    let cache_dir = settings.cache_dir.clone();
    let sources = match settings.crawl_interval {
        Some(_) => Some(crate::crawl::sources::load(settings.sources.as_deref())?),
        None => None,
    };
    let Backend { runtime, cache, namespace, inputs, stamps, _lock } = Backend::open(&settings)?;
    let mountpoint: PathBuf =
        mountpoint.canonicalize().with_context(|| format!("resolving {}", mountpoint.display()))?;
    let core = FsCore::new(cache.clone(), namespace, mountpoint.clone(), Arc::new(ProcProbe));
    let served = Served::new(core.clone(), inputs, stamps);

    // The mount itself (type, source, flags) is mountpoint::mount_fuse's.
    let mut fuse_config = fuser::Config::default();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        fuse_config.acl = fuser::SessionACL::All;
    }
    fuse_config.n_threads = Some(settings.threads.max(1));
    fuse_config.clone_fd = true;
    let fuse_fd = mountpoint::mount_fuse(&mountpoint, fuse_config.acl == fuser::SessionACL::All)?;
    let acl = fuse_config.acl;
    let session = match fuser::Session::from_fd(FuseAdapter::new(core.clone()), fuse_fd, acl, fuse_config) {
        Ok(session) => session,
        Err(e) => {
            let _ = mountpoint::unmount(&mountpoint, true);
            return Err(e).with_context(|| format!("starting FUSE at {}", mountpoint.display()));
        }
    };
    core.set_invalidator(Box::new(NotifierInvalidator(session.notifier())));
    let background = session.spawn().context("starting the FUSE session")?;
    mountpoint::raise_readahead(&mountpoint);
    log::info!(
        "mounted {} ({} bundles, cache {} of {})",
        mountpoint.display(),
        core.namespace().counts.shown,
        cache_dir.display(),
        crate::util::human_bytes(settings.cache_size)
    );
    if let Some(addr) = settings.metrics {
        serve_metrics(&runtime, addr, core.clone())?;
    }
    // Handlers before readiness: a SIGHUP right after READY=1 must reload,
    // not kill (its default action).
    let (mut term, mut int, mut hup) = {
        use tokio::signal::unix::{signal, SignalKind};
        let _entered = runtime.enter();
        (
            signal(SignalKind::terminate()).context("SIGTERM handler")?,
            signal(SignalKind::interrupt()).context("SIGINT handler")?,
            signal(SignalKind::hangup()).context("SIGHUP handler")?,
        )
    };
    wait_until_root_answers(&mountpoint)?;
    detach::signal_ready();
    notify::notify("READY=1");
    served.watch();
    let sweeper = core.clone();
    let _ = std::thread::Builder::new().name("kpackfs-sweep".into()).spawn(move || loop {
        std::thread::sleep(SWEEP);
        sweeper.waiting().sweep();
    });
    if let (Some(interval), Some(sources)) = (settings.crawl_interval, sources) {
        let crawler = Crawler { served: served.clone(), sources, cache_dir: cache_dir.clone(), fetch: settings.fetch };
        runtime.spawn(crawler.run(interval));
    }

    runtime.block_on(async {
        let mut flush = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = term.recv() => { log::info!("SIGTERM: unmounting"); break; }
                _ = int.recv() => { log::info!("SIGINT: unmounting"); break; }
                _ = hup.recv() => {
                    log::info!("SIGHUP: reloading the manifest");
                    notify::reloading();
                    let served = served.clone();
                    tokio::task::spawn_blocking(move || {
                        served.reload(true);
                        notify::notify("READY=1");
                    });
                }
                _ = flush.tick() => cache.flush(),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if background.guard.is_finished() { log::info!("unmounted"); break; }
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    notify::notify("STOPPING=1");
    if !background.guard.is_finished() {
        mountpoint::unmount(&mountpoint, true)?;
    }
    if let Err(e) = background.join() {
        log::warn!("FUSE session ended with: {e}");
    }
    cache.flush();
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

/// Readiness means the filesystem answers: stat its root from another
/// thread (the kernel's INIT handshake completes first) with a bound.
fn wait_until_root_answers(mountpoint: &Path) -> Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let root = mountpoint.to_path_buf();
    std::thread::Builder::new()
        .name("kpackfs-probe".into())
        .spawn(move || {
            let _ = tx.send(std::fs::metadata(&root).map(|_| ()));
        })
        .context("starting the readiness probe")?;
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(anyhow::anyhow!("the new mount at {} does not answer: {e}", mountpoint.display())),
        Err(_) => Err(anyhow::anyhow!("the new mount at {} did not answer within 30 s", mountpoint.display())),
    }
}

/// `--metrics ADDR`: bound before readiness, so a taken port fails the mount.
fn serve_metrics(runtime: &tokio::runtime::Runtime, addr: std::net::SocketAddr, core: Arc<FsCore>) -> Result<()> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("metrics: binding {addr}"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr().unwrap_or(addr);
    core.set_metrics_addr(addr.to_string());
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    let limits = crate::serve::Limits { connections: 16, ..Default::default() };
    let handler = Arc::new(crate::serve::MetricsHandler(core));
    runtime.spawn(async move {
        if let Err(e) = crate::serve::run(listener, handler, limits, std::future::pending()).await {
            log::error!("metrics endpoint: {e:#}");
        }
    });
    log::info!("metrics at http://{addr}/metrics");
    Ok(())
}
