//! What the cache holds on disk, in recency order, and what to evict: plain
//! data, no I/O, so the policy is tested as data.

use crate::ids::{BundleId, Sha256};
use lru::LruCache;

/// One thing on disk that counts against the budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A bundle's pack and, once built, its .tgz.
    Bundle(BundleId),
    /// A verified package in the store.
    Package(Sha256),
    /// A download in progress or left resumable (its partial file's name).
    Partial(String),
}

/// Sizes in recency order (most recent first) and their total.
pub struct Accounting {
    lru: LruCache<Key, u64>,
    used: u64,
}

impl Default for Accounting {
    fn default() -> Self {
        Accounting { lru: LruCache::unbounded(), used: 0 }
    }
}

/// Totals by kind, for status and statfs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub used: u64,
    pub budget: u64,
    pub bundles: usize,
    pub packages: usize,
    pub partials: usize,
    /// Bundles pinned by `kpackfs warm --pin`, and the bytes of those on disk.
    pub pinned_bundles: usize,
    pub pinned_bytes: u64,
}

impl Accounting {
    /// Record `key` at `bytes`, as the most recently used.
    pub fn insert(&mut self, key: Key, bytes: u64) {
        let old = self.lru.put(key, bytes).unwrap_or(0);
        self.used = self.used - old + bytes;
    }

    /// Change the size of `key` (inserting it if new) without touching its recency.
    pub fn resize(&mut self, key: &Key, bytes: u64) {
        match self.lru.peek_mut(key) {
            Some(size) => {
                self.used = self.used - *size + bytes;
                *size = bytes;
            }
            None => self.insert(key.clone(), bytes),
        }
    }

    pub fn touch(&mut self, key: &Key) {
        self.lru.promote(key);
    }

    pub fn remove(&mut self, key: &Key) -> Option<u64> {
        let bytes = self.lru.pop(key)?;
        self.used -= bytes;
        Some(bytes)
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.lru.contains(key)
    }

    pub fn size_of(&self, key: &Key) -> Option<u64> {
        self.lru.peek(key).copied()
    }

    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn usage(&self, budget: u64) -> Usage {
        let mut u = Usage { used: self.used, budget, ..Usage::default() };
        for (key, _) in self.lru.iter() {
            match key {
                Key::Bundle(_) => u.bundles += 1,
                Key::Package(_) => u.packages += 1,
                Key::Partial(_) => u.partials += 1,
            }
        }
        u
    }

    pub fn bundles(&self) -> impl Iterator<Item = (&BundleId, u64)> {
        self.lru.iter().filter_map(|(k, s)| match k {
            Key::Bundle(id) => Some((id, *s)),
            _ => None,
        })
    }

    /// The keys to evict, least recently used first, to bring the total to
    /// `limit` or below, never one `in_use` says is in use. May fall short
    /// when everything left is in use.
    pub fn victims(&self, limit: u64, in_use: impl Fn(&Key) -> bool) -> Vec<Key> {
        let mut used = self.used;
        let mut out = Vec::new();
        for (key, bytes) in self.lru.iter().rev() {
            if used <= limit {
                break;
            }
            if in_use(key) {
                continue;
            }
            used -= bytes;
            out.push(key.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(n: u8) -> Key {
        Key::Bundle(BundleId([n; 32]))
    }

    #[test]
    fn least_recent_first_and_in_use_spared() {
        let mut a = Accounting::default();
        a.insert(bundle(1), 40);
        a.insert(bundle(2), 40);
        a.insert(Key::Package(Sha256([9; 32])), 30);
        a.insert(bundle(3), 40);
        a.touch(&bundle(1));
        // Recency now (oldest first): 2, package, 3, 1.
        assert_eq!(a.used(), 150);
        assert_eq!(a.victims(100, |_| false), vec![bundle(2), Key::Package(Sha256([9; 32]))]);
        assert_eq!(a.victims(100, |k| *k == bundle(2)), vec![Key::Package(Sha256([9; 32])), bundle(3)]);
        assert_eq!(a.victims(0, |_| true), Vec::<Key>::new());
        assert!(a.victims(150, |_| false).is_empty());
    }

    #[test]
    fn resizing_keeps_recency_and_the_total() {
        let mut a = Accounting::default();
        a.insert(Key::Partial("p".into()), 10);
        a.insert(bundle(1), 5);
        a.resize(&Key::Partial("p".into()), 25);
        assert_eq!(a.used(), 30);
        assert_eq!(a.victims(10, |_| false), vec![Key::Partial("p".into())]);
        assert_eq!(a.remove(&Key::Partial("p".into())), Some(25));
        assert_eq!(
            a.usage(100),
            Usage { used: 5, budget: 100, bundles: 1, packages: 0, partials: 0, pinned_bundles: 0, pinned_bytes: 0 }
        );
    }
}
