//! HTTP downloads into a content-addressed package store.
//!
//! - Timeouts: on connecting, and on any stall (no bytes for `stall_timeout`);
//!   never on the whole transfer, since packages can be large.
//! - Retries with exponential backoff on connection errors, stalls and 5xx,
//!   resuming a cut transfer with `Range` (a server answering 200 restarts it).
//! - Verification: size and sha256 when the manifest has them. A package is
//!   visible in the store only once verified (rename from a partial file).
//! - Mirrors: the canonical URL is rewritten at fetch time ([`MirrorMap`]).

pub mod mirror;
mod store;

pub use mirror::MirrorMap;
pub use store::PackageStore;

use crate::manifest::Package;
use anyhow::{anyhow, Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct FetchConfig {
    pub connect_timeout: Duration,
    /// A transfer with no bytes for this long fails (and is retried).
    pub stall_timeout: Duration,
    /// Attempts after the first one.
    pub retries: u32,
    pub retry_base: Duration,
    /// Refuse bodies larger than this when the manifest gives no size.
    pub max_package_bytes: u64,
    pub mirrors: MirrorMap,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            retries: 3,
            retry_base: Duration::from_millis(500),
            max_package_bytes: 4 << 30,
            mirrors: MirrorMap::default(),
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

/// Build the HTTP client used for packages and repository indexes.
pub fn http_client(cfg: &FetchConfig) -> Result<reqwest::Client> {
    init_tls();
    reqwest::Client::builder()
        .connect_timeout(cfg.connect_timeout)
        .read_timeout(cfg.stall_timeout)
        .user_agent(concat!("kpackfs/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    cfg: Arc<FetchConfig>,
    store: PackageStore,
}

/// Why a transfer attempt failed, and whether another attempt may help.
struct AttemptError {
    error: anyhow::Error,
    retry: bool,
}

fn transient(error: anyhow::Error) -> AttemptError {
    AttemptError { error, retry: true }
}

fn permanent(error: anyhow::Error) -> AttemptError {
    AttemptError { error, retry: false }
}

impl Fetcher {
    pub fn new(cfg: FetchConfig, store: PackageStore) -> Result<Self> {
        Ok(Fetcher { client: http_client(&cfg)?, cfg: Arc::new(cfg), store })
    }

    pub fn store(&self) -> &PackageStore {
        &self.store
    }

    /// The verified local file for `pkg`, downloading it if the store lacks it.
    /// Errors are one line naming the package and the cause.
    pub async fn fetch(&self, pkg: &Package) -> Result<PathBuf> {
        let name = pkg.file_name().to_string();
        self.fetch_inner(pkg).await.map_err(|e| anyhow!("package {name}: {e:#}"))
    }

    async fn fetch_inner(&self, pkg: &Package) -> Result<PathBuf> {
        let key_lock = self.store.lock_for(&pkg.url);
        let _guard = key_lock.lock().await;
        if let Some(path) = self.store.lookup(pkg)? {
            return Ok(path);
        }
        let partial = self.store.partial_path(&pkg.url);
        let url = self.cfg.mirrors.rewrite(&pkg.url);
        let mut attempt = 0;
        loop {
            match self.attempt(&url, pkg, &partial).await {
                Ok(()) => break,
                Err(AttemptError { error, retry }) => {
                    if !retry || attempt >= self.cfg.retries {
                        let tries = attempt + 1;
                        return Err(
                            error.context(format!("from {url} ({tries} attempt{})", if tries == 1 { "" } else { "s" }))
                        );
                    }
                    let delay = self.cfg.retry_base * 2u32.saturating_pow(attempt);
                    log::info!("{}: {error:#}; retrying in {delay:?}", pkg.file_name());
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
        let store = self.store.clone();
        let pkg = pkg.clone();
        tokio::task::spawn_blocking(move || store.admit(&pkg, &partial)).await.context("verification task failed")?
    }

    /// One HTTP request, appending to `partial` (resuming when it has bytes).
    async fn attempt(&self, url: &str, pkg: &Package, partial: &std::path::Path) -> Result<(), AttemptError> {
        let have = std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
        if let Some(size) = pkg.size {
            if have == size {
                return Ok(()); // complete from an earlier run; verified on admission
            }
            if have > size {
                let _ = std::fs::remove_file(partial);
                return Err(transient(anyhow!("partial download was longer than the expected {size} bytes")));
            }
        }
        let mut req = self.client.get(url);
        if have > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let send = tokio::time::timeout(self.cfg.stall_timeout + self.cfg.connect_timeout, req.send());
        let mut resp = match send.await {
            Err(_) => return Err(transient(anyhow!("no response within {:?}", self.cfg.stall_timeout))),
            Ok(Err(e)) if is_timeout(&e) => {
                return Err(transient(anyhow!("no response within {:?}", self.cfg.stall_timeout)))
            }
            Ok(Err(e)) => return Err(transient(anyhow!("request failed: {}", error_chain(&e)))),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        let append = match status.as_u16() {
            206 if have > 0 => true,
            200 => false,
            416 if have > 0 => {
                let _ = std::fs::remove_file(partial);
                return Err(transient(anyhow!("server refused to resume (HTTP 416)")));
            }
            s if (500..600).contains(&s) || s == 429 || s == 408 => {
                return Err(transient(anyhow!("HTTP {status}")));
            }
            _ => return Err(permanent(anyhow!("HTTP {status}"))),
        };
        let limit = pkg.size.unwrap_or(self.cfg.max_package_bytes);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(partial)
            .map_err(|e| permanent(anyhow!("opening {}: {e}", partial.display())))?;
        let mut written = if append { have } else { 0 };
        loop {
            let stalled =
                || transient(anyhow!("transfer stalled for {:?} after {written} bytes", self.cfg.stall_timeout));
            let chunk = match tokio::time::timeout(self.cfg.stall_timeout, resp.chunk()).await {
                Err(_) => return Err(stalled()),
                Ok(Err(e)) if is_timeout(&e) => return Err(stalled()),
                Ok(Err(e)) => {
                    return Err(transient(anyhow!("transfer cut after {written} bytes: {}", error_chain(&e))))
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => c,
            };
            written += chunk.len() as u64;
            if written > limit {
                let _ = std::fs::remove_file(partial);
                return Err(permanent(anyhow!("body exceeds the expected {limit} bytes")));
            }
            file.write_all(&chunk).map_err(|e| permanent(anyhow!("writing {}: {e}", partial.display())))?;
        }
        if let Some(size) = pkg.size {
            if written < size {
                return Err(transient(anyhow!("transfer ended after {written} of {size} bytes")));
            }
        }
        if let Some(len) = resp.content_length() {
            let expected_total = if append { have + len } else { len };
            if written < expected_total {
                return Err(transient(anyhow!("transfer ended after {written} of {expected_total} bytes")));
            }
        }
        file.sync_all().map_err(|e| permanent(anyhow!("syncing {}: {e}", partial.display())))?;
        Ok(())
    }
}

/// Whether a transfer error is a timeout anywhere in its source chain.
fn is_timeout(e: &reqwest::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        if let Some(r) = err.downcast_ref::<reqwest::Error>() {
            if r.is_timeout() {
                return true;
            }
        }
        if err.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) {
            return true;
        }
        src = err.source();
    }
    false
}

/// An error with its sources, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
    }
    s
}
