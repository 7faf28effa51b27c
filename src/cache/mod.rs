//! The on-disk LRU cache of built bundles and downloaded packages. It only
//! stores: what to put in it is handed in by the caller (a producer: the
//! build, `build::cached`), so the cache knows nothing of fetching, the
//! remote tier or layouts.
//!
//! ```text
//! <cache-dir>/
//!   index.redb            what is known per bundle (.tgz size and sha256, last access)
//!   packages/             content-addressed package store (fetch::PackageStore)
//!   bundles/<id>.pack     a bundle's tree as one file (pack.rs)
//!   bundles/<id>.tgz      its .tgz, written from the pack on first use
//!   tmp/                  files being written; emptied at start
//!   logs/<id>.log         the log tail of a failed source build (the newest 256)
//!   pinned                bundles `kpackfs warm --pin` keeps from eviction ([`kept`])
//! ```
//! - One byte budget covers packs, .tgz files, packages and downloads in
//!   progress ([`accounting`]). Over it, or when the disk falls under its
//!   free-space floor, the least recently used are evicted, never one in
//!   use ([`loaded`], running flights, pinned packages, active downloads)
//!   or pinned by `warm --pin`.
//! - Installs are atomic (write in `tmp/`, sync, rename), so a crash never
//!   leaves a partial file; `tmp/` is emptied at start. A stored file is
//!   checked the first time it is used after start: a damaged one is
//!   removed and produced again, never served.
//! - One producer per bundle file however many ask ([`inflight`]); callers
//!   queue a continuation instead of blocking a thread. Pack and .tgz are
//!   one generic [`Artefact`].

pub mod accounting;
mod artefact;
mod evict;
pub mod index;
pub mod inflight;
pub mod kept;
mod loaded;
mod obtain;
mod tgz;

pub use accounting::{Key, Usage};
pub use artefact::{Artefact, Kind};
pub use index::BundleRecord;
pub use inflight::{Backoff, Cause, Outcome, Phase, Waiter, Watch};
pub use obtain::{Pinned, Produce, Produced, Production, STOP_GRACE};
pub use tgz::Tgz;

use crate::fetch::{PackageStore, SpaceGuard};
use crate::ids::BundleId;
use crate::observe::Counters;
use accounting::Accounting;
use anyhow::Result;
use inflight::{Flights, Pins};
use loaded::Loaded;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub budget: u64,
    pub backoff: Backoff,
    /// A bundle used this recently counts as in use and is not evicted.
    pub grace: Duration,
    /// Keep at least this much of the cache's filesystem free: the cache
    /// shrinks below its budget when the disk fills.
    pub min_free: crate::util::FreeFloor,
}

/// Where a bundle stands, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleState {
    Absent,
    Building(Phase),
    Ready { bytes: u64 },
    Failed { cause: Cause, retry_in: Duration },
}

struct State {
    acct: Accounting,
    loaded: Loaded,
    records: HashMap<BundleId, BundleRecord>,
    dirty: HashSet<BundleId>,
    flights: Flights<(BundleId, Kind), artefact::Held>,
    pins: Pins,
    /// Partial files being written right now.
    downloads: HashSet<String>,
    /// Bundles pinned by `kpackfs warm --pin`.
    kept: kept::Kept,
}

pub struct Cache {
    settings: Settings,
    bundles_dir: PathBuf,
    tmp_dir: PathBuf,
    logs_dir: PathBuf,
    index: index::Index,
    store: PackageStore,
    /// Where producers run (the caller of `obtain` never waits).
    runtime: tokio::runtime::Handle,
    state: Mutex<State>,
    counters: Arc<Counters>,
    guard: Arc<dyn SpaceGuard>,
}

