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
//! - One byte budget covers packs, .tgz files and packages. Over it, the
//!   least recently used are evicted, never one in use (a pack or .tgz
//!   someone holds, a bundle being built, a package a build needs).
//! - Installs are atomic (write in `tmp/`, fsync, rename), so a crash never
//!   leaves a partial tree; `tmp/` is emptied at start.
//! - One build per bundle however many ask ([`flight`]); callers queue a
//!   continuation instead of blocking a thread.

pub mod build;
pub mod flight;
mod index;

pub use flight::{Backoff, Cause, Outcome, Waiter};
pub use index::BundleRecord;

use crate::fetch::{Fetcher, PackageStore};
use crate::manifest::Entry;
use crate::pack::Pack;
use anyhow::{Context, Result};
use flight::{Flights, Joined};
use lru::LruCache;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A built .tgz, open for reading. It is mapped into memory: a read reply
/// then copies straight from the page cache into the kernel's FUSE pages.
#[derive(Debug)]
pub struct Tgz {
    pub file: File,
    pub size: u64,
    pub sha256: String,
    map: Option<Mapping>,
}

/// A read-only shared mapping of a whole file. Cached files are never
/// modified after their rename into place (eviction unlinks them, which
/// leaves the mapping valid), so the mapped bytes cannot change under us.
#[derive(Debug)]
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and immutable for its whole life.
unsafe impl Send for Mapping {}
// SAFETY: as above; concurrent reads of immutable memory are fine.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(file: &File, len: u64) -> Option<Mapping> {
        use std::os::fd::AsRawFd;
        if len == 0 {
            return None;
        }
        let len = usize::try_from(len).ok()?;
        // SAFETY: mapping a file we hold open, read-only and shared.
        let ptr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        (ptr != libc::MAP_FAILED).then_some(Mapping { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: ptr/len come from a successful mmap that lives as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what mmap returned.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

impl Tgz {
    fn new(file: File, size: u64, sha256: String) -> Tgz {
        let map = Mapping::new(&file, size);
        Tgz { file, size, sha256, map }
    }

    /// Up to `len` bytes from `offset`: borrowed from the mapping, or read.
    pub fn bytes(&self, offset: u64, len: u32) -> std::io::Result<std::borrow::Cow<'_, [u8]>> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::FileExt;
        if offset == 0 {
            // A reader starting a .tgz takes it whole: let the disk stream it ahead of us.
            // SAFETY: fadvise on a descriptor this Tgz owns.
            unsafe { libc::posix_fadvise(self.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED) };
        }
        let start = offset.min(self.size) as usize;
        let end = (offset.saturating_add(len as u64)).min(self.size) as usize;
        if let Some(map) = &self.map {
            return Ok(std::borrow::Cow::Borrowed(&map.bytes()[start..end]));
        }
        let mut buf = vec![0u8; end - start];
        self.file.read_exact_at(&mut buf, start as u64)?;
        Ok(std::borrow::Cow::Owned(buf))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Bundle(String),
    Package(String),
}

struct State {
    /// Recency of everything on disk (most recent first).
    lru: LruCache<Key, ()>,
    sizes: HashMap<Key, u64>,
    used: u64,
    packs: HashMap<String, Arc<Pack>>,
    tgzs: HashMap<String, Arc<Tgz>>,
    records: HashMap<String, BundleRecord>,
    dirty: HashSet<String>,
    pack_jobs: Flights<Pack>,
    tgz_jobs: Flights<Tgz>,
    /// Packages a running build uses (sha256 → builds).
    pinned_packages: HashMap<String, usize>,
    /// What a running build is doing (for status).
    phases: HashMap<String, &'static str>,
    /// When each bundle was last used by a reader (for the eviction grace).
    last_used: HashMap<String, std::time::Instant>,
}

/// Counters for the status report.
#[derive(Debug, Default)]
pub struct Stats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub builds: AtomicU64,
    pub failures: AtomicU64,
    pub evictions: AtomicU64,
}

/// Where a bundle stands, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleState {
    Absent,
    /// fetching, extracting or compressing.
    Building(&'static str),
    Ready {
        bytes: u64,
        tgz: bool,
    },
    Failed {
        cause: String,
        retry_in_secs: u64,
    },
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub budget: u64,
    pub limits: crate::package::Limits,
    pub backoff: Backoff,
    /// A bundle used this recently counts as in use and is not evicted:
    /// the kernel serves most reads from its page cache without telling
    /// us, so recent use is the sign of a reader.
    pub grace: std::time::Duration,
    /// Keep at least this much of the cache's filesystem free: the cache
    /// shrinks below its budget when the disk fills (with other data, or
    /// because the budget is larger than the disk), so builds keep room.
    pub min_free: crate::util::FreeFloor,
}

pub struct Cache {
    settings: Settings,
    bundles_dir: PathBuf,
    tmp_dir: PathBuf,
    index: index::Index,
    fetcher: Fetcher,
    runtime: tokio::runtime::Handle,
    /// CPU-bound work (extraction, compression) at most one per core.
    cpu: Arc<tokio::sync::Semaphore>,
    state: Mutex<State>,
    pub stats: Stats,
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Cache {
    /// Open (creating) the cache in `settings.dir`: empties `tmp/`, loads the
    /// index, and accounts for what is on disk.
    pub fn open(settings: Settings, fetcher: Fetcher, runtime: tokio::runtime::Handle) -> Result<Arc<Cache>> {
        let dir = &settings.dir;
        let bundles_dir = dir.join("bundles");
        let tmp_dir = dir.join("tmp");
        for d in [&bundles_dir, &tmp_dir] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
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
        let cpu = Arc::new(tokio::sync::Semaphore::new(crate::bundle::default_threads()));
        let state = State {
            lru: LruCache::unbounded(),
            sizes: HashMap::new(),
            used: 0,
            packs: HashMap::new(),
            tgzs: HashMap::new(),
            records,
            dirty: HashSet::new(),
            pack_jobs: Flights::new(settings.backoff),
            tgz_jobs: Flights::new(settings.backoff),
            pinned_packages: HashMap::new(),
            last_used: HashMap::new(),
            phases: HashMap::new(),
        };
        let cache = Arc::new(Cache {
            bundles_dir,
            tmp_dir,
            index,
            fetcher,
            runtime,
            cpu,
            state: Mutex::new(state),
            stats: Stats::default(),
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

    pub fn pack_path(&self, id: &str) -> PathBuf {
        self.bundles_dir.join(format!("{id}.pack"))
    }

    pub fn tgz_path(&self, id: &str) -> PathBuf {
        self.bundles_dir.join(format!("{id}.tgz"))
    }

    /// Account for what is on disk, oldest first by last access.
    fn scan(&self) -> Result<()> {
        let mut found: Vec<(Key, u64, u64)> = Vec::new(); // key, bytes, last access
        let mut st = self.lock();
        let mut tgz_sizes: HashMap<String, u64> = HashMap::new();
        let mut pack_sizes: HashMap<String, u64> = HashMap::new();
        for e in std::fs::read_dir(&self.bundles_dir)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(meta) = e.metadata() else { continue };
            match name.rsplit_once('.') {
                Some((id, "pack")) if is_id(id) => {
                    pack_sizes.insert(id.to_string(), meta.len());
                }
                Some((id, "tgz")) if is_id(id) => {
                    tgz_sizes.insert(id.to_string(), meta.len());
                }
                _ => log::warn!("cache: ignoring unexpected file bundles/{name}"),
            }
        }
        for (id, size) in &tgz_sizes {
            if !pack_sizes.contains_key(id) {
                let _ = std::fs::remove_file(self.tgz_path(id));
                log::debug!("cache: removed a .tgz without its pack: {id}");
                let _ = size;
            }
        }
        for (id, pack) in pack_sizes {
            let tgz = tgz_sizes.get(&id).copied().unwrap_or(0);
            let access = st.records.get(&id).map_or(0, |r| r.last_access);
            found.push((Key::Bundle(id), pack + tgz, access));
        }
        for (sha, bytes, mtime) in self.store().list() {
            let access = mtime.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            found.push((Key::Package(sha), bytes, access));
        }
        found.sort_by_key(|(_, _, access)| *access);
        for (key, bytes, _) in found {
            st.used += bytes;
            st.sizes.insert(key.clone(), bytes);
            st.lru.put(key, ());
        }
        self.evict_over_budget(&mut st);
        Ok(())
    }

    fn touch(st: &mut State, key: &Key) {
        st.lru.promote(key);
        if let Key::Bundle(id) = key {
            let now = crate::util::now_secs();
            match st.records.get_mut(id) {
                Some(r) if r.last_access == now => {}
                Some(r) => r.last_access = now,
                None => {
                    st.records.insert(id.clone(), BundleRecord { last_access: now, ..Default::default() });
                }
            }
            if !st.dirty.contains(id) {
                st.dirty.insert(id.clone());
            }
            match st.last_used.get_mut(id) {
                Some(t) => *t = std::time::Instant::now(),
                None => {
                    st.last_used.insert(id.clone(), std::time::Instant::now());
                }
            }
        }
    }

    fn add(&self, st: &mut State, key: Key, bytes: u64) {
        let old = st.sizes.insert(key.clone(), bytes).unwrap_or(0);
        st.used = st.used - old + bytes;
        st.lru.put(key.clone(), ());
        Self::touch(st, &key);
    }

    fn in_use(&self, st: &State, key: &Key) -> bool {
        match key {
            Key::Bundle(id) => {
                st.last_used.get(id).is_some_and(|t| t.elapsed() < self.settings.grace)
                    || st.packs.get(id).is_some_and(|p| Arc::strong_count(p) > 1)
                    || st.tgzs.get(id).is_some_and(|t| Arc::strong_count(t) > 1)
                    || st.pack_jobs.is_running(id)
                    || st.tgz_jobs.is_running(id)
            }
            Key::Package(sha) => st.pinned_packages.contains_key(sha),
        }
    }

    /// Bytes missing from the filesystem's free-space floor (0: none).
    fn disk_shortfall(&self) -> u64 {
        let Some((total, avail)) = crate::util::disk_space(&self.settings.dir) else { return 0 };
        self.settings.min_free.bytes(total).saturating_sub(avail)
    }

    /// Evict least recently used entries until under budget and above the
    /// free-space floor. Runs under the lock so that a concurrent install of
    /// the same bundle cannot be unlinked.
    fn evict_over_budget(&self, st: &mut State) {
        let shortfall = self.disk_shortfall();
        let limit = self.settings.budget.min(st.used.saturating_sub(shortfall));
        if st.used <= limit {
            return;
        }
        if shortfall > 0 {
            log::info!(
                "cache: the disk is {} short of its free-space floor: evicting",
                crate::util::human_bytes(shortfall)
            );
        }
        let candidates: Vec<Key> = st.lru.iter().rev().map(|(k, _)| k.clone()).collect();
        for key in candidates {
            if st.used <= limit {
                break;
            }
            if self.in_use(st, &key) {
                continue;
            }
            let removed = match &key {
                Key::Bundle(id) => {
                    st.packs.remove(id);
                    st.tgzs.remove(id);
                    let a = remove_file_if_exists(&self.pack_path(id));
                    let b = remove_file_if_exists(&self.tgz_path(id));
                    a.and(b)
                }
                Key::Package(sha) => self.store().remove(sha),
            };
            if let Err(e) = removed {
                log::warn!("cache: evicting {key:?}: {e:#}");
                continue;
            }
            log::debug!("cache: evicted {key:?}");
            self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            let bytes = st.sizes.remove(&key).unwrap_or(0);
            st.used -= bytes;
            st.lru.pop(&key);
        }
        if st.used > limit {
            log::warn!(
                "cache: {} used, over its limit of {} (budget {}, free-space floor), but everything left is in use",
                crate::util::human_bytes(st.used),
                crate::util::human_bytes(limit),
                crate::util::human_bytes(self.settings.budget)
            );
        }
    }

    /// A built bundle if it is in the cache, loading it from disk if needed.
    /// Never builds.
    pub fn ready_pack(&self, id: &str) -> Option<Arc<Pack>> {
        let key = Key::Bundle(id.to_string());
        {
            let mut st = self.lock();
            if let Some(p) = st.packs.get(id).cloned() {
                Self::touch(&mut st, &key);
                return Some(p);
            }
            if !st.sizes.contains_key(&key) {
                return None;
            }
        }
        // On disk but not loaded: open outside the lock (reads the index).
        match Pack::open(&self.pack_path(id)) {
            Ok(pack) => {
                let mut st = self.lock();
                let pack = st.packs.entry(id.to_string()).or_insert_with(|| Arc::new(pack)).clone();
                Self::touch(&mut st, &key);
                Some(pack)
            }
            Err(e) => {
                log::warn!("cache: bundle {id}: unusable pack ({e:#}); it will be rebuilt");
                let mut st = self.lock();
                st.packs.remove(id);
                if let Some(bytes) = st.sizes.remove(&key) {
                    st.used -= bytes;
                }
                st.lru.pop(&key);
                let _ = remove_file_if_exists(&self.pack_path(id));
                let _ = remove_file_if_exists(&self.tgz_path(id));
                None
            }
        }
    }

    /// Call `waiter` with the bundle's pack: at once if cached, else after
    /// one shared build. `label` names the bundle in logs (`type/name`).
    pub fn with_pack(self: &Arc<Self>, id: &str, entry: &Arc<Entry>, label: &str, waiter: Waiter<Pack>) {
        if let Some(pack) = self.ready_pack(id) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            waiter(Ok(pack));
            return;
        }
        let joined = self.lock().pack_jobs.join(id, waiter);
        match joined {
            Joined::Queued => {}
            Joined::Failed(waiter, cause) => waiter(Err(cause)),
            Joined::Start => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                let (cache, id, entry, label) = (self.clone(), id.to_string(), entry.clone(), label.to_string());
                self.runtime.spawn(async move {
                    let result = cache.build_pack(&id, &entry).await;
                    cache.finish_pack(&id, &label, result);
                });
            }
        }
    }

    fn finish_pack(&self, id: &str, label: &str, result: Result<(Arc<Pack>, u64)>) {
        let (waiters, outcome) = {
            let mut st = self.lock();
            let outcome: Outcome<Pack> = match result {
                Ok((pack, bytes)) => {
                    st.packs.insert(id.to_string(), pack.clone());
                    self.add(&mut st, Key::Bundle(id.to_string()), bytes);
                    self.stats.builds.fetch_add(1, Ordering::Relaxed);
                    Ok(pack)
                }
                Err(e) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    let cause: Cause = Arc::from(format!("{e:#}"));
                    log::error!("bundle {label}: {cause}");
                    Err(cause)
                }
            };
            let waiters = st.pack_jobs.finish(id, &outcome.as_ref().map(|_| ()).map_err(Clone::clone));
            self.evict_over_budget(&mut st);
            (waiters, outcome)
        };
        for w in waiters {
            w(outcome.clone());
        }
    }

    /// The .tgz size, if the bundle's .tgz was ever built (kept after eviction).
    pub fn tgz_size(&self, id: &str) -> Option<u64> {
        self.lock().records.get(id).and_then(|r| r.tgz_size)
    }

    fn ready_tgz(&self, id: &str) -> Option<Arc<Tgz>> {
        let key = Key::Bundle(id.to_string());
        let mut st = self.lock();
        if let Some(t) = st.tgzs.get(id).cloned() {
            Self::touch(&mut st, &key);
            return Some(t);
        }
        let record = st.records.get(id).cloned().unwrap_or_default();
        let (Some(size), Some(sha256)) = (record.tgz_size, record.tgz_sha256) else { return None };
        if !st.sizes.contains_key(&key) {
            return None;
        }
        let file = File::open(self.tgz_path(id)).ok()?;
        if file.metadata().ok()?.len() != size {
            return None;
        }
        let tgz = Arc::new(Tgz::new(file, size, sha256));
        st.tgzs.insert(id.to_string(), tgz.clone());
        Self::touch(&mut st, &key);
        Some(tgz)
    }

    /// Call `waiter` with the bundle's .tgz, building the pack and then the
    /// .tgz if needed (one build however many ask).
    pub fn with_tgz(self: &Arc<Self>, id: &str, entry: &Arc<Entry>, label: &str, waiter: Waiter<Tgz>) {
        if let Some(tgz) = self.ready_tgz(id) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            waiter(Ok(tgz));
            return;
        }
        let joined = self.lock().tgz_jobs.join(id, waiter);
        match joined {
            Joined::Queued => {}
            Joined::Failed(waiter, cause) => waiter(Err(cause)),
            Joined::Start => {
                let (cache, owned_id, owned_label) = (self.clone(), id.to_string(), label.to_string());
                self.with_pack(
                    id,
                    entry,
                    label,
                    Box::new(move |pack| match pack {
                        Err(cause) => cache.finish_tgz(&owned_id, &owned_label, Err(anyhow::anyhow!("{cause}"))),
                        Ok(pack) => {
                            let c = cache.clone();
                            cache.runtime.spawn(async move {
                                let result = c.build_tgz(&owned_id, pack).await;
                                c.finish_tgz(&owned_id, &owned_label, result);
                            });
                        }
                    }),
                );
            }
        }
    }

    fn finish_tgz(&self, id: &str, label: &str, result: Result<Arc<Tgz>>) {
        let (waiters, outcome) = {
            let mut st = self.lock();
            let outcome: Outcome<Tgz> = match result {
                Ok(tgz) => {
                    let record = st.records.entry(id.to_string()).or_default();
                    record.tgz_size = Some(tgz.size);
                    record.tgz_sha256 = Some(tgz.sha256.clone());
                    let pack_bytes = st.packs.get(id).map_or(0, |p| p.file_bytes);
                    st.tgzs.insert(id.to_string(), tgz.clone());
                    self.add(&mut st, Key::Bundle(id.to_string()), pack_bytes + tgz.size);
                    Ok(tgz)
                }
                Err(e) => {
                    let cause: Cause = Arc::from(format!("{e:#}"));
                    log::error!("bundle {label}.tgz: {cause}");
                    Err(cause)
                }
            };
            let waiters = st.tgz_jobs.finish(id, &outcome.as_ref().map(|_| ()).map_err(Clone::clone));
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
        let records: Vec<(String, BundleRecord)> = {
            let mut st = self.lock();
            let dirty: Vec<String> = st.dirty.drain().collect();
            dirty.into_iter().filter_map(|id| st.records.get(&id).cloned().map(|r| (id, r))).collect()
        };
        if records.is_empty() {
            return;
        }
        if let Err(e) = self.index.put_many(records.iter().map(|(id, r)| (id.as_str(), r))) {
            log::warn!("cache: saving the index: {e:#}");
        }
    }

    pub fn state_of(&self, id: &str) -> BundleState {
        let st = self.lock();
        if st.pack_jobs.is_running(id) || st.tgz_jobs.is_running(id) {
            return BundleState::Building(st.phases.get(id).copied().unwrap_or("building"));
        }
        if let Some(bytes) = st.sizes.get(&Key::Bundle(id.to_string())) {
            let tgz = self.tgz_path(id).exists();
            return BundleState::Ready { bytes: *bytes, tgz };
        }
        if let Some((cause, wait)) = st.pack_jobs.failure(id).or_else(|| st.tgz_jobs.failure(id)) {
            return BundleState::Failed { cause: cause.to_string(), retry_in_secs: wait.as_secs() };
        }
        BundleState::Absent
    }

    /// Ids with a state other than absent.
    pub fn known_ids(&self) -> Vec<String> {
        let st = self.lock();
        let mut ids: HashSet<String> = st
            .sizes
            .keys()
            .filter_map(|k| match k {
                Key::Bundle(id) => Some(id.clone()),
                Key::Package(_) => None,
            })
            .collect();
        ids.extend(st.pack_jobs.running().map(str::to_string));
        ids.extend(st.pack_jobs.failed().map(str::to_string));
        ids.extend(st.tgz_jobs.running().map(str::to_string));
        ids.extend(st.tgz_jobs.failed().map(str::to_string));
        let mut ids: Vec<String> = ids.into_iter().collect();
        ids.sort();
        ids
    }

    /// (bytes used, budget, bundles on disk, packages on disk)
    pub fn usage(&self) -> (u64, u64, usize, usize) {
        let st = self.lock();
        let bundles = st.sizes.keys().filter(|k| matches!(k, Key::Bundle(_))).count();
        (st.used, self.settings.budget, bundles, st.sizes.len() - bundles)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Record what a build of `id` is doing (`None` when it ends).
    fn set_phase(&self, id: &str, phase: Option<&'static str>) {
        let mut st = self.lock();
        match phase {
            Some(p) => {
                st.phases.insert(id.to_string(), p);
            }
            None => {
                st.phases.remove(id);
            }
        }
    }

    fn pin_packages(&self, shas: &[String], delta: isize) {
        let mut st = self.lock();
        for sha in shas {
            let n = st.pinned_packages.entry(sha.clone()).or_default();
            *n = (*n as isize + delta).max(0) as usize;
            if *n == 0 {
                st.pinned_packages.remove(sha);
            }
        }
    }

    fn register_package(&self, path: &Path) {
        let Some(sha) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else { return };
        let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
        let mut st = self.lock();
        self.add(&mut st, Key::Package(sha), bytes);
    }
}

fn remove_file_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}
