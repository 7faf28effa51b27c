//! Fetching repository indexes, cheaply on a re-crawl and within bounds:
//! - index roots (InRelease, repomd.xml, mirror lists) are fetched with
//!   If-None-Match / If-Modified-Since from a small on-disk cache; a 304
//!   answers from the cache;
//! - from a server that sends neither ETag nor Last-Modified, a root is
//!   revalidated by a prefix probe: the first 4 KiB by Range. The same total
//!   length and the same prefix (which holds Release's Date and repomd's
//!   revision, both new at every publication) answer from the cache. A wrong
//!   guess can only serve the copy verified last time, never unverified data;
//! - a root enters the cache only once its caller has verified it
//!   ([`IndexFetcher::keep`]), so an unverified body is never kept;
//! - files a signed root names by checksum (Packages.xz, primary.xml.gz) are
//!   kept by sha256 and not fetched again while the checksum is unchanged;
//! - every body is bounded (roots by [`MAX_ROOT_BYTES`], checksummed files
//!   by their signed size) whether or not the server sends Content-Length,
//!   and every read by the stall timeout; retries follow the one
//!   [`RetryPolicy`](crate::fetch::RetryPolicy).
//!
//! So an unchanged re-crawl costs one small request per index root.

use crate::fetch::{error_chain, FetchConfig, FetchError, MirrorMap};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A file's checksum as a signed index gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    Sha256(String),
    Sha512(String),
}

impl Checksum {
    pub fn hex(&self) -> &str {
        match self {
            Checksum::Sha256(h) | Checksum::Sha512(h) => h,
        }
    }
}

/// The largest index root accepted (a real InRelease is under 200 KiB).
pub const MAX_ROOT_BYTES: u64 = 32 << 20;
/// The largest checksummed index file accepted (Packages.xz, primary.xml.gz).
pub const MAX_INDEX_BYTES: u64 = 1 << 30;

/// Bytes a prefix probe asks for.
const PROBE_BYTES: usize = 4096;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

/// Request counters for the summary and tests.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub not_modified: AtomicU64,
    pub bytes: AtomicU64,
    pub cache_hits: AtomicU64,
}

#[derive(Clone)]
pub struct IndexFetcher {
    client: crate::fetch::HttpClient,
    mirrors: MirrorMap,
    dir: PathBuf,
    cfg: Arc<FetchConfig>,
    pub counters: Arc<Counters>,
}

enum Got {
    Body(Vec<u8>),
    /// A 206 answer: the requested range and the file's total length.
    Partial(Vec<u8>, Option<u64>),
    NotModified,
    NotFound,
}

/// What a request asks beyond a plain GET.
#[derive(Clone, Copy)]
struct Ask<'a> {
    validators: Option<&'a Validators>,
    /// Only the first this many bytes.
    prefix: Option<usize>,
    /// The most bytes accepted.
    limit: u64,
}

/// An index root as fetched: [`IndexFetcher::keep`] it once verified.
pub struct Fetched {
    pub body: Vec<u8>,
    key: String,
    /// None: it came from the cache (already kept).
    validators: Option<Validators>,
}

impl IndexFetcher {
    pub fn new(cfg: &FetchConfig, dir: PathBuf) -> Result<Self> {
        for sub in ["cond", "by-hash", "memo", "state"] {
            crate::files::create_private_dir_all(&dir.join(sub))?;
        }
        Ok(IndexFetcher {
            client: crate::fetch::HttpClient::new(cfg)?,
            mirrors: cfg.mirrors.clone(),
            dir,
            cfg: Arc::new(cfg.clone()),
            counters: Arc::default(),
        })
    }

    fn key(url: &str) -> String {
        crate::util::sha256_hex(url.as_bytes())
    }

    /// Where per-source crawl state lives (e.g. the last accepted Release Date).
    pub fn state_path(&self, slot: &str) -> PathBuf {
        self.dir.join("state").join(Self::key(slot))
    }

    /// One GET with retries on transient failures, within the deadline.
    async fn request(&self, url: &str, ask: Ask<'_>) -> Result<(Got, Validators)> {
        let target = self.mirrors.rewrite(url);
        let deadline = Instant::now() + self.cfg.deadline;
        self.cfg.retry.run(Some(deadline), |_| self.request_once(&target, ask, deadline)).await.map_err(|failed| {
            let n = failed.attempts;
            let shown = crate::fetch::auth::redact(&target);
            anyhow::Error::new(failed.error)
                .context(format!("fetching {shown} ({n} attempt{})", if n == 1 { "" } else { "s" }))
        })
    }

