//! A source that misbehaves on purpose, wrapping a real one: HTTP errors,
//! stalls, drips, cuts and corruption, on chosen calls. The fast test tier
//! drives the fetcher and the cache through it (compare mountpoint-s3's
//! failure client).

use super::{Body, BoxFuture, PackageSource, Resume};
use crate::fetch::error::FetchError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status.
    Status(u16),
    /// Never answer.
    Hang,
    /// Send this many bytes of the body, then nothing, ever.
    StallAfter(u64),
    /// Close the body after this many bytes (its length says more).
    CutAfter(u64),
    /// Flip the byte at this offset of the body.
    Corrupt(u64),
    /// One byte per interval.
    Drip(Duration),
    /// Wait this long before answering.
    Delay(Duration),
}

struct Rule {
    url_part: String,
    fault: Fault,
    /// Calls matching `url_part` to let through before this rule applies.
    skip: u32,
    /// How many times it applies (None: always).
    times: Option<u32>,
    seen: u32,
}

pub struct FaultySource {
    inner: Arc<dyn PackageSource>,
    rules: Mutex<Vec<Rule>>,
    calls: Mutex<Vec<(String, Option<Resume>)>>,
    bytes: Arc<AtomicU64>,
}

impl FaultySource {
    pub fn new(inner: Arc<dyn PackageSource>) -> Arc<FaultySource> {
        Arc::new(FaultySource { inner, rules: Mutex::default(), calls: Mutex::default(), bytes: Arc::default() })
    }

    /// Apply `fault` to calls whose URL contains `url_part`: after `skip`
    /// such calls, `times` times (None: always).
    pub fn add(&self, url_part: &str, fault: Fault, skip: u32, times: Option<u32>) {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).push(Rule {
            url_part: url_part.to_string(),
            fault,
            skip,
            times,
            seen: 0,
        });
    }

    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// URLs requested so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(u, _)| u.clone()).collect()
    }

    /// The resume request of each call whose URL contains `url_part`.
    pub fn resumes(&self, url_part: &str) -> Vec<Option<Resume>> {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.iter().filter(|(u, _)| u.contains(url_part)).map(|(_, r)| r.clone()).collect()
    }

    pub fn calls_for(&self, url_part: &str) -> usize {
        self.calls().iter().filter(|u| u.contains(url_part)).count()
    }

    /// Body bytes handed out.
    pub fn bytes_served(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    fn fault_for(&self, url: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        for rule in rules.iter_mut().filter(|r| url.contains(&r.url_part)) {
            rule.seen += 1;
            if rule.seen <= rule.skip {
                continue;
            }
            match &mut rule.times {
                Some(0) => continue,
                Some(n) => *n -= 1,
                None => {}
            }
            return Some(rule.fault.clone());
        }
        None
    }
}

struct FaultyBody {
    inner: Box<dyn Body>,
    fault: Option<Fault>,
    pos: u64,
    pending: bytes::Bytes,
    bytes: Arc<AtomicU64>,
}

impl Body for FaultyBody {
    fn chunk(&mut self) -> BoxFuture<'_, Result<Option<bytes::Bytes>, FetchError>> {
        Box::pin(async move {
            if self.pending.is_empty() {
                match self.inner.chunk().await? {
                    Some(c) => self.pending = c,
                    None => return Ok(None),
                }
            }
            let mut take = self.pending.len();
            match self.fault {
                Some(Fault::StallAfter(n)) if self.pos >= n => std::future::pending::<()>().await,
                Some(Fault::StallAfter(n)) | Some(Fault::CutAfter(n)) => take = take.min((n - self.pos) as usize),
                Some(Fault::Drip(every)) => {
                    tokio::time::sleep(every).await;
                    take = 1;
                }
                _ => {}
            }
            if matches!(self.fault, Some(Fault::CutAfter(n)) if self.pos >= n) {
                return Ok(None);
            }
            let mut chunk = self.pending.split_to(take).to_vec();
            if let Some(Fault::Corrupt(at)) = self.fault {
                if (self.pos..self.pos + chunk.len() as u64).contains(&at) {
                    chunk[(at - self.pos) as usize] ^= 0x5a;
                }
            }
            self.pos += chunk.len() as u64;
            self.bytes.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            Ok(Some(bytes::Bytes::from(chunk)))
        })
    }
}

impl PackageSource for FaultySource {
    fn location(&self, url: &str) -> String {
        self.inner.location(url)
    }

    fn lookup<'a>(&'a self, url: &'a str, limit: u64) -> BoxFuture<'a, Result<Vec<u8>, FetchError>> {
        self.inner.lookup(url, limit)
    }

    fn get<'a>(
        &'a self,
        url: &'a str,
        resume: Option<&'a Resume>,
    ) -> BoxFuture<'a, Result<super::Response, FetchError>> {
        Box::pin(async move {
            self.calls.lock().unwrap_or_else(|e| e.into_inner()).push((url.to_string(), resume.cloned()));
            let fault = self.fault_for(url);
            match &fault {
                Some(Fault::Status(s)) => return Err(FetchError::Status(*s)),
                Some(Fault::Hang) => std::future::pending::<()>().await,
                Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
                _ => {}
            }
            let mut resp = self.inner.get(url, resume).await?;
            resp.body = Box::new(FaultyBody {
                inner: resp.body,
                fault,
                pos: 0,
                pending: bytes::Bytes::new(),
                bytes: self.bytes.clone(),
            });
            Ok(resp)
        })
    }
}
