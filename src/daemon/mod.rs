//! The daemon: load what to serve, mount, serve until unmounted, keep the
//! manifest current, let go of killed readers, shut down cleanly.
//!
//! - [`refresh`]: the served manifest kept current (background crawl,
//!   reload on file change or SIGHUP), shared by the mount and `serve`.
//! - [`status`]: the status report, collected from what the daemon runs.
//! - [`mountpoint`]: stale mounts, unmounting.
//! - `detach`: starting in the background and reporting readiness.

mod detach;
mod metrics_http;
pub mod mountpoint;
pub mod notify;
pub mod refresh;
pub mod status;

pub use detach::{detach_and_wait, lock_cache_dir};

use crate::build::{Bundles, Env};
use crate::cache::Cache;
use crate::fetch::Fetcher;
use crate::fs::{FsCore, ProcProbe};
use crate::namespace::{served, Current, Namespace};
use crate::observe::Counters;
use crate::settings::Settings;
use anyhow::{Context, Result};
use refresh::{Crawler, Served};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often queued answers are checked for killed callers.
const SWEEP: Duration = Duration::from_millis(100);

/// What a mount or `kpackfs serve` serves from: the cache directory
/// (locked: one daemon per cache), the cache and the build that fills it,
/// and the served manifest.
pub struct Backend {
    pub runtime: tokio::runtime::Runtime,
    pub cache: Arc<Cache>,
    pub bundles: Arc<Bundles>,
    pub counters: Arc<Counters>,
    pub served: Arc<Served>,
    pub _lock: detach::CacheLock,
}

/// The build's environment for a cache: its fetcher downloads into the
/// cache's package store, counted against its budget.
pub fn env_for(cache: &Arc<Cache>, settings: &Settings, counters: &Arc<Counters>) -> Result<Env> {
    let tier = open_tier(settings)?;
    let fetcher = Fetcher::http(settings.fetch.clone(), cache.store().clone())?.with_space_guard(cache.space_guard());
    let fetcher = with_package_tier(fetcher, settings, tier.as_ref(), true);
    let credentials = &settings.fetch.credentials;
    if !credentials.is_empty() {
        // Scopes, kinds and files only: Credentials never formats a secret.
        log::info!("credentials for {} scopes: {credentials:?}", credentials.entries().len());
    }
    Ok(Env {
        fetcher,
        tier,
        limits: settings.limits(),
        sandbox: crate::build::source::sandbox::Limits::of(settings),
        image: crate::build::image::Limits::of(settings),
        counters: counters.clone(),
        cache: Some(cache.clone()),
    })
}

/// `fetcher` asking the tier's packages first (unless `package_tier` is
/// off), and writing what it downloads when `write` (and the tier allows).
pub fn with_package_tier(
    fetcher: Fetcher,
    settings: &Settings,
    tier: Option<&Arc<crate::remote::Remote>>,
    write: bool,
) -> Fetcher {
    match tier.filter(|_| settings.package_tier) {
        Some(t) => fetcher.with_package_tier(Arc::new(crate::remote::PackageLayer::new(t.clone(), write))),
        None => fetcher,
    }
}

/// The remote tier of the settings, opened (None without `remote`).
pub fn open_tier(settings: &Settings) -> Result<Option<Arc<crate::remote::Remote>>> {
    let Some(url) = &settings.remote else { return Ok(None) };
    let opts = crate::remote::options_from(&settings.fetch, settings.remote_read_only);
    Ok(Some(Arc::new(crate::remote::Remote::open(url, opts)?)))
}

/// The cache's settings.
pub fn cache_settings(settings: &Settings) -> crate::cache::Settings {
    crate::cache::Settings {
        dir: settings.cache_dir.clone(),
        budget: settings.cache_size,
        backoff: crate::cache::Backoff {
            base: settings.retry_backoff,
            max: crate::defaults::Defaults::get().retry_backoff_max,
        },
        grace: settings.evict_grace,
        min_free: settings.min_free,
    }
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
        let current = Current::new(Namespace::new(inputs.index(None, true)?));
        let served = Served::new(current, inputs, stamps, &cache_dir);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kpackfs-worker")
            .enable_all()
            .build()
            .context("starting the runtime")?;
        let counters = Arc::new(Counters::default());
        let cache = Cache::open(cache_settings(settings), counters.clone(), runtime.handle().clone())?;
        let bundles = Bundles::new(cache.clone(), env_for(&cache, settings, &counters)?);
        Ok(Backend { runtime, cache, bundles, counters, served, _lock: lock })
    }
}

/// Serve `mountpoint` in this process until it is unmounted or signalled.
pub fn serve(mountpoint: &Path, settings: Settings) -> Result<()> {
    let cache_dir = settings.cache_dir.clone();
    let sources = match settings.crawl_interval {
        Some(_) => Some(crate::crawl::sources::load(settings.sources.as_deref())?),
        None => None,
    };
    let Backend { runtime, cache, bundles, counters, served, _lock } = Backend::open(&settings)?;
    let mountpoint: PathBuf =
        mountpoint.canonicalize().with_context(|| format!("resolving {}", mountpoint.display()))?;
    let tier = bundles.env().tier.as_ref().map(|t| t.url().to_string());
    let status = status::Status::new(
        cache.clone(),
        served.current().clone(),
        served.crawl_states().clone(),
        counters,
        mountpoint.clone(),
        tier,
    );
    status.set_served(served.clone());
    let core = FsCore::new(bundles, served.current().clone(), status.clone(), Arc::new(ProcProbe));
    let invalidated = core.clone();
    served.on_change(Box::new(move |changes| invalidated.invalidate(changes)));

    // The mount itself (type, source, flags) is mountpoint::mount_fuse's.
    // SAFETY: geteuid has no preconditions.
    let all_users = unsafe { libc::geteuid() } == 0;
    let fuse_fd = mountpoint::mount_fuse(&mountpoint, all_users)?;
    let session = match crate::fs::fuse::start(core.clone(), fuse_fd, all_users, settings.threads) {
        Ok(session) => session,
        Err(e) => {
            let _ = mountpoint::unmount(&mountpoint, true);
            return Err(e).with_context(|| format!("starting FUSE at {}", mountpoint.display()));
        }
    };
    mountpoint::raise_readahead(&mountpoint);
    log::info!(
        "mounted {} ({}; cache {} of {})",
        mountpoint.display(),
        core.namespace().index().counts.summary(),
        cache_dir.display(),
        crate::util::human_bytes(settings.cache_size)
    );
    if let Some(addr) = settings.metrics {
        metrics_http::serve(&runtime, addr, status, core.clone())?;
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
        sweeper.sweep();
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
                    if session.is_finished() { log::info!("unmounted"); break; }
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    notify::notify("STOPPING=1");
    if !session.is_finished() {
        mountpoint::unmount(&mountpoint, true)?;
    }
    if let Err(e) = session.join() {
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
