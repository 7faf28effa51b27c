//! Packs and .tgz files open in memory, with when each bundle was last used
//! by a reader: "in use" for eviction means held by someone, or used within
//! the grace period (the kernel serves most reads from its page cache
//! without telling us, so recent use is the sign of a reader).

use super::tgz::Tgz;
use crate::ids::BundleId;
use crate::pack::Pack;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct LoadedBundle {
    pack: Option<Arc<Pack>>,
    tgz: Option<Arc<Tgz>>,
    last_used: Option<Instant>,
}

#[derive(Default)]
pub struct Loaded(HashMap<BundleId, LoadedBundle>);

impl Loaded {
    pub fn pack(&self, id: &BundleId) -> Option<Arc<Pack>> {
        self.0.get(id).and_then(|b| b.pack.clone())
    }

    pub fn tgz(&self, id: &BundleId) -> Option<Arc<Tgz>> {
        self.0.get(id).and_then(|b| b.tgz.clone())
    }

    pub fn set_pack(&mut self, id: BundleId, pack: Arc<Pack>) {
        self.0.entry(id).or_default().pack = Some(pack);
    }

    pub fn set_tgz(&mut self, id: BundleId, tgz: Arc<Tgz>) {
        self.0.entry(id).or_default().tgz = Some(tgz);
    }

    pub fn used(&mut self, id: BundleId, now: Instant) {
        self.0.entry(id).or_default().last_used = Some(now);
    }

    /// Drop the open files (eviction); the use time stays.
    pub fn unload(&mut self, id: &BundleId) {
        if let Some(b) = self.0.get_mut(id) {
            b.pack = None;
            b.tgz = None;
        }
    }

    /// How long ago a reader last used the bundle (status: "in use" is
    /// this under the grace period).
    pub fn idle(&self, id: &BundleId, now: Instant) -> Option<Duration> {
        self.0.get(id)?.last_used.map(|t| now.saturating_duration_since(t))
    }

    /// Held by a reader or a running job, or used within `grace`.
    pub fn in_use(&self, id: &BundleId, grace: Duration, now: Instant) -> bool {
        let Some(b) = self.0.get(id) else { return false };
        b.last_used.is_some_and(|t| now.saturating_duration_since(t) < grace)
            || b.pack.as_ref().is_some_and(|p| Arc::strong_count(p) > 1)
            || b.tgz.as_ref().is_some_and(|t| Arc::strong_count(t) > 1)
    }
}
