//! The on-disk LRU cache of built bundles and downloaded packages.
//!
//! ```text
//! <cache-dir>/
//!   index.redb            what is known per bundle (.tgz size and sha256, last access)
//!   packages/             content-addressed package store (fetch::PackageStore)
//!   bundles/<id>.pack     a bundle's tree as one file (pack.rs)
//!   bundles/<id>.tgz      its .tgz, written from the pack on first use
//!   tmp/                  builds in progress; emptied at start
//! ```
//! - One byte budget covers packs, .tgz files, packages and downloads in
//!   progress ([`accounting`]). Over it, or when the disk falls under its
//!   free-space floor, the least recently used are evicted, never one in
//!   use ([`loaded`], running builds, pinned packages, active downloads).
//! - Installs are atomic (write in `tmp/`, sync, rename), so a crash never
//!   leaves a partial file; `tmp/` is emptied at start. A cached file's
//!   digest is checked the first time it is used after start: a damaged one
//!   is removed and rebuilt, never served.
//! - One build per bundle however many ask ([`inflight`]); callers queue a
//!   continuation instead of blocking a thread.

pub mod accounting;
pub mod index;
pub mod inflight;
mod loaded;
mod pipeline;
mod tgz;

pub use accounting::{Key, Usage};
pub use index::BundleRecord;
pub use inflight::{Backoff, Cause, Outcome, Phase, Waiter};
pub use tgz::Tgz;

use crate::fetch::{Fetcher, PackageStore, SpaceGuard};
use crate::ids::{BundleId, Sha256};
use crate::manifest::BundleSpec;
use crate::pack::Pack;
use accounting::Accounting;
use anyhow::{Context, Result};
use inflight::{Flights, Joined, Pins};
use loaded::Loaded;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub budget: u64,
    pub limits: crate::package::Limits,
    pub backoff: Backoff,
    /// A bundle used this recently counts as in use and is not evicted.
    pub grace: Duration,
    /// Keep at least this much of the cache's filesystem free: the cache
    /// shrinks below its budget when the disk fills.
    pub min_free: crate::util::FreeFloor,
    /// The shared bundle tier, read before building and written after.
    pub remote: Option<Arc<crate::remote::Remote>>,
}

/// Counters for status and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Served without a build (open, or verified from disk).
    pub hits: AtomicU64,
    /// Needed a build.
    pub misses: AtomicU64,
    pub builds: AtomicU64,
    pub failures: AtomicU64,
    pub evictions: AtomicU64,
    /// Cached files found damaged and removed.
    pub damaged: AtomicU64,
    /// Bundles installed from the remote tier instead of built.
    pub remote_hits: AtomicU64,
    pub remote_writes: AtomicU64,
    pub remote_errors: AtomicU64,
    /// Bytes downloaded for packages.
    pub downloaded_bytes: AtomicU64,
    /// Build phase durations (metrics only).
    pub timings: crate::metrics::Timings,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Where a bundle stands, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleState {
    Absent,
    Building(Phase),
    Ready { bytes: u64 },
    Failed { cause: String, retry_in: Duration },
}

/// A bundle's packages, asked for only when a build must start (reading
/// them from the manifest index is wasted work for a cached bundle).
pub type SpecFn = Box<dyn FnOnce() -> Option<Arc<BundleSpec>> + Send>;

struct State {
    acct: Accounting,
    loaded: Loaded,
    records: HashMap<BundleId, BundleRecord>,
    dirty: HashSet<BundleId>,
    packs: Flights<Pack>,
    tgzs: Flights<Tgz>,
    pins: Pins,
    /// Partial files being written right now.
    downloads: HashSet<String>,
}

pub struct Cache {
    settings: Settings,
    bundles_dir: PathBuf,
    tmp_dir: PathBuf,
    index: index::Index,
    fetcher: Fetcher,
    runtime: tokio::runtime::Handle,
    state: Mutex<State>,
    pub stats: Stats,
    /// Write-backs to the remote tier at once.
    write_backs: tokio::sync::Semaphore,
}

/// Lets the fetcher count downloads in progress against the budget
/// without the cache and fetcher owning each other.
struct Guard(Weak<Cache>);

