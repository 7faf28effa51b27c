//! The package tier: verified packages in the bucket by sha256, so a fleet
//! downloads each package once (two hosts building sibling flavours share
//! their `-common` and kbuild packages) and keeps packages upstream has
//! since deleted (`kpackfs publish --packages`).
//!
//! The same create-only scheme and claims as bundles, per package: a host
//! that misses a package claims it (`<sha256>.fetching`) and downloads it;
//! the others wait for its object instead of downloading it too. An object
//! is content-addressed, so the reader checks it against its own name (and
//! the manifest's size); one that fails is refused, removed when this host
//! may write, and the package downloaded as if the tier lacked it.

use super::{Copied, Got, Put, Remote};
use crate::fetch::source::BoxFuture;
use crate::fetch::{PackageTier, TierGet};
use anyhow::{anyhow, Context, Result};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The largest package object read when the manifest gives no size.
const MAX_PACKAGE_BYTES: u64 = 1 << 30;

pub fn package_key(sha256: &str) -> ObjectPath {
    ObjectPath::from(format!("packages/sha256/{sha256}"))
}

fn package_claim_key(sha256: &str) -> ObjectPath {
    ObjectPath::from(format!("packages/sha256/{sha256}.fetching"))
}

fn valid_sha(sha256: &str) -> bool {
    sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Remote {
    /// Package `sha256` into `dest`, checked against its name and `size`.
    /// Ok(None): the tier does not have it, or had bytes that are not it.
    async fn fetch_package(&self, sha256: &str, size: Option<u64>, dest: &Path) -> Result<Option<()>> {
        let key = package_key(sha256);
        let limit = size.unwrap_or(MAX_PACKAGE_BYTES);
        // Bigger than the package is garbage (below), not an outage.
        let Some(got) = self.get_bounded(&key, MAX_PACKAGE_BYTES.max(limit)).await? else { return Ok(None) };
        let written = async {
            let mut out =
                crate::files::create_new(dest, 0o600).with_context(|| format!("creating {}", dest.display()))?;
            let copied = self.stream_to(&key, got, &mut out, limit).await?;
            out.sync_all().context("syncing the package")?;
            let Copied::Whole { len, sha256: actual } = copied else {
                return Ok(Some(format!("it is over the package's {limit} bytes")));
            };
            if actual != sha256 || size.is_some_and(|s| s != len) {
                return Ok(Some(format!("it holds {len} bytes with sha256 {actual}")));
            }
            Ok(None)
        };
        let result = tokio::time::timeout(self.opts.deadline, written)
            .await
            .map_err(|_| anyhow!("fetching {key} took over {:?}", self.opts.deadline))
            .and_then(|r| r);
        match result {
            Ok(None) => Ok(Some(())),
            Ok(Some(wrong)) => {
                let _ = std::fs::remove_file(dest);
                // Content-addressed: bytes that are not their name are garbage
                // whoever wrote them, not a tier outage: removed (so a good
                // copy can be put) and the package treated as missing here.
                if !self.read_only {
                    let _ = tokio::time::timeout(self.opts.stall, self.store.delete(&key)).await;
                }
                log::warn!("remote tier {}: {key} refused: {wrong}, not the package; downloading it", self.url);
                Ok(None)
            }
            Err(e) => {
                let _ = std::fs::remove_file(dest);
                Err(e)
            }
        }
    }

    /// Whether the tier has package `sha256`.
    pub async fn has_package(&self, sha256: &str) -> Result<bool> {
        self.exists(&package_key(sha256)).await
    }

    /// Create-only write of a verified package.
    pub async fn publish_package(&self, sha256: &str, path: &Path) -> Result<Put> {
        let bytes = tokio::fs::read(path).await.with_context(|| format!("reading {}", path.display()))?;
        self.put_new(&package_key(sha256), bytes).await
    }

    async fn release_package(&self, sha256: &str) {
        if !self.read_only {
            let _ = tokio::time::timeout(self.opts.stall, self.store.delete(&package_claim_key(sha256))).await;
        }
    }
}

/// The tier as the fetcher's package tier: reads always, writes (and
/// claims) only when `write` and the tier is writable.
pub struct PackageLayer {
    remote: Arc<Remote>,
    write: bool,
}

impl PackageLayer {
    pub fn new(remote: Arc<Remote>, write: bool) -> PackageLayer {
        PackageLayer { write: write && !remote.is_read_only(), remote }
    }
}

impl PackageTier for PackageLayer {
    fn get<'a>(&'a self, sha256: &'a str, size: Option<u64>, dest: &'a Path) -> BoxFuture<'a, TierGet> {
        Box::pin(async move {
            let r = &self.remote;
            if !valid_sha(sha256) || !r.health.can_read(Instant::now()) {
                return TierGet::Download { claimed: false };
            }
            let _ = std::fs::remove_file(dest);
            let what = format!("package {sha256}");
            let fetch = || r.fetch_package(sha256, size, dest);
            let got = r.fetch_or_wait(&what, &package_claim_key(sha256), self.write, fetch).await;
            if got.is_ok() {
                r.health.read_worked();
            }
            match got {
                Ok(Got::Found(())) => TierGet::Found,
                Ok(Got::Claimed) => TierGet::Download { claimed: true },
                Ok(Got::Unclaimed) => TierGet::Download { claimed: false },
                Err(e) => {
                    if let Some(pause) = r.health.read_failed(Instant::now()) {
                        log::warn!(
                            "remote tier {}: {what}: {e:#}; downloading it (the tier is skipped for {})",
                            r.url,
                            crate::util::human_duration(pause)
                        );
                    }
                    TierGet::Download { claimed: false }
                }
            }
        })
    }

    fn put<'a>(&'a self, sha256: &'a str, path: &'a Path, claimed: bool) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let r = &self.remote;
            if !self.write || !valid_sha(sha256) {
                return;
            }
            // Not while reads back off either: a tier that is down gets no
            // pile of writes (one log line per outage, as for bundles).
            let now = Instant::now();
            if r.health.can_write(now) && r.health.can_read(now) {
                match r.publish_package(sha256, path).await {
                    Ok(_) => r.health.write_worked(),
                    Err(e) => {
                        if let Some(pause) = r.health.write_failed(Instant::now()) {
                            log::warn!(
                                "remote tier {}: package {sha256} not written: {e:#} (writes are skipped for {})",
                                r.url,
                                crate::util::human_duration(pause)
                            );
                        }
                    }
                }
            }
            if claimed {
                r.release_package(sha256).await;
            }
        })
    }

    fn release<'a>(&'a self, sha256: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if self.write && valid_sha(sha256) {
                self.remote.release_package(sha256).await;
            }
        })
    }
}
