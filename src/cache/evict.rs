//! Accounting for what is on disk at start, and eviction: least recently
//! used first, never what is in use (a reader within the grace period, a
//! running flight, a pinned package, an active download, a bundle pinned by
//! `warm --pin`), down to the budget and above the disk's free-space floor.

use super::{Cache, Key, Kind, State};
use crate::fetch::SpaceGuard;
use crate::ids::{BundleId, Sha256};
use crate::observe::bump;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Instant;

/// Lets the fetcher count downloads in progress against the budget
/// without the cache and fetcher owning each other.
pub(super) struct Guard(pub(super) Weak<Cache>);

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
    /// Account for what is on disk, oldest first by last access.
    pub(super) fn scan(&self) -> Result<()> {
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
                bump(&self.counters.damaged);
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
                st.loaded.in_use(id, self.settings.grace, now)
                    || st.flights.is_running(&(*id, Kind::Pack))
                    || st.flights.is_running(&(*id, Kind::Tgz))
                    || st.kept.contains(id)
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
    pub(super) fn evict_over_budget(&self, st: &mut State) {
        let shortfall = self.disk_shortfall();
        let limit = self.settings.budget.min(st.acct.used().saturating_sub(shortfall));
        if st.acct.used() <= limit {
            return;
        }
        // Only when evicting: the pins file is stat'ed, not on every install.
        st.kept.refresh(&self.settings.dir);
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
            bump(&self.counters.evictions);
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
    pub(super) fn grow_download(&self, name: &str, bytes: u64) -> bool {
        let mut st = self.lock();
        st.downloads.insert(name.to_string());
        let key = Key::Partial(name.to_string());
        let before = st.acct.size_of(&key).unwrap_or(0);
        self.counters.downloaded_bytes.fetch_add(bytes.saturating_sub(before), Ordering::Relaxed);
        st.acct.resize(&key, bytes);
        if st.acct.used() <= self.settings.budget {
            return true;
        }
        self.evict_over_budget(&mut st);
        st.acct.used() <= self.settings.budget
    }
}

fn describe(key: &Key) -> String {
    match key {
        Key::Bundle(id) => format!("bundle {id}"),
        Key::Package(sha) => format!("package {sha}"),
        Key::Partial(name) => format!("partial download {name}"),
    }
}
