//! Downloading packages into the content-addressed package store.
//!
//! Bytes come from a [`PackageSource`] (HTTP, a directory, a faulty test
//! source); everything that must hold whatever the transport is here:
//! - a stall timeout (no bytes for that long), a minimum average rate after
//!   a grace period, and an overall deadline per package, covering every
//!   attempt and location;
//! - retries with the one [`RetryPolicy`], trying each location of the
//!   package (its URL, then its alternatives) in order;
//! - resuming a cut transfer with `Range` and `If-Range` (the validator of
//!   the first response), only for packages with a digest: a package
//!   without one is admitted only whole from one response;
//! - a size cap whether or not the server sends Content-Length, and the
//!   cache's budget for bytes in progress ([`SpaceGuard`]);
//! - verification (size, sha256 or sha512) before a package is visible in the store.

pub mod archive;
pub mod auth;
pub mod client;
pub mod error;
pub mod mirror;
pub mod retry;
pub mod source;
mod store;
pub mod tier;

pub use archive::Archives;
pub use auth::Credentials;
pub use client::HttpClient;
pub use error::{error_chain, FetchError};
pub use mirror::MirrorMap;
pub use retry::{Failed, RetryPolicy};
pub use store::{hash_file, PackageStore};
pub use tier::{PackageTier, TierGet};

use crate::error::{BuildError, ErrorClass};
use crate::manifest::Package;
use anyhow::Result;
use source::{HttpSource, PackageSource, Resume};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct FetchConfig {
    pub connect_timeout: Duration,
    /// A transfer with no bytes for this long fails (and is retried).
    pub stall_timeout: Duration,
    /// After `rate_grace`, a transfer averaging less than this many bytes
    /// per second fails (and is retried).
    pub min_rate: u64,
    pub rate_grace: Duration,
    /// All attempts at one package, every location included, end by then.
    pub deadline: Duration,
    pub retry: RetryPolicy,
    /// The largest package accepted when the manifest gives no size.
    pub max_package_bytes: u64,
    pub mirrors: MirrorMap,
    /// Credentials by URL prefix ([`auth`]).
    pub credentials: Credentials,
    /// Where a package is looked for after its own locations lost it ([`archive`]).
    pub archives: Archives,
}

impl Default for FetchConfig {
    fn default() -> Self {
        let d = crate::defaults::Defaults::get();
        FetchConfig {
            connect_timeout: d.connect_timeout,
            stall_timeout: d.stall_timeout,
            min_rate: d.min_rate,
            rate_grace: d.rate_grace,
            deadline: d.download_deadline,
            retry: RetryPolicy { retries: d.retries, ..RetryPolicy::default() },
            max_package_bytes: d.max_package_bytes,
            mirrors: MirrorMap::default(),
            credentials: Credentials::default(),
            archives: Archives::default(),
        }
    }
}

/// Install the TLS crypto provider once (reqwest is built without a default one).
pub fn init_tls() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Bytes of downloads in progress count against the cache's budget.
pub trait SpaceGuard: Send + Sync {
    /// The download `name` has grown to `bytes`: make room, or refuse.
    fn grow(&self, name: &str, bytes: u64) -> bool;
    /// The attempt ended; its partial file stays on disk (resumable, evictable).
    fn idle(&self, name: &str);
    /// The partial file is gone (admitted into the store, or removed).
    fn gone(&self, name: &str);
}

#[derive(Clone)]
pub struct Fetcher {
    source: Arc<dyn PackageSource>,
    cfg: Arc<FetchConfig>,
    store: PackageStore,
    space: Option<Arc<dyn SpaceGuard>>,
    tier: Option<Arc<dyn PackageTier>>,
}

impl Fetcher {
    pub fn new(cfg: FetchConfig, store: PackageStore, source: Arc<dyn PackageSource>) -> Self {
        Fetcher { source, cfg: Arc::new(cfg), store, space: None, tier: None }
    }

    /// Over HTTP(S), with the configuration's mirrors and credentials.
    pub fn http(cfg: FetchConfig, store: PackageStore) -> Result<Self> {
        let source = Arc::new(HttpSource::new(HttpClient::new(&cfg)?));
        Ok(Fetcher::new(cfg, store, source))
    }

    pub fn with_space_guard(mut self, guard: Arc<dyn SpaceGuard>) -> Self {
        self.space = Some(guard);
        self
    }

