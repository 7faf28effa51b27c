//! The tier as a lower cache layer, behind one interface that keeps its
//! own health (CernVM-FS's tiered cache manager, mountpoint-s3's
//! multilevel cache): a read gives a verified tree or says to build here,
//! a write puts what this host built, and neither ever fails a build. A
//! tier that fails is skipped for a while ([`super::Health`]), reads and
//! writes apart; each failure is one log line and a counter.

use super::{Got, PackGot, Put, Remote};
use crate::ids::BundleId;
use crate::layout::BundleTree;
use crate::observe::{bump, Counters};
use crate::pack::Pack;
use crate::package::Limits;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// What reading the tier gave.
#[derive(Debug)]
pub enum TierRead {
    /// The bundle, read as the hostile input it is (the tarball reader
    /// under the bundle limits) and bound to its id (BUNDLE_CHECKSUM).
    Found(BundleTree),
    /// The bundle's pack object, checked ([`super::packs`]) and installed
    /// where it was asked for; its size in bytes.
    FoundPack(Pack, u64),
    /// The tier lacks it: build it here. `claimed`: this host holds the
    /// claim (and must drop it); nobody else is building it either way.
    Missing { claimed: bool },
    /// Skipped (backing off) or failed just now (logged, counted): build here.
    Unusable,
}

/// Where a pack object read from the tier is installed: the cache's pack
/// file name, and a directory of ours on its filesystem for the download.
#[derive(Debug, Clone)]
pub struct PackDest {
    pub dest: PathBuf,
    pub tmp_dir: PathBuf,
}

/// What a host made, to write to the tier.
pub struct Upload<'a> {
    /// The .tgz and its sha256: the bundle of record.
    pub tgz: Option<(&'a Path, &'a str)>,
    /// Its pack, written before it (the mount: in an upload of its own
    /// while the .tgz is compressed), so hosts waiting on the claim go a
    /// compression earlier.
    pub pack: Option<&'a Pack>,
    /// Whether this host holds the bundle's claim (dropped after the write).
    pub claimed: bool,
}

/// One thing the tier sent for a bundle.
enum FromTier {
    Tgz(super::Fetched),
    Pack(Pack, u64),
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
    /// Read bundle `id`: its pack object installed at `pack` when asked
    /// (the mount's cache wants a pack and nothing else), else its .tgz
    /// through `scratch` (a directory of ours; the fetched file is removed
    /// whatever happens).
    pub async fn read_layer(
        &self,
        id: &BundleId,
        label: &str,
        scratch: &Path,
        pack: Option<&PackDest>,
        limits: Limits,
        counters: &Counters,
    ) -> TierRead {
        let now = Instant::now();
        if !self.health.can_read(now) {
            return TierRead::Unusable;
        }
        let started = Instant::now();
        // A refused pack is not asked for again while waiting on a claim.
        let pack_refused = AtomicBool::new(false);
        let fetch = || {
            let pack_refused = &pack_refused;
            async move {
                if let Some(to) = pack.filter(|_| !pack_refused.load(Ordering::Relaxed)) {
                    match self.fetch_pack(id, &to.dest, &to.tmp_dir, limits).await? {
                        PackGot::Installed(p, bytes) => return Ok(Some(FromTier::Pack(p, bytes))),
                        PackGot::Absent => {}
                        PackGot::Refused(why) => {
                            pack_refused.store(true, Ordering::Relaxed);
                            bump(&counters.remote_errors);
                            log::warn!(
                                "bundle {label}: remote tier {}: {} refused: {why}; reading the .tgz instead",
                                self.url(),
                                super::pack_key(id)
                            );
                            // Garbage, not an outage: removed (when this host may
                            // write) so the next host that builds it puts a good one.
                            self.remove_pack(id).await;
                        }
                    }
                }
                Ok(self.fetch(id, scratch, limits.max_total_bytes).await?.map(FromTier::Tgz))
            }
        };
        let what = format!("bundle {id}");
        let got = self.fetch_or_wait(&what, &super::claim_key(id), !self.read_only, fetch).await;
        let result = match got {
            Ok(Got::Claimed) => {
                self.health.read_worked();
                return TierRead::Missing { claimed: true };
            }
            Ok(Got::Unclaimed) => {
                self.health.read_worked();
                return TierRead::Missing { claimed: false };
            }
            Ok(Got::Found(FromTier::Pack(p, bytes))) => Ok(TierRead::FoundPack(p, bytes)),
            Ok(Got::Found(FromTier::Tgz(fetched))) => {
                let (path, id) = (fetched.path.clone(), *id);
                // gunzip and one pass over the tree: one thread.
                let verified = crate::cpu::run(1, move |_| super::verify_bundle(&path, &id, limits)).await;
                let _ = std::fs::remove_file(&fetched.path);
                verified.map(TierRead::Found)
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(read) => {
                self.health.read_worked();
                bump(&counters.remote_hits);
                counters.timings.observe("remote", started.elapsed());
                read
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

    /// Write what this host built as bundle `id`: its pack and the pack's
    /// digest, then the .tgz and its digest (create-only: a host that wrote
    /// first wins), then drop this host's claim if it holds it. A failure
    /// is one log line, a counter and a write backoff; it is never the
    /// build's failure.
    pub async fn write_layer(&self, id: &BundleId, label: &str, up: Upload<'_>, counters: &Counters) -> Wrote {
        if !self.accepts_writes() {
            if up.claimed {
                self.release(id).await;
            }
            return Wrote::Skipped;
        }
        let written = async {
            let _permit = self.writes.acquire().await;
            let mut pack_put = None;
            if let Some(pack) = up.pack {
                pack_put = Some(self.publish_pack(id, pack).await?);
            }
            match up.tgz {
                Some((tgz, sha256)) => self.publish_id(id, tgz, sha256).await.map(|put| (Some(put), pack_put)),
                None => Ok((None, pack_put)),
            }
        }
        .await;
        if up.claimed {
            self.release(id).await;
        }
        match written {
            Ok((tgz_put, pack_put)) => {
                self.health.write_worked();
                // A bundle is written when its .tgz is (a pack alone is not counted).
                if tgz_put == Some(Put::Created) {
                    bump(&counters.remote_writes);
                    log::info!("bundle {label}: written to the remote tier");
                } else if tgz_put.is_none() && pack_put == Some(Put::Created) {
                    log::info!("bundle {label}: its pack written to the remote tier");
                }
                Wrote::Put(tgz_put.or(pack_put).unwrap_or(Put::Present))
            }
            // One object in the way: said for this bundle, other writes go on.
            Err(e) if e.downcast_ref::<super::Conflict>().is_some() => {
                bump(&counters.remote_errors);
                log::warn!("bundle {label}: not written to the remote tier {}: {e:#}", self.url());
                Wrote::Failed(format!("{e:#}"))
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
