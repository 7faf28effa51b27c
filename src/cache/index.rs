//! The cache's persistent index (redb: crash-safe, transactional): what is
//! known about each bundle, surviving restarts and eviction. A bundle's .tgz
//! size and sha256 stay after its files are evicted, so `stat` of the .tgz
//! is exact once it has been built.
//!
//! A damaged index is moved aside and a new one started: records are a
//! cache of facts about files, and losing them only costs rebuilding.

use crate::ids::BundleId;
use anyhow::{Context, Result};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

const BUNDLES: TableDefinition<&str, &[u8]> = TableDefinition::new("bundles");

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRecord {
    /// Size of the .tgz, once it has been built (kept after eviction).
    #[serde(default)]
    pub tgz_size: Option<u64>,
    #[serde(default)]
    pub tgz_sha256: Option<String>,
    /// Last access, seconds since the epoch (LRU order across restarts).
    #[serde(default)]
    pub last_access: u64,
}

pub struct Index {
    db: Database,
}

impl Index {
    /// Open the index; a damaged one is renamed to `index.redb.damaged` and
    /// replaced by an empty one (logged).
    pub fn open(path: &Path) -> Result<Index> {
        match Self::try_open(path) {
            Ok(index) => Ok(index),
            Err(e)
                if e.chain().any(|c| {
                    matches!(c.downcast_ref::<redb::DatabaseError>(), Some(redb::DatabaseError::DatabaseAlreadyOpen))
                }) =>
            {
                Err(e.context("the cache index is open in another kpackfs"))
            }
            Err(e) => {
                let aside = path.with_extension("redb.damaged");
                log::warn!(
                    "cache index {} is unreadable ({e:#}); moved to {} and starting a new one",
                    path.display(),
                    aside.display()
                );
                std::fs::rename(path, &aside).with_context(|| format!("moving {} aside", path.display()))?;
                Self::try_open(path)
            }
        }
    }

    fn try_open(path: &Path) -> Result<Index> {
        let db = Database::create(path).with_context(|| format!("opening the cache index {}", path.display()))?;
        let txn = db.begin_write()?;
        txn.open_table(BUNDLES)?;
        txn.commit()?;
        let index = Index { db };
        index.load_all()?; // a damaged table shows here, not later
        Ok(index)
    }

    pub fn load_all(&self) -> Result<HashMap<BundleId, BundleRecord>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BUNDLES)?;
        let mut out = HashMap::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let Some(id) = BundleId::parse(k.value()) else { continue };
            match serde_json::from_slice::<BundleRecord>(v.value()) {
                Ok(rec) => {
                    out.insert(id, rec);
                }
                Err(e) => log::warn!("cache index: ignoring an unreadable record for {}: {e}", k.value()),
            }
        }
        Ok(out)
    }

    /// Write several records in one transaction.
    pub fn put_many<'a>(&self, records: impl IntoIterator<Item = (&'a BundleId, &'a BundleRecord)>) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(BUNDLES)?;
            for (id, rec) in records {
                let bytes = serde_json::to_vec(rec)?;
                table.insert(id.hex().as_str(), bytes.as_slice())?;
            }
        }
        txn.commit().context("committing the cache index")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_index_is_moved_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let index = Index::open(&path).unwrap();
        let id = BundleId([3; 32]);
        index.put_many([(&id, &BundleRecord { tgz_size: Some(5), ..Default::default() })]).unwrap();
        drop(index);
        assert_eq!(Index::open(&path).unwrap().load_all().unwrap()[&id].tgz_size, Some(5));
        let mut bytes = std::fs::read(&path).unwrap();
        for b in bytes.iter_mut().take(4096) {
            *b ^= 0xa5;
        }
        std::fs::write(&path, &bytes).unwrap();
        let index = Index::open(&path).unwrap();
        assert!(index.load_all().unwrap().is_empty());
        assert!(path.with_extension("redb.damaged").exists());
    }
}