impl Cache {
    /// Open (creating) the cache in `settings.dir`: empties `tmp/`, loads the
    /// index, and accounts for what is on disk.
    pub fn open(settings: Settings, counters: Arc<Counters>, runtime: tokio::runtime::Handle) -> Result<Arc<Cache>> {
        let dir = &settings.dir;
        crate::files::create_owned_dir_all(dir)?;
        let bundles_dir = dir.join("bundles");
        let tmp_dir = dir.join("tmp");
        let logs_dir = dir.join("logs");
        for d in [&bundles_dir, &tmp_dir, &logs_dir] {
            crate::files::create_private_dir_all(d)?;
        }
        // Leftovers of writes interrupted by a crash: never served, removed.
        if let Ok(entries) = std::fs::read_dir(&tmp_dir) {
            for e in entries.flatten() {
                let p = e.path();
                let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            }
        }
        let store = PackageStore::open(&dir.join("packages"))?;
        let index = index::Index::open(&dir.join("index.redb"))?;
        let records = index.load_all()?;
        let state = State {
            acct: Accounting::default(),
            loaded: Loaded::default(),
            records,
            dirty: HashSet::new(),
            flights: Flights::new(settings.backoff),
            pins: Pins::default(),
            downloads: HashSet::new(),
            kept: kept::Kept::default(),
        };
        let cache = Arc::new_cyclic(|weak: &Weak<Cache>| Cache {
            bundles_dir,
            tmp_dir,
            logs_dir,
            index,
            store,
            runtime,
            state: Mutex::new(state),
            counters,
            guard: Arc::new(evict::Guard(weak.clone())),
            settings,
        });
        cache.scan()?;
        Ok(cache)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The package store the cache accounts for (a fetcher downloads into it).
    pub fn store(&self) -> &PackageStore {
        &self.store
    }

    /// Counts downloads in progress against the budget (for the fetcher).
    pub fn space_guard(&self) -> Arc<dyn SpaceGuard> {
        self.guard.clone()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Where a bundle's file of `kind` is stored.
    pub fn path_of(&self, id: &BundleId, kind: Kind) -> PathBuf {
        self.bundles_dir.join(format!("{id}.{}", kind.ext()))
    }

    pub fn pack_path(&self, id: &BundleId) -> PathBuf {
        self.path_of(id, Kind::Pack)
    }

    pub fn tgz_path(&self, id: &BundleId) -> PathBuf {
        self.path_of(id, Kind::Tgz)
    }

    fn touch(&self, st: &mut State, id: BundleId) {
        st.acct.touch(&Key::Bundle(id));
        st.loaded.used(id, Instant::now());
        let now = crate::util::now_secs();
        let record = st.records.entry(id).or_default();
        if record.last_access != now {
            record.last_access = now;
            st.dirty.insert(id);
        }
    }

    /// The .tgz size, if the bundle's .tgz was ever built (kept after eviction).
    pub fn tgz_size(&self, id: &BundleId) -> Option<u64> {
        self.lock().records.get(id).and_then(|r| r.tgz_size)
    }

    /// Persist access times and records (periodically and at shutdown).
    pub fn flush(&self) {
        let records: Vec<(BundleId, BundleRecord)> = {
            let mut st = self.lock();
            let dirty: Vec<BundleId> = st.dirty.drain().collect();
            dirty.into_iter().filter_map(|id| st.records.get(&id).cloned().map(|r| (id, r))).collect()
        };
        if records.is_empty() {
            return;
        }
        if let Err(e) = self.index.put_many(records.iter().map(|(id, r)| (id, r))) {
            log::warn!("cache: saving the index: {e:#}");
        }
    }

    pub fn state_of(&self, id: &BundleId) -> BundleState {
        let st = self.lock();
        let (pack, tgz) = ((*id, Kind::Pack), (*id, Kind::Tgz));
        if let Some(phase) = st.flights.phase(&pack).or_else(|| st.flights.phase(&tgz)) {
            return BundleState::Building(phase);
        }
        if let Some(bytes) = st.acct.size_of(&Key::Bundle(*id)) {
            return BundleState::Ready { bytes };
        }
        let now = Instant::now();
        if let Some((cause, retry_in)) = st.flights.failure(&pack, now).or_else(|| st.flights.failure(&tgz, now)) {
            return BundleState::Failed { cause, retry_in };
        }
        BundleState::Absent
    }

    /// How long since a reader last used the bundle, if one did since start.
    pub fn idle_for(&self, id: &BundleId) -> Option<Duration> {
        self.lock().loaded.idle(id, Instant::now())
    }

    /// Bundles with a state other than absent.
    pub fn known_ids(&self) -> Vec<BundleId> {
        let st = self.lock();
        let mut ids: HashSet<BundleId> = st.acct.bundles().map(|(id, _)| *id).collect();
        ids.extend(st.flights.keys().map(|(id, _)| *id));
        let mut ids: Vec<BundleId> = ids.into_iter().collect();
        ids.sort();
        ids
    }

    /// Askers queued on a running pack flight (the fast tests observe the queue).
    pub fn waiting(&self, id: &BundleId) -> usize {
        self.lock().flights.waiting(&(*id, Kind::Pack))
    }

    /// The bundles pinned by `warm --pin` (built or not).
    pub fn pinned(&self) -> std::collections::BTreeSet<BundleId> {
        let mut st = self.lock();
        st.kept.refresh(&self.settings.dir);
        st.kept.ids().clone()
    }

    pub fn usage(&self) -> Usage {
        let mut st = self.lock();
        st.kept.refresh(&self.settings.dir);
        let mut usage = st.acct.usage(self.settings.budget);
        usage.pinned_bundles = st.kept.ids().len();
        usage.pinned_bytes = st.kept.ids().iter().filter_map(|id| st.acct.size_of(&Key::Bundle(*id))).sum();
        usage
    }
}
