//! Fetching repository indexes, cheaply on a re-crawl:
//! - index roots (InRelease, repomd.xml, mirror lists) are fetched with
//!   If-None-Match / If-Modified-Since from a small on-disk cache; a 304
//!   answers from the cache;
//! - from a server that sends neither ETag nor Last-Modified, a root is
//!   revalidated by a prefix probe: the first 4 KiB by Range. The same total
//!   length and the same prefix (which holds Release's Date and repomd's
//!   revision, both new at every publication) answer from the cache. A wrong
//!   guess can only serve the copy verified last time, never unverified data;
//! - files a signed root names by checksum (Packages.xz, primary.xml.gz) are
//!   kept by sha256 and not fetched again while the checksum is unchanged.
//!
//! So an unchanged re-crawl costs one small request per index root.

use crate::fetch::{error_chain, FetchConfig, MirrorMap};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Largest index file accepted.
const MAX_INDEX_BYTES: u64 = 1 << 30;

/// Bytes a prefix probe asks for.
const PROBE_BYTES: usize = 4096;

#[derive(Debug, Default, Serialize, Deserialize)]
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
    client: reqwest::Client,
    mirrors: MirrorMap,
    dir: PathBuf,
    retries: u32,
    stall: Duration,
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
#[derive(Clone, Copy, Default)]
struct Ask<'a> {
    validators: Option<&'a Validators>,
    /// Only the first this many bytes.
    prefix: Option<usize>,
}