    /// Ask `tier` before the sources, and give it what was downloaded.
    pub fn with_package_tier(mut self, tier: Arc<dyn PackageTier>) -> Self {
        self.tier = Some(tier);
        self
    }

    pub fn store(&self) -> &PackageStore {
        &self.store
    }

    pub fn config(&self) -> &FetchConfig {
        &self.cfg
    }

    /// The verified local file for `pkg`, downloading it if the store lacks
    /// it. Errors are one line naming the package, where from, and why,
    /// with the class of the failure (see [`failure_class`]).
    pub async fn fetch(&self, pkg: &Package) -> Result<PathBuf, BuildError> {
        let name = pkg.file_name().to_string();
        self.fetch_inner(pkg).await.map_err(|e| e.context(format!("package {name}")))
    }

    async fn fetch_inner(&self, pkg: &Package) -> Result<PathBuf, BuildError> {
        let key_lock = self.store.lock_for(pkg);
        let _guard = key_lock.lock().await;
        // Looking a package up hashes it (a damaged copy is refetched): CPU work.
        let (store, wanted) = (self.store.clone(), pkg.clone());
        let found = crate::cpu::run(1, move |_| store.lookup(&wanted)).await;
        if let Some(path) = found.map_err(|e| BuildError::of(ErrorClass::Internal, &e))? {
            return Ok(path);
        }
        // The tier only for packages whose sha256 makes its copy checkable.
        let Some((tier, sha)) = self.tier.clone().zip(pkg.sha256.clone()) else { return self.download(pkg).await };
        let from_tier = self.store.partial_path(pkg).with_extension("tier");
        let claimed = match tier.get(&sha, pkg.size, &from_tier).await {
            TierGet::Found => match self.admit(pkg, &from_tier).await {
                Ok(path) => return Ok(path),
                Err(e) => {
                    log::warn!("package {}: the tier's copy is refused ({e}); downloading it", pkg.file_name());
                    false
                }
            },
            TierGet::Download { claimed } => claimed,
        };
        let _ = std::fs::remove_file(&from_tier);
        let result = self.download(pkg).await;
        match &result {
            Ok(path) => tier.put(&sha, path, claimed).await,
            Err(_) if claimed => tier.release(&sha).await,
            Err(_) => {}
        }
        result
    }

