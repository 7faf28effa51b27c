//! The cache's persistent index (redb: crash-safe, transactional): what is
//! known about each bundle, surviving restarts and eviction. A bundle's .tgz
//! size and sha256 stay after its files are evicted, so `stat` of the .tgz
//! is exact once it has been built.

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
    pub fn open(path: &Path) -> Result<Index> {
        let db = Database::create(path).with_context(|| format!("opening the cache index {}", path.display()))?;
        let txn = db.begin_write()?;
        txn.open_table(BUNDLES)?;
        txn.commit()?;
        Ok(Index { db })
    }

    pub fn load_all(&self) -> Result<HashMap<String, BundleRecord>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BUNDLES)?;
        let mut out = HashMap::new();
        for row in table.iter()? {
            let (k, v) = row?;
            match serde_json::from_slice::<BundleRecord>(v.value()) {
                Ok(rec) => {
                    out.insert(k.value().to_string(), rec);
                }
                Err(e) => log::warn!("cache index: ignoring an unreadable record for {}: {e}", k.value()),
            }
        }
        Ok(out)
    }

    /// Write several records in one transaction.
    pub fn put_many<'a>(&self, records: impl IntoIterator<Item = (&'a str, &'a BundleRecord)>) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(BUNDLES)?;
            for (id, rec) in records {
                let bytes = serde_json::to_vec(rec)?;
                table.insert(id, bytes.as_slice())?;
            }
        }
        txn.commit().context("committing the cache index")?;
        Ok(())
    }
}
