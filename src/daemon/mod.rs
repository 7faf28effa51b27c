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

/// Serve `mountpoint` in this process until it is unmounted or signalled.
pub fn serve(mountpoint: &Path, settings: Settings) -> Result<()> {
    let cache_dir = settings.cache_dir.clone();
    let inputs = served::Inputs::new(settings.manifest.clone(), settings.lists_dir.clone(), &cache_dir);
    let stamps = inputs.stamps();
    let sources = match settings.crawl_interval {
        Some(_) => Some(crate::crawl::sources::load(settings.sources.as_deref())?),
        None => None,
    };
    let _lock = lock_cache_dir(&cache_dir)?;
    crate::files::create_owned_dir_all(&cache_dir)?;
    // A bad base manifest ends the daemon here, before anything is mounted.
    let namespace = Namespace::new(inputs.index(None, true)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("kpackfs-worker")
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let store = PackageStore::open(&cache_dir.join("packages"))?;
    let fetcher = Fetcher::http(settings.fetch.clone(), store)?;
    let cache = Cache::open(settings.cache_settings(), fetcher, runtime.handle().clone())?;
    let mountpoint: PathBuf =
        mountpoint.canonicalize().with_context(|| format!("resolving {}", mountpoint.display()))?;
    let core = FsCore::new(cache.clone(), namespace, mountpoint.clone(), Arc::new(ProcProbe));
    let served = Served::new(core.clone(), inputs, stamps);

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
    fuse_config.n_threads = Some(settings.threads.max(1));
    fuse_config.clone_fd = true;
    let session = fuser::Session::new(FuseAdapter::new(core.clone()), &mountpoint, &fuse_config)
        .with_context(|| format!("mounting {}", mountpoint.display()))?;
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
    detach::signal_ready();
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
        mountpoint::unmount(&mountpoint, true)?;
    }
    if let Err(e) = background.join() {
        log::warn!("FUSE session ended with: {e}");
    }
    cache.flush();
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}
