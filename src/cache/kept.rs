//! Bundles pinned by `kpackfs warm --pin`: never evicted. The list is a
//! file of the cache directory (`pinned`, one bundle id per line) that
//! `warm` rewrites atomically under `pinned.lock` and the cache rereads when
//! its stamp changes, so a pin reaches a running mount without a control
//! channel and survives restarts.

use crate::ids::BundleId;
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Room for a quarter of a million ids; a longer file is refused, not cut.
const MAX_BYTES: u64 = 16 << 20;

pub fn path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("pinned")
}

/// The pinned ids in the file; none when it is missing. Lines that are no
/// bundle id are skipped (the file is ours, but read as input anyway).
pub fn read(cache_dir: &Path) -> Result<BTreeSet<BundleId>> {
    let file = path(cache_dir);
    if !file.exists() {
        return Ok(BTreeSet::new());
    }
    let text = crate::files::read_bounded(&file, MAX_BYTES)?;
    Ok(text.lines().filter_map(|l| BundleId::parse(l.trim())).collect())
}

/// Add and remove pins; returns the new set. Serialized across processes
/// by an flock, so two `warm --pin` runs lose neither's pins.
pub fn update(cache_dir: &Path, add: &[BundleId], remove: &[BundleId]) -> Result<BTreeSet<BundleId>> {
    crate::files::check_owned_dir(cache_dir)?;
    let lock_path = cache_dir.join("pinned.lock");
    let lock = crate::files::open_private_output(&lock_path, true)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    // SAFETY: flock on a descriptor we own; released when `lock` drops.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("locking {}", lock_path.display()));
    }
    let mut ids = read(cache_dir)?;
    ids.extend(add.iter().copied());
    for id in remove {
        ids.remove(id);
    }
    let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
    crate::files::write_atomic(&path(cache_dir), text.as_bytes())?;
    Ok(ids)
}

/// The cache's view of the file, reread when its mtime or length changes.
#[derive(Default)]
pub struct Kept {
    stamp: Option<(SystemTime, u64)>,
    ids: BTreeSet<BundleId>,
}

impl Kept {
    pub fn refresh(&mut self, cache_dir: &Path) {
        let stamp = std::fs::metadata(path(cache_dir)).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
        if stamp == self.stamp {
            return;
        }
        match read(cache_dir) {
            Ok(ids) => {
                self.ids = ids;
                self.stamp = stamp;
            }
            Err(e) => log::warn!("cache: keeping the pins known before: {e:#}"),
        }
    }

    pub fn contains(&self, id: &BundleId) -> bool {
        self.ids.contains(id)
    }

    pub fn ids(&self) -> &BTreeSet<BundleId> {
        &self.ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_added_and_removed_and_seen_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (BundleId([1; 32]), BundleId([2; 32]));
        let mut kept = Kept::default();
        kept.refresh(dir.path());
        assert!(kept.ids().is_empty(), "no file, no pins");
        assert_eq!(update(dir.path(), &[a, b], &[]).unwrap(), BTreeSet::from([a, b]));
        kept.refresh(dir.path());
        assert!(kept.contains(&a) && kept.contains(&b));
        assert_eq!(update(dir.path(), &[], &[a]).unwrap(), BTreeSet::from([b]));
        kept.refresh(dir.path());
        assert!(!kept.contains(&a) && kept.contains(&b), "an unpin is seen (the length changed)");
        std::fs::write(path(dir.path()), format!("junk\n{a}\n../../etc\n")).unwrap();
        assert_eq!(read(dir.path()).unwrap(), BTreeSet::from([a]), "lines that are no id are skipped");
    }
}