    async fn request_once(&self, url: &str, ask: Ask<'_>, deadline: Instant) -> Result<(Got, Validators), FetchError> {
        use reqwest::header::{HeaderMap, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH, RANGE};
        let mut headers = HeaderMap::new();
        let mut put = |name, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        };
        if let Some(n) = ask.prefix {
            put(RANGE, &format!("bytes=0-{}", n.saturating_sub(1)));
        }
        if let Some(v) = ask.validators {
            if let Some(etag) = &v.etag {
                put(IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &v.last_modified {
                put(IF_MODIFIED_SINCE, lm);
            }
        }
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let wait = self.cfg.stall_timeout + self.cfg.connect_timeout;
        let mut resp = match tokio::time::timeout(wait.min(remaining(deadline)), self.client.get(url, &headers)).await {
            Err(_) => return Err(FetchError::Stalled { after_bytes: 0, timeout: wait }),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        let header = |name: reqwest::header::HeaderName| {
            resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
        };
        let got_validators =
            Validators { etag: header(reqwest::header::ETAG), last_modified: header(reqwest::header::LAST_MODIFIED) };
        // Content-Range: bytes 0-4095/151075
        let range_total: Option<u64> = header(reqwest::header::CONTENT_RANGE)
            .and_then(|r| r.rsplit_once('/').and_then(|(_, t)| t.trim().parse().ok()));
        match status {
            304 => {
                self.counters.not_modified.fetch_add(1, Ordering::Relaxed);
                return Ok((Got::NotModified, got_validators));
            }
            404 | 410 => return Ok((Got::NotFound, got_validators)),
            200 => {}
            206 if ask.prefix.is_some() => {}
            s => return Err(FetchError::Status(s)),
        }
        let limit = match (status, ask.prefix) {
            (206, Some(n)) => n as u64,
            _ => ask.limit,
        };
        if resp.content_length().is_some_and(|l| l > limit) {
            return Err(FetchError::TooLarge { limit });
        }
        let mut body = Vec::new();
        let began = Instant::now();
        loop {
            // The same minimum average rate as package downloads: an index
            // dripped at a few bytes a second ends after the grace period.
            let elapsed = began.elapsed();
            if elapsed > self.cfg.rate_grace && self.cfg.min_rate > 0 {
                let rate = body.len() as f64 / elapsed.as_secs_f64();
                if rate < self.cfg.min_rate as f64 {
                    return Err(FetchError::TooSlow { bytes: body.len() as u64, elapsed, min_rate: self.cfg.min_rate });
                }
            }
            let wait = self.cfg.stall_timeout.min(remaining(deadline));
            let chunk = match tokio::time::timeout(wait, resp.chunk()).await {
                Err(_) if Instant::now() >= deadline => return Err(FetchError::Deadline { after: self.cfg.deadline }),
                Err(_) => {
                    return Err(FetchError::Stalled { after_bytes: body.len() as u64, timeout: self.cfg.stall_timeout })
                }
                Ok(Err(e)) => {
                    return Err(FetchError::Cut {
                        after_bytes: body.len() as u64,
                        expected: None,
                        cause: error_chain(&e.without_url()),
                    })
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => c,
            };
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(FetchError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        self.counters.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        if status == 206 {
            return Ok((Got::Partial(body, range_total), got_validators));
        }
        Ok((Got::Body(body), got_validators))
    }

    /// An index root, revalidated against the cached copy. `None`: not found.
    pub async fn get(&self, url: &str) -> Result<Option<Fetched>> {
        let key = Self::key(url);
        let body_path = self.dir.join("cond").join(format!("{key}.body"));
        let meta_path = self.dir.join("cond").join(format!("{key}.meta"));
        let cached: Option<Validators> =
            std::fs::read(&meta_path).ok().and_then(|m| serde_json::from_slice(&m).ok()).filter(|_| body_path.exists());
        let validated = cached.as_ref().filter(|v| v.etag.is_some() || v.last_modified.is_some());
        let ask = Ask { validators: validated, prefix: None, limit: MAX_ROOT_BYTES };
        let (got, validators) = match (&cached, validated) {
            (Some(_), None) => match self.probe(url, &body_path).await? {
                Probe::Same(body) => return Ok(Some(Fetched { body, key, validators: None })),
                Probe::Whole(body) => (Got::Body(body), Validators::default()),
                Probe::Changed => self.request(url, ask).await?,
            },
            _ => self.request(url, ask).await?,
        };
        match got {
            Got::NotFound => Ok(None),
            Got::NotModified => {
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                let body = std::fs::read(&body_path).with_context(|| format!("reading cached {url}"))?;
                Ok(Some(Fetched { body, key, validators: None }))
            }
            Got::Body(body) | Got::Partial(body, _) => Ok(Some(Fetched { body, key, validators: Some(validators) })),
        }
    }

    /// Cache a verified root for conditional requests next time.
    pub fn keep(&self, fetched: &Fetched) -> Result<()> {
        let Some(validators) = &fetched.validators else { return Ok(()) };
        let cond = self.dir.join("cond");
        crate::util::write_atomic(&cond.join(format!("{}.body", fetched.key)), &fetched.body)?;
        crate::util::write_atomic(&cond.join(format!("{}.meta", fetched.key)), &serde_json::to_vec(validators)?)
    }

    /// Revalidate a cached root with a prefix probe.
    async fn probe(&self, url: &str, body_path: &std::path::Path) -> Result<Probe> {
        let Ok(cached) = std::fs::read(body_path) else { return Ok(Probe::Changed) };
        let ask = Ask { validators: None, prefix: Some(PROBE_BYTES), limit: MAX_ROOT_BYTES };
        let (got, _) = self.request(url, ask).await?;
        Ok(match got {
            Got::Partial(head, Some(total))
                if total == cached.len() as u64 && cached.starts_with(&head) && !head.is_empty() =>
            {
                self.counters.not_modified.fetch_add(1, Ordering::Relaxed);
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                Probe::Same(cached)
            }
            // The server ignored Range and sent it all: that is the answer.
            Got::Body(body) => Probe::Whole(body),
            _ => Probe::Changed,
        })
    }

    /// A result memoised under `slot`, if it was stored with the same `key`
    /// (the digest of the signed index it was derived from).
    pub fn memo_get(&self, slot: &str, key: &str) -> Option<Vec<u8>> {
        let path = self.dir.join("memo").join(Self::key(slot));
        let data = std::fs::read(path).ok()?;
        let (stored_key, body) = data.split_at(data.iter().position(|b| *b == b'\n')?);
        (stored_key == key.as_bytes()).then(|| body[1..].to_vec())
    }

    pub fn memo_put(&self, slot: &str, key: &str, body: &[u8]) -> Result<()> {
        let mut data = Vec::with_capacity(key.len() + 1 + body.len());
        data.extend_from_slice(key.as_bytes());
        data.push(b'\n');
        data.extend_from_slice(body);
        crate::util::write_atomic(&self.dir.join("memo").join(Self::key(slot)), &data)
    }

    /// A file named by checksum in a signed index: from the cache when its
    /// checksum is known, else downloaded (at most its signed size) and checked.
    pub async fn get_verified(&self, url: &str, sum: &Checksum, size: Option<u64>) -> Result<Vec<u8>> {
        let (what, digits) = match sum {
            Checksum::Sha256(_) => ("sha256", 64),
            Checksum::Sha512(_) => ("sha512", 128),
        };
        let expected = sum.hex().to_ascii_lowercase();
        if expected.len() != digits || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{url}: the signed index gives an invalid {what} {:?}", crate::manifest::rules::shown(&expected));
        }
        let digest = |data: &[u8]| match sum {
            Checksum::Sha256(_) => hex::encode(sha2::Sha256::digest(data)),
            Checksum::Sha512(_) => hex::encode(sha2::Sha512::digest(data)),
        };
        let path = self.dir.join("by-hash").join(&expected);
        if let Ok(data) = std::fs::read(&path) {
            if digest(&data) == expected {
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(data);
            }
        }
        let limit = size.unwrap_or(MAX_INDEX_BYTES).min(MAX_INDEX_BYTES);
        let result = self.request(url, Ask { validators: None, prefix: None, limit }).await;
        if let (Err(e), Some(size)) = (&result, size) {
            if matches!(e.downcast_ref::<FetchError>(), Some(FetchError::TooLarge { .. })) {
                bail!("{url}: size mismatch with the signed index (expected {size} bytes, the server sent more)");
            }
        }
        let (got, _) = result?;
        let Got::Body(data) = got else { bail!("{url}: not found, though the signed index lists it") };
        if let Some(size) = size {
            if data.len() as u64 != size {
                bail!("{url}: size mismatch with the signed index (expected {size}, got {})", data.len());
            }
        }
        let actual = digest(&data);
        if actual != expected {
            bail!("{url}: {what} mismatch with the signed index (expected {expected}, got {actual})");
        }
        crate::util::write_atomic(&path, &data)?;
        Ok(data)
    }
}

enum Probe {
    /// Unchanged: the cached copy.
    Same(Vec<u8>),
    /// The server sent the whole file instead of a range.
    Whole(Vec<u8>),
    Changed,
}

fn remaining(deadline: Instant) -> std::time::Duration {
    deadline.saturating_duration_since(Instant::now())
}
