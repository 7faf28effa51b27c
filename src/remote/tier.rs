//! The tier as a lower cache layer, behind one interface that keeps its
//! own health (CernVM-FS's tiered cache manager, mountpoint-s3's
//! multilevel cache): a read gives a verified tree or says to build here,
//! a write puts what this host built, and neither ever fails a build. A
//! tier that fails is skipped for a while ([`super::Health`]), reads and
//! writes apart; each failure is one log line and a counter.

use super::{Lookup, Put, Remote};
use crate::ids::BundleId;
use crate::layout::BundleTree;
use crate::observe::{bump, Counters};
use crate::package::Limits;
use std::path::Path;
use std::time::Instant;

/// What reading the tier gave.
#[derive(Debug)]
pub enum TierRead {
    /// The bundle, read as the hostile input it is (the tarball reader
    /// under the bundle limits) and bound to its id (BUNDLE_CHECKSUM).
    Found(BundleTree),
    /// The tier lacks it and nobody else is building it (this host holds
    /// the claim, unless the tier is read-only): build it here.
    Missing,
    /// Skipped (backing off) or failed just now (logged, counted): build here.
    Unusable,
}

/// What writing to the tier did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wrote {
    Put(Put),
    /// Not tried: read-only, or writes backing off after a failure.
    Skipped,
    /// Tried and failed (logged).
    Failed(String),
}

impl Remote {
    /// Read bundle `id` through `scratch` (a directory of ours; the
    /// fetched file is removed whatever happens).
    pub async fn read_layer(
        &self,
        id: &BundleId,
        label: &str,
        scratch: &Path,
        limits: Limits,
        counters: &Counters,
    ) -> TierRead {
        let now = Instant::now();
        if !self.health.can_read(now) {
            return TierRead::Unusable;
        }
        let started = Instant::now();
        let result = match self.fetch_or_claim(id, scratch, limits.max_total_bytes).await {
            Ok(Lookup::Build) => {
                self.health.read_worked();
                return TierRead::Missing;
            }
            Ok(Lookup::Found(fetched)) => {
                let (path, id) = (fetched.path.clone(), *id);
                // gunzip and one pass over the tree: one thread.
                let verified = crate::cpu::run(1, move |_| super::verify_bundle(&path, &id, limits)).await;
                let _ = std::fs::remove_file(&fetched.path);
                verified
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(tree) => {
                self.health.read_worked();
                bump(&counters.remote_hits);
                counters.timings.observe("remote", started.elapsed());
                TierRead::Found(tree)
            }
            Err(e) => {
                bump(&counters.remote_errors);
                if let Some(wait) = self.health.read_failed(now) {
                    log::warn!(
                        "bundle {label}: remote tier {}: {e:#}; building it from its inputs (the tier is skipped for {}s)",
                        self.url(),
                        wait.as_secs()
                    );
                }
                TierRead::Unusable
            }
        }
    }

    /// Whether a write now would be tried (writable, not backing off).
    pub fn accepts_writes(&self) -> bool {
        !self.is_read_only() && self.health.can_write(Instant::now())
    }

    /// Write the .tgz this host built as bundle `id` (create-only: a host
    /// that wrote it first wins, with the same bytes), then drop this
    /// host's claim. A failure is one log line, a counter and a write
    /// backoff; it is never the build's failure.
    pub async fn write_layer(
        &self,
        id: &BundleId,
        label: &str,
        tgz: &Path,
        sha256: &str,
        counters: &Counters,
    ) -> Wrote {
        if !self.accepts_writes() {
            self.release(id).await;
            return Wrote::Skipped;
        }
        let written = {
            let _permit = self.writes.acquire().await;
            self.publish_id(id, tgz, sha256).await
        };
        self.release(id).await;
        match written {
            Ok(put) => {
                self.health.write_worked();
                if put == Put::Created {
                    bump(&counters.remote_writes);
                    log::info!("bundle {label}: written to the remote tier");
                }
                Wrote::Put(put)
            }
            Err(e) => {
                bump(&counters.remote_errors);
                if let Some(wait) = self.health.write_failed(Instant::now()) {
                    log::warn!(
                        "bundle {label}: not written to the remote tier {}: {e:#} (writes are skipped for {}s)",
                        self.url(),
                        wait.as_secs()
                    );
                }
                Wrote::Failed(format!("{e:#}"))
            }
        }
    }
}
