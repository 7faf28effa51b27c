//! The files the cache holds for a bundle, as one generic artefact: a pack
//! (served by pread) and its .tgz (served from a mapping). Everything the
//! cache does with either (the hit path, single flight, the check of a
//! stored file on first use, install, eviction) is written once over this
//! trait; what differs is here.

use super::index::BundleRecord;
use super::tgz::Tgz;
use crate::ids::BundleId;
use crate::pack::Pack;
use anyhow::{anyhow, Context, Result};
use std::path::Path;
use std::sync::Arc;

/// Which file of a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Pack,
    Tgz,
}

impl Kind {
    /// The file name extension under `bundles/`.
    pub fn ext(self) -> &'static str {
        match self {
            Kind::Pack => "pack",
            Kind::Tgz => "tgz",
        }
    }

    /// What logs append to the bundle's label (`debian/x` or `debian/x.tgz`).
    pub fn suffix(self) -> &'static str {
        match self {
            Kind::Pack => "",
            Kind::Tgz => ".tgz",
        }
    }
}

/// An artefact held in memory, of either kind (what flights and the
/// loaded table keep).
#[derive(Clone)]
pub enum Held {
    Pack(Arc<Pack>),
    Tgz(Arc<Tgz>),
}

/// A file of a bundle the cache stores.
pub trait Artefact: Send + Sync + Sized + 'static {
    const KIND: Kind;

    /// Open the stored file at `path` and check it against what it must be
    /// (a pack: its CRCs and its bundle id; a .tgz: the size and sha256
    /// recorded when it was built).
    fn open_checked(path: &Path, id: &BundleId, record: Option<&BundleRecord>) -> Result<Self>;

    /// Whether a stored file can be checked at all (a .tgz needs its record).
    fn checkable(record: Option<&BundleRecord>, file_len: Option<u64>) -> bool;

    /// Note what installing it tells the index (a .tgz: its size and digest).
    fn record(&self, _record: &mut BundleRecord) -> bool {
        false
    }

    fn wrap(value: Arc<Self>) -> Held;
    fn unwrap(held: &Held) -> Option<Arc<Self>>;
}

impl Artefact for Pack {
    const KIND: Kind = Kind::Pack;

    fn open_checked(path: &Path, id: &BundleId, _: Option<&BundleRecord>) -> Result<Pack> {
        Pack::open_verified_as(path, id)
    }

    fn checkable(_: Option<&BundleRecord>, file_len: Option<u64>) -> bool {
        file_len.is_some()
    }

    fn wrap(value: Arc<Pack>) -> Held {
        Held::Pack(value)
    }

    fn unwrap(held: &Held) -> Option<Arc<Pack>> {
        match held {
            Held::Pack(p) => Some(p.clone()),
            Held::Tgz(_) => None,
        }
    }
}

impl Artefact for Tgz {
    const KIND: Kind = Kind::Tgz;

    fn open_checked(path: &Path, _: &BundleId, record: Option<&BundleRecord>) -> Result<Tgz> {
        let (size, sha) = record
            .and_then(|r| Some((r.tgz_size?, r.tgz_sha256.clone()?)))
            .ok_or_else(|| anyhow!("no recorded digest"))?;
        let (actual, len) = crate::fetch::hash_file(path)?;
        if actual != sha || len != size {
            return Err(anyhow!("sha256 {actual} ({len} bytes), recorded {sha} ({size} bytes)"));
        }
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Tgz::new(file, size, sha))
    }

    fn checkable(record: Option<&BundleRecord>, file_len: Option<u64>) -> bool {
        let recorded = record.and_then(|r| r.tgz_size.filter(|_| r.tgz_sha256.is_some()));
        recorded.is_some() && recorded == file_len
    }

    fn record(&self, record: &mut BundleRecord) -> bool {
        record.tgz_size = Some(self.size);
        record.tgz_sha256 = Some(self.sha256.clone());
        true
    }

    fn wrap(value: Arc<Tgz>) -> Held {
        Held::Tgz(value)
    }

    fn unwrap(held: &Held) -> Option<Arc<Tgz>> {
        match held {
            Held::Tgz(t) => Some(t.clone()),
            Held::Pack(_) => None,
        }
    }
}