impl IndexFetcher {
    pub fn new(cfg: &FetchConfig, dir: PathBuf) -> Result<Self> {
        for sub in ["cond", "by-hash", "memo"] {
            std::fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        Ok(IndexFetcher {
            client: crate::fetch::http_client(cfg)?,
            mirrors: cfg.mirrors.clone(),
            dir,
            retries: cfg.retries,
            stall: cfg.stall_timeout,
            counters: Arc::default(),
        })
    }

    fn key(url: &str) -> String {
        crate::util::sha256_hex(url.as_bytes())
    }

    /// One GET with retries on transient failures.
    async fn request(&self, url: &str, ask: Ask<'_>) -> Result<(Got, Validators)> {
        let target = self.mirrors.rewrite(url);
        let mut attempt = 0;
        loop {
            let result = self.request_once(&target, ask).await;
            match result {
                Ok(got) => return Ok(got),
                Err((e, transient)) if transient && attempt < self.retries => {
                    attempt += 1;
                    log::debug!("{target}: {e:#}; retrying");
                    tokio::time::sleep(Duration::from_millis(300) * 2u32.pow(attempt.min(6))).await;
                }
                Err((e, _)) => return Err(e.context(format!("fetching {target}"))),
            }
        }
    }

    async fn request_once(&self, url: &str, ask: Ask<'_>) -> Result<(Got, Validators), (anyhow::Error, bool)> {
        let mut req = self.client.get(url);
        if let Some(n) = ask.prefix {
            req = req.header(reqwest::header::RANGE, format!("bytes=0-{}", n.saturating_sub(1)));
        }
        if let Some(v) = ask.validators {
            if let Some(etag) = &v.etag {
                req = req.header(reqwest::header::IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &v.last_modified {
                req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
            }
        }
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let resp = match tokio::time::timeout(self.stall * 2, req.send()).await {
            Err(_) => return Err((anyhow!("no response within {:?}", self.stall * 2), true)),
            Ok(Err(e)) => return Err((anyhow!("{}", error_chain(&e)), true)),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        let header = |name: reqwest::header::HeaderName| {
            resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
        };
        let got_validators =
            Validators { etag: header(reqwest::header::ETAG), last_modified: header(reqwest::header::LAST_MODIFIED) };
        // Content-Range: bytes 0-4095/151075
        let range_total: Option<u64> = header(reqwest::header::CONTENT_RANGE)
            .and_then(|r| r.rsplit_once('/').and_then(|(_, t)| t.trim().parse().ok()));
        match status.as_u16() {
            304 => {
                self.counters.not_modified.fetch_add(1, Ordering::Relaxed);
                return Ok((Got::NotModified, got_validators));
            }
            404 | 410 => return Ok((Got::NotFound, got_validators)),
            200 => {}
            206 if ask.prefix.is_some() => {}
            s if s >= 500 || s == 429 || s == 408 => return Err((anyhow!("HTTP {status}"), true)),
            _ => return Err((anyhow!("HTTP {status}"), false)),
        }
        if resp.content_length().is_some_and(|l| l > MAX_INDEX_BYTES) {
            return Err((anyhow!("index larger than {MAX_INDEX_BYTES} bytes"), false));
        }
        let body = match tokio::time::timeout(self.stall * 4, resp.bytes()).await {
            Err(_) => return Err((anyhow!("transfer stalled"), true)),
            Ok(Err(e)) => return Err((anyhow!("transfer failed: {}", error_chain(&e)), true)),
            Ok(Ok(b)) => b.to_vec(),
        };
        self.counters.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        if status.as_u16() == 206 {
            return Ok((Got::Partial(body, range_total), got_validators));
        }
        Ok((Got::Body(body), got_validators))
    }

    /// An index root, revalidated against the cached copy. `None`: not found.
    pub async fn get(&self, url: &str) -> Result<Option<Vec<u8>>> {
        let key = Self::key(url);
        let body_path = self.dir.join("cond").join(format!("{key}.body"));
        let meta_path = self.dir.join("cond").join(format!("{key}.meta"));
        let cached: Option<Validators> =
            std::fs::read(&meta_path).ok().and_then(|m| serde_json::from_slice(&m).ok()).filter(|_| body_path.exists());
        let validated = cached.as_ref().filter(|v| v.etag.is_some() || v.last_modified.is_some());
        let (got, validators) = match (&cached, validated) {
            (Some(_), None) => match self.probe(url, &body_path).await? {
                Some(unchanged) => return Ok(Some(unchanged)),
                None => self.request(url, Ask::default()).await?,
            },
            _ => self.request(url, Ask { validators: validated, prefix: None }).await?,
        };
        match got {
            Got::NotFound => Ok(None),
            Got::NotModified => {
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                Ok(Some(std::fs::read(&body_path).with_context(|| format!("reading cached {url}"))?))
            }
            Got::Body(body) | Got::Partial(body, _) => {
                crate::util::write_atomic(&body_path, &body)?;
                crate::util::write_atomic(&meta_path, &serde_json::to_vec(&validators)?)?;
                Ok(Some(body))
            }
        }
    }

    /// Revalidate a cached root with a prefix probe: `Some(cached)` when the
    /// server's copy has the same length and starts with the same bytes.
    async fn probe(&self, url: &str, body_path: &std::path::Path) -> Result<Option<Vec<u8>>> {
        let Ok(cached) = std::fs::read(body_path) else { return Ok(None) };
        let (got, _) = self.request(url, Ask { validators: None, prefix: Some(PROBE_BYTES) }).await?;
        match got {
            Got::Partial(head, Some(total))
                if total == cached.len() as u64 && cached.starts_with(&head) && !head.is_empty() =>
            {
                self.counters.not_modified.fetch_add(1, Ordering::Relaxed);
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                Ok(Some(cached))
            }
            // The server ignored Range and sent it all: that is the answer.
            Got::Body(body) => {
                crate::util::write_atomic(body_path, &body)?;
                Ok(Some(body))
            }
            _ => Ok(None),
        }
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
    /// sha256 is known, else downloaded and checked.
    pub async fn get_verified(&self, url: &str, sha256: &str, size: Option<u64>) -> Result<Vec<u8>> {
        let path = self.dir.join("by-hash").join(sha256.to_ascii_lowercase());
        if let Ok(data) = std::fs::read(&path) {
            if crate::util::sha256_hex(&data).eq_ignore_ascii_case(sha256) {
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(data);
            }
        }
        let (got, _) = self.request(url, Ask::default()).await?;
        let Got::Body(data) = got else { bail!("{url}: not found, though the signed index lists it") };
        if let Some(size) = size {
            if data.len() as u64 != size {
                bail!("{url}: size mismatch with the signed index (expected {size}, got {})", data.len());
            }
        }
        let actual = hex::encode(sha2::Sha256::digest(&data));
        if !actual.eq_ignore_ascii_case(sha256) {
            bail!("{url}: sha256 mismatch with the signed index (expected {sha256}, got {actual})");
        }
        crate::util::write_atomic(&path, &data)?;
        Ok(data)
    }
}
