//! Packs and .tgz files open in memory, with when each bundle was last used
//! by a reader: "in use" for eviction means held by someone, or used within
//! the grace period (the kernel serves most reads from its page cache
//! without telling us, so recent use is the sign of a reader).

use super::artefact::{Held, Kind};
use crate::ids::BundleId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct LoadedBundle {
    pack: Option<Held>,
    tgz: Option<Held>,
    last_used: Option<Instant>,
}

impl LoadedBundle {
    fn slot(&mut self, kind: Kind) -> &mut Option<Held> {
        match kind {
            Kind::Pack => &mut self.pack,
            Kind::Tgz => &mut self.tgz,
        }
    }
}

#[derive(Default)]
pub struct Loaded(HashMap<BundleId, LoadedBundle>);

fn shared(held: &Held) -> bool {
    match held {
        Held::Pack(p) => Arc::strong_count(p) > 1,
        Held::Tgz(t) => Arc::strong_count(t) > 1,
    }
}

impl Loaded {
    pub fn get(&self, id: &BundleId, kind: Kind) -> Option<&Held> {
        let b = self.0.get(id)?;
        match kind {
            Kind::Pack => b.pack.as_ref(),
            Kind::Tgz => b.tgz.as_ref(),
        }
    }

    pub fn set(&mut self, id: BundleId, kind: Kind, held: Held) {
        *self.0.entry(id).or_default().slot(kind) = Some(held);
    }

    pub fn used(&mut self, id: BundleId, now: Instant) {
        self.0.entry(id).or_default().last_used = Some(now);
    }

    /// Drop the open files (eviction, damage); the use time stays.
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
            || b.pack.as_ref().is_some_and(shared)
            || b.tgz.as_ref().is_some_and(shared)
    }
}