impl SpaceGuard for Guard {
    fn grow(&self, name: &str, bytes: u64) -> bool {
        self.0.upgrade().is_none_or(|c| c.grow_download(name, bytes))
    }
    fn idle(&self, name: &str) {
        if let Some(c) = self.0.upgrade() {
            c.lock().downloads.remove(name);
        }
    }
    fn gone(&self, name: &str) {
        if let Some(c) = self.0.upgrade() {
            let mut st = c.lock();
            st.downloads.remove(name);
            st.acct.remove(&Key::Partial(name.to_string()));
        }
    }
}

impl Cache {
    /// Open (creating) the cache in `settings.dir`: empties `tmp/`, loads the
    /// index, and accounts for what is on disk.
    pub fn open(settings: Settings, fetcher: Fetcher, runtime: tokio::runtime::Handle) -> Result<Arc<Cache>> {
        let dir = &settings.dir;
        crate::files::create_owned_dir_all(dir)?;
        let bundles_dir = dir.join("bundles");
        let tmp_dir = dir.join("tmp");
        for d in [&bundles_dir, &tmp_dir] {
            crate::files::create_private_dir_all(d)?;
        }
        // Leftovers of builds interrupted by a crash: never served, removed.
        if let Ok(entries) = std::fs::read_dir(&tmp_dir) {
            for e in entries.flatten() {
                let p = e.path();
                let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            }
        }
        let index = index::Index::open(&dir.join("index.redb"))?;
        let records = index.load_all()?;
        let state = State {
            acct: Accounting::default(),
            loaded: Loaded::default(),
            records,
            dirty: HashSet::new(),
            packs: Flights::new(settings.backoff),
            tgzs: Flights::new(settings.backoff),
            pins: Pins::default(),
            downloads: HashSet::new(),
        };
        let cache = Arc::new_cyclic(|weak: &Weak<Cache>| Cache {
            bundles_dir,
            tmp_dir,
            index,
            fetcher: fetcher.with_space_guard(Arc::new(Guard(weak.clone()))),
            runtime,
            state: Mutex::new(state),
            stats: Stats::default(),
            write_backs: tokio::sync::Semaphore::new(2),
            settings,
        });
        cache.scan()?;
        Ok(cache)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn store(&self) -> &PackageStore {
        self.fetcher.store()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn pack_path(&self, id: &BundleId) -> PathBuf {
        self.bundles_dir.join(format!("{id}.pack"))
    }

    pub fn tgz_path(&self, id: &BundleId) -> PathBuf {
        self.bundles_dir.join(format!("{id}.tgz"))
    }

    /// Account for what is on disk, oldest first by last access.
    fn scan(&self) -> Result<()> {
        let mut found: Vec<(Key, u64, u64)> = Vec::new(); // key, bytes, last access
        let mut st = self.lock();
        let mut tgz_sizes: HashMap<BundleId, u64> = HashMap::new();
        let mut pack_sizes: HashMap<BundleId, u64> = HashMap::new();
        let entries =
            std::fs::read_dir(&self.bundles_dir).with_context(|| format!("reading {}", self.bundles_dir.display()))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(meta) = e.metadata() else { continue };
            let parsed = name.rsplit_once('.').and_then(|(id, ext)| Some((BundleId::parse(id)?, ext)));
            match parsed {
                Some((id, "pack")) if meta.is_file() => {
                    pack_sizes.insert(id, meta.len());
                }
                Some((id, "tgz")) if meta.is_file() => {
                    tgz_sizes.insert(id, meta.len());
                }
                _ => log::warn!("cache: ignoring unexpected file bundles/{name}"),
            }
        }
        for (id, size) in tgz_sizes {
            let recorded = st.records.get(&id).and_then(|r| r.tgz_size.filter(|_| r.tgz_sha256.is_some()));
            if recorded == Some(size) && pack_sizes.contains_key(&id) {
                *pack_sizes.get_mut(&id).expect("checked") += size;
                continue;
            }
            // Without its pack or a recorded digest it cannot be checked: rebuilt on demand.
            if let Some(expected) = recorded.filter(|r| *r != size) {
                log::warn!(
                    "cache: bundle {id}: the cached .tgz is {size} bytes, {expected} recorded (damaged or cut); removed, it will be rebuilt"
                );
                bump(&self.stats.damaged);
            }
            let _ = std::fs::remove_file(self.tgz_path(&id));
        }
        for (id, bytes) in pack_sizes {
            let access = st.records.get(&id).map_or(0, |r| r.last_access);
            found.push((Key::Bundle(id), bytes, access));
        }
        let secs = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        for (sha, bytes, mtime) in self.store().list() {
            if let Some(sha) = Sha256::parse(&sha) {
                found.push((Key::Package(sha), bytes, secs(mtime)));
            }
        }
        for (name, bytes, mtime) in self.store().partials() {
            found.push((Key::Partial(name), bytes, secs(mtime)));
        }
        found.sort_by_key(|(_, _, access)| *access);
        for (key, bytes, _) in found {
            st.acct.insert(key, bytes);
        }
        self.evict_over_budget(&mut st);
        Ok(())
    }

    fn in_use(&self, st: &State, key: &Key, now: Instant) -> bool {
        match key {
            Key::Bundle(id) => {
                st.loaded.in_use(id, self.settings.grace, now) || st.packs.is_running(id) || st.tgzs.is_running(id)
            }
            Key::Package(sha) => st.pins.contains(sha),
            Key::Partial(name) => st.downloads.contains(name),
        }
    }

    /// Bytes missing from the filesystem's free-space floor (0: none).
    fn disk_shortfall(&self) -> u64 {
        let Some((total, avail)) = crate::util::disk_space(&self.settings.dir) else { return 0 };
        self.settings.min_free.bytes(total).saturating_sub(avail)
    }

    /// Evict until under budget and above the free-space floor. Runs under
    /// the lock, so a concurrent install of the same bundle cannot be unlinked.
    fn evict_over_budget(&self, st: &mut State) {
        let shortfall = self.disk_shortfall();
        let limit = self.settings.budget.min(st.acct.used().saturating_sub(shortfall));
        if st.acct.used() <= limit {
            return;
        }
        if shortfall > 0 {
            log::info!(
                "cache: the disk is {} short of its free-space floor: evicting",
                crate::util::human_bytes(shortfall)
            );
        }
        let now = Instant::now();
        for key in st.acct.victims(limit, |k| self.in_use(st, k, now)) {
            let removed = match &key {
                Key::Bundle(id) => {
                    st.loaded.unload(id);
                    crate::files::remove_file_if_exists(&self.pack_path(id))
                        .and(crate::files::remove_file_if_exists(&self.tgz_path(id)))
                }
                Key::Package(sha) => self.store().remove(&sha.hex()),
                Key::Partial(name) => self.store().remove_partial(name),
            };
            if let Err(e) = removed {
                log::warn!("cache: evicting {key:?}: {e:#}");
                continue;
            }
            let bytes = st.acct.remove(&key).unwrap_or(0);
            bump(&self.stats.evictions);
            log::info!("cache: evicted {} ({})", describe(&key), crate::util::human_bytes(bytes));
        }
        if st.acct.used() > limit {
            log::warn!(
                "cache: {} used, over its limit of {} (budget {}, free-space floor), but everything left is in use",
                crate::util::human_bytes(st.acct.used()),
                crate::util::human_bytes(limit),
                crate::util::human_bytes(self.settings.budget)
            );
        }
    }

    /// A download grew: account for it, evicting to make room; false if
    /// even that cannot keep the cache within its budget.
    fn grow_download(&self, name: &str, bytes: u64) -> bool {
        let mut st = self.lock();
        st.downloads.insert(name.to_string());
        let key = Key::Partial(name.to_string());
        let before = st.acct.size_of(&key).unwrap_or(0);
        self.stats.downloaded_bytes.fetch_add(bytes.saturating_sub(before), Ordering::Relaxed);
        st.acct.resize(&key, bytes);
        if st.acct.used() <= self.settings.budget {
            return true;
        }
        self.evict_over_budget(&mut st);
        st.acct.used() <= self.settings.budget
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

    /// Call `waiter` with the bundle's pack: at once if open, else after one
    /// shared job (verify the cached pack, or build it). `label` names the
    /// bundle in logs (`type/name`).
    pub fn with_pack(self: &Arc<Self>, id: BundleId, spec: SpecFn, label: &str, waiter: Waiter<Pack>) {
        let joined = {
            let mut st = self.lock();
            if let Some(pack) = st.loaded.pack(&id) {
                self.touch(&mut st, id);
                drop(st);
                bump(&self.stats.hits);
                return waiter(Ok(pack));
            }
            st.packs.join(id, waiter, Instant::now())
        };
        match joined {
            Joined::Queued => {}
            Joined::Failed(waiter, cause) => waiter(Err(cause)),
            Joined::Start => {
                let Some(spec) = spec() else {
                    return self.finish_pack(
                        id,
                        label,
                        Err(anyhow::anyhow!("the bundle is no longer in the manifest")),
                    );
                };
                let (cache, label) = (self.clone(), label.to_string());
                self.runtime.spawn(async move {
                    let result = cache.obtain_pack(id, &spec, &label).await;
                    cache.finish_pack(id, &label, result);
                });
            }
        }
    }

    fn finish_pack(&self, id: BundleId, label: &str, result: Result<pipeline::Obtained<Pack>>) {
        let (waiters, outcome) = {
            let mut st = self.lock();
            let outcome: Outcome<Pack> = match result {
                Ok(got) => {
                    if let Some(bytes) = got.new_bytes {
                        st.acct.insert(Key::Bundle(id), bytes);
                    }
                    st.loaded.set_pack(id, got.value.clone());
                    self.touch(&mut st, id);
                    Ok(got.value)
                }
                Err(e) => {
                    bump(&self.stats.failures);
                    let cause: Cause = Arc::from(format!("{e:#}"));
                    log::error!("bundle {label}: {}", crate::util::printable(&cause));
                    Err(cause)
                }
            };
            let waiters = st.packs.finish(id, &outcome.as_ref().map(|_| ()).map_err(Clone::clone), Instant::now());
            self.evict_over_budget(&mut st);
            (waiters, outcome)
        };
        for w in waiters {
            w(outcome.clone());
        }
    }

    /// The .tgz size, if the bundle's .tgz was ever built (kept after eviction).
    pub fn tgz_size(&self, id: &BundleId) -> Option<u64> {
        self.lock().records.get(id).and_then(|r| r.tgz_size)
    }

    /// Call `waiter` with the bundle's .tgz, verifying the cached one or
    /// building it from the pack (one job however many ask).
    pub fn with_tgz(self: &Arc<Self>, id: BundleId, spec: SpecFn, label: &str, waiter: Waiter<Tgz>) {
        let joined = {
            let mut st = self.lock();
            if let Some(tgz) = st.loaded.tgz(&id) {
                self.touch(&mut st, id);
                drop(st);
                bump(&self.stats.hits);
                return waiter(Ok(tgz));
            }
            st.tgzs.join(id, waiter, Instant::now())
        };
        match joined {
            Joined::Queued => {}
            Joined::Failed(waiter, cause) => waiter(Err(cause)),
            Joined::Start => {
                let Some(spec) = spec() else {
                    return self.finish_tgz(id, label, Err(anyhow::anyhow!("the bundle is no longer in the manifest")));
                };
                let (cache, label) = (self.clone(), label.to_string());
                self.runtime.spawn(async move {
                    let result = cache.obtain_tgz(id, &spec, &label).await;
                    cache.finish_tgz(id, &label, result);
                });
            }
        }
    }

    fn finish_tgz(&self, id: BundleId, label: &str, result: Result<pipeline::Obtained<Tgz>>) {
        let (waiters, outcome) = {
            let mut st = self.lock();
            let outcome: Outcome<Tgz> = match result {
                Ok(got) => {
                    let tgz = got.value;
                    let record = st.records.entry(id).or_default();
                    record.tgz_size = Some(tgz.size);
                    record.tgz_sha256 = Some(tgz.sha256.clone());
                    st.dirty.insert(id);
                    if let Some(bytes) = got.new_bytes {
                        let key = Key::Bundle(id);
                        let total = st.acct.size_of(&key).unwrap_or(0) + bytes;
                        st.acct.resize(&key, total);
                    }
                    st.loaded.set_tgz(id, tgz.clone());
                    self.touch(&mut st, id);
                    Ok(tgz)
                }
                Err(e) => {
                    let cause: Cause = Arc::from(format!("{e:#}"));
                    log::error!("bundle {label}.tgz: {}", crate::util::printable(&cause));
                    Err(cause)
                }
            };
            let waiters = st.tgzs.finish(id, &outcome.as_ref().map(|_| ()).map_err(Clone::clone), Instant::now());
            self.evict_over_budget(&mut st);
            (waiters, outcome)
        };
        // The .tgz size must survive a crash: persist now.
        if outcome.is_ok() {
            self.flush();
        }
        for w in waiters {
            w(outcome.clone());
        }
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
        if let Some(phase) = st.packs.phase(id).or_else(|| st.tgzs.phase(id)) {
            return BundleState::Building(phase);
        }
        if let Some(bytes) = st.acct.size_of(&Key::Bundle(*id)) {
            return BundleState::Ready { bytes };
        }
        let now = Instant::now();
        if let Some((cause, retry_in)) = st.packs.failure(id, now).or_else(|| st.tgzs.failure(id, now)) {
            return BundleState::Failed { cause: cause.to_string(), retry_in };
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
        ids.extend(st.packs.ids().copied());
        ids.extend(st.tgzs.ids().copied());
        let mut ids: Vec<BundleId> = ids.into_iter().collect();
        ids.sort();
        ids
    }

    /// Askers queued on a running pack job (the fast tests observe the queue).
    pub fn waiting(&self, id: &BundleId) -> usize {
        self.lock().packs.waiting(id)
    }

    pub fn usage(&self) -> Usage {
        self.lock().acct.usage(self.settings.budget)
    }

    fn set_phase(&self, id: BundleId, phase: Phase) {
        let mut st = self.lock();
        st.packs.set_phase(id, phase);
        st.tgzs.set_phase(id, phase);
    }

    fn pin_packages(&self, shas: &[Sha256], pin: bool) {
        let mut st = self.lock();
        if pin {
            st.pins.pin(shas)
        } else {
            st.pins.unpin(shas)
        }
    }

    /// Account for downloaded packages and pin them for the running build
    /// (in one step, so eviction never sees them unpinned). Returns the
    /// pins taken.
    fn register_packages(&self, packages: &[(Sha256, PathBuf)]) -> Vec<Sha256> {
        let sizes: Vec<(Sha256, u64)> =
            packages.iter().map(|(sha, path)| (*sha, std::fs::metadata(path).map_or(0, |m| m.len()))).collect();
        let mut st = self.lock();
        let shas: Vec<Sha256> = sizes.iter().map(|(sha, _)| *sha).collect();
        st.pins.pin(&shas);
        for (sha, bytes) in sizes {
            st.acct.insert(Key::Package(sha), bytes);
        }
        shas
    }

    /// Forget a damaged bundle file: off the books and off the disk.
    fn discard_bundle(&self, id: BundleId, what: &str, cause: &anyhow::Error) {
        log::warn!("cache: bundle {id}: the cached {what} is damaged ({cause:#}); it will be rebuilt");
        bump(&self.stats.damaged);
        let mut st = self.lock();
        st.acct.remove(&Key::Bundle(id));
        st.loaded.unload(&id);
        let _ = crate::files::remove_file_if_exists(&self.tgz_path(&id));
        if what == "pack" {
            let _ = crate::files::remove_file_if_exists(&self.pack_path(&id));
        } else if let Some(bytes) = std::fs::metadata(self.pack_path(&id)).ok().map(|m| m.len()) {
            st.acct.insert(Key::Bundle(id), bytes);
        }
    }
}

fn describe(key: &Key) -> String {
    match key {
        Key::Bundle(id) => format!("bundle {id}"),
        Key::Package(sha) => format!("package {sha}"),
        Key::Partial(name) => format!("partial download {name}"),
    }
}