    /// From the package's locations (and the archives).
    async fn download(&self, pkg: &Package) -> Result<PathBuf, BuildError> {
        let deadline = Instant::now() + self.cfg.deadline;
        let mut tried = Tried::default();
        // The package's own locations, through the mirrors.
        for url in pkg.locations() {
            let concrete = self.cfg.mirrors.rewrite(url);
            if let Some(path) = self.try_location(&concrete, pkg, deadline, &mut tried).await {
                return Ok(path);
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        let own = tried.errors.len();
        // Gone from where it should be: the archives, for a package whose
        // sha256 makes any copy checkable.
        let gone = tried.errors.iter().any(|e| e.class() == ErrorClass::NotFound);
        if gone && self.cfg.archives.enabled && pkg.sha256.is_some() && Instant::now() < deadline {
            if let Some(path) = self.try_archives(pkg, deadline, &mut tried).await {
                log::info!("package {}: not at its own locations, found at {}", pkg.file_name(), tried.last_url());
                return Ok(path);
            }
        }
        // The class is the package's own locations' (an archive that is
        // unreachable from here does not make a deleted package
        // "unreachable"), except that wrong bytes anywhere are refused.
        let mut class = failure_class(&tried.errors[..own]);
        if tried.errors[own..].iter().any(|e| e.class() == ErrorClass::Refused) {
            class = ErrorClass::Refused;
        }
        Err(BuildError::new(class, tried.failures.join("; ")))
    }

    /// One location with retries; `None` (and the failure noted) if it failed.
    async fn try_location(&self, url: &str, pkg: &Package, deadline: Instant, tried: &mut Tried) -> Option<PathBuf> {
        if tried.urls.iter().any(|u| u == url) {
            return None;
        }
        tried.urls.push(url.to_string());
        match self.cfg.retry.run(Some(deadline), |_| self.attempt(url, pkg, deadline)).await {
            Ok(path) => Some(path),
            Err(failed) => {
                tried.failures.push(format!("from {}: {}", self.source.location(url), failed.describe()));
                tried.errors.push(failed.error);
                None
            }
        }
    }

    /// `pkg` from the archives, in order: each own location's canonical
    /// URL where a mirror stood in, the archives its prefix moved to, then
    /// the snapshot archives' copies (looked up by name and version when
    /// reached, so the log reads in the order things were tried).
    async fn try_archives(&self, pkg: &Package, deadline: Instant, tried: &mut Tried) -> Option<PathBuf> {
        let archives = &self.cfg.archives;
        let mut moved: Vec<String> = Vec::new();
        for url in pkg.locations() {
            if self.cfg.mirrors.rewrite(url) != url {
                moved.push(url.to_string());
            }
            moved.extend(archives.moved(url));
        }
        for url in moved {
            if Instant::now() >= deadline {
                return None;
            }
            if let Some(path) = self.try_location(&url, pkg, deadline, tried).await {
                return Some(path);
            }
        }
        let mut bases: Vec<&str> = pkg.locations().flat_map(|u| archives.snapshot_bases(u)).collect();
        bases.dedup();
        for base in bases {
            let Some(api) = archive::snapshot_lookup_url(base, pkg.file_name()) else { continue };
            if Instant::now() >= deadline {
                return None;
            }
            let looked = self.source.lookup(&api, archive::MAX_LOOKUP_BYTES).await;
            let files = match looked.map(|body| archive::snapshot_files(base, &body, pkg.file_name())) {
                Ok(Ok(files)) if !files.is_empty() => files,
                Ok(Ok(_)) => {
                    tried.failures.push(format!("from {}: no such file there", self.source.location(&api)));
                    continue;
                }
                Ok(Err(why)) => {
                    tried.failures.push(format!("from {}: {why}", self.source.location(&api)));
                    continue;
                }
                Err(e) => {
                    tried.failures.push(format!("from {}: {e}", self.source.location(&api)));
                    tried.errors.push(e);
                    continue;
                }
            };
            for url in files {
                if let Some(path) = self.try_location(&url, pkg, deadline, tried).await {
                    return Some(path);
                }
            }
        }
        None
    }

    /// One request for `url`, appending to the package's partial file when
    /// it can resume. Returns the admitted store path.
    async fn attempt(&self, url: &str, pkg: &Package, deadline: Instant) -> Result<PathBuf, FetchError> {
        let partial = self.store.partial_path(pkg);
        let name = partial.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let result = self.transfer(url, pkg, &partial, &name, deadline).await;
        let result = match result {
            Ok(()) => self.admit(pkg, &partial).await,
            Err(e) => Err(e),
        };
        if result.is_err() && !pkg.has_digest() {
            // Never resumed (see `transfer`): a leftover would only take room.
            let _ = std::fs::remove_file(&partial);
        }
        match (&result, &self.space) {
            (Ok(_), Some(space)) => space.gone(&name),
            (Err(_), Some(space)) if partial.exists() => space.idle(&name),
            (Err(_), Some(space)) => space.gone(&name),
            _ => {}
        }
        result
    }

    async fn transfer(
        &self,
        url: &str,
        pkg: &Package,
        partial: &Path,
        name: &str,
        deadline: Instant,
    ) -> Result<(), FetchError> {
        let cfg = &self.cfg;
        let validator_path = PackageStore::validator_path(partial);
        // Without a digest nothing could tell a mix of two versions apart:
        // such a package is only taken whole from one response.
        let resumable = pkg.has_digest();
        let mut have = if resumable { std::fs::metadata(partial).map_or(0, |m| m.len()) } else { 0 };
        if let Some(size) = pkg.size {
            if resumable && have == size {
                return Ok(()); // complete from an earlier attempt; verified on admission
            }
            if have > size {
                have = 0;
            }
        }
        let resume =
            (have > 0).then(|| Resume { offset: have, validator: std::fs::read_to_string(&validator_path).ok() });
        let wait = cfg.stall_timeout + cfg.connect_timeout;
        let resp = match tokio::time::timeout(until(deadline, wait), self.source.get(url, resume.as_ref())).await {
            Err(_) if Instant::now() >= deadline => return Err(FetchError::Deadline { after: cfg.deadline }),
            Err(_) => return Err(FetchError::Stalled { after_bytes: 0, timeout: wait }),
            Ok(r) => r?,
        };
        let append = resp.partial && have > 0;
        let start = if append { have } else { 0 };
        let limit = pkg.size.unwrap_or(cfg.max_package_bytes);
        if let Some(len) = resp.length {
            if start + len > limit {
                return Err(FetchError::TooLarge { limit });
            }
        }
        if !append {
            match &resp.validator {
                Some(v) if resumable => crate::util::write_atomic(&validator_path, v.as_bytes())
                    .map_err(|e| FetchError::local("saving the download's validator", &e))?,
                _ => {
                    let _ = std::fs::remove_file(&validator_path);
                }
            }
        }
        let mut file = crate::files::open_private_output(partial, append)
            .map_err(|e| FetchError::io(&format!("opening {}", partial.display()), e))?;
        let expected = resp.length.map(|len| start + len);
        let mut body = resp.body;
        let (began, mut written) = (Instant::now(), start);
        loop {
            let wait = until(deadline, cfg.stall_timeout);
            let chunk = match tokio::time::timeout(wait, body.chunk()).await {
                Err(_) if Instant::now() >= deadline => return Err(FetchError::Deadline { after: cfg.deadline }),
                Err(_) => return Err(FetchError::Stalled { after_bytes: written, timeout: cfg.stall_timeout }),
                Ok(Err(FetchError::Cut { cause, .. })) => {
                    return Err(FetchError::Cut { after_bytes: written, expected, cause })
                }
                Ok(Err(FetchError::Stalled { .. })) => {
                    return Err(FetchError::Stalled { after_bytes: written, timeout: cfg.stall_timeout })
                }
                Ok(Err(e)) => return Err(e),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => c,
            };
            written += chunk.len() as u64;
            if written > limit {
                drop(file);
                let _ = std::fs::remove_file(partial);
                return Err(FetchError::TooLarge { limit });
            }
            if let Some(space) = &self.space {
                if !space.grow(name, written) {
                    return Err(FetchError::NoRoom { needed: chunk.len() as u64 });
                }
            }
            file.write_all(&chunk).map_err(|e| FetchError::io(&format!("writing {}", partial.display()), e))?;
            let elapsed = began.elapsed();
            if elapsed > cfg.rate_grace && cfg.min_rate > 0 {
                let rate = (written - start) as f64 / elapsed.as_secs_f64();
                if rate < cfg.min_rate as f64 {
                    return Err(FetchError::TooSlow { bytes: written - start, elapsed, min_rate: cfg.min_rate });
                }
            }
        }
        let short_of = expected.into_iter().chain(pkg.size).find(|total| written < *total);
        if let Some(total) = short_of {
            return Err(FetchError::Cut { after_bytes: written, expected: Some(total), cause: String::new() });
        }
        file.sync_all().map_err(|e| FetchError::io(&format!("syncing {}", partial.display()), e))?;
        Ok(())
    }

    async fn admit(&self, pkg: &Package, partial: &Path) -> Result<PathBuf, FetchError> {
        let (store, pkg, partial) = (self.store.clone(), pkg.clone(), partial.to_path_buf());
        crate::cpu::run(1, move |_| store.admit(&pkg, &partial)).await
    }
}

/// What was tried for one package, in order.
#[derive(Default)]
struct Tried {
    urls: Vec<String>,
    failures: Vec<String>,
    errors: Vec<FetchError>,
}

impl Tried {
    fn last_url(&self) -> String {
        self.urls.last().map(|u| auth::redact(u)).unwrap_or_default()
    }
}

/// The class of a package that failed from every location: refused when
/// any location served wrong bytes (someone must look), not found when
/// every location said so (the archive dropped it), else the first
/// location's class (the usual place, usually unreachable).
pub fn failure_class(errors: &[FetchError]) -> ErrorClass {
    let classes: Vec<ErrorClass> = errors.iter().map(FetchError::class).collect();
    if classes.contains(&ErrorClass::Refused) {
        ErrorClass::Refused
    } else if !classes.is_empty() && classes.iter().all(|c| *c == ErrorClass::NotFound) {
        ErrorClass::NotFound
    } else {
        classes.iter().copied().find(|c| *c != ErrorClass::NotFound).unwrap_or(ErrorClass::Internal)
    }
}

/// `wait`, cut short at the deadline.
fn until(deadline: Instant, wait: Duration) -> Duration {
    deadline.saturating_duration_since(Instant::now()).min(wait)
}
