//! An index shipped beside its manifest: `<manifest>.idx`, written by
//! whoever wrote the YAML (`kpackfs crawl`, `kpackfs index`) and keyed by
//! the YAML's sha256, so a mount takes it instead of parsing the YAML: a
//! million entries are a hash of the file and a copy, not 40 s of parsing.
//!
//! The sidecar is input like the YAML beside it: it is copied into the cache
//! (a file kpackfs owns, so nobody can truncate what the mount maps), its
//! header re-checked on the copy, and every later read is bounds checked
//! like any index's. One whose key is not this YAML's digest is ignored.

use super::{key_of, Index, IndexBuilder, HEADER_FIXED, HEADER_LEN, MAGIC};
use anyhow::{bail, ensure, Context, Result};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The sidecar format: what its key means. A change makes old ones unused.
const SIDECAR_VERSION: &[u8] = b"sidecar-1";
/// The largest sidecar adopted (a million entries index to ~650 MB).
const MAX_SIDECAR_BYTES: u64 = 4 << 30;

/// Entries parsed from manifest YAML by this process (status.json's
/// `manifest_entries_parsed`: 0 when every index came from a sidecar or the
/// cache).
pub static YAML_ENTRIES_PARSED: AtomicU64 = AtomicU64::new(0);

pub fn count_parsed(n: usize) {
    YAML_ENTRIES_PARSED.fetch_add(n as u64, Ordering::Relaxed);
}

/// `manifest.yml` → `manifest.yml.idx`.
pub fn path_for(manifest: &Path) -> PathBuf {
    let mut name = manifest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".idx");
    manifest.with_file_name(name)
}

/// The key of the sidecar of the YAML at `manifest`: its sha256.
fn key_for(manifest: &Path) -> Result<[u8; 32]> {
    let (sha256, _) = crate::util::hash_file(manifest)?;
    Ok(key_of(&[SIDECAR_VERSION, sha256.as_bytes()]))
}

/// Index the manifest at `manifest` and write its sidecar beside it.
/// A manifest of bare package names (kernel-packer's, which needs package
/// lists: another input) gets none.
pub fn write(manifest: &Path) -> Result<super::IndexCounts> {
    let side = path_for(manifest);
    let mut b = IndexBuilder::for_file(&side)?;
    let mut lists =
        crate::manifest::Lists::Refused("kernel-packer's names need package lists, another input: no index beside it");
    super::add_yaml_file(&mut b, manifest, &mut lists, None)
        .with_context(|| format!("indexing {}", manifest.display()))?;
    let index = b.write(key_for(manifest)?)?;
    Ok(index.counts)
}

/// The sidecar of `manifest`, if it indexes exactly the YAML there now:
/// copied to `dest` (in a directory kpackfs created) and re-keyed as `key`.
/// `Ok(None)`: there is none, or it is for other bytes.
pub fn adopt(manifest: &Path, dest: &Path, key: [u8; 32]) -> Result<Option<Index>> {
    let side = path_for(manifest);
    // Never through a symlink: the sidecar is opened, not resolved.
    let mut src = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&side) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", side.display())),
    };
    let meta = src.metadata()?;
    ensure!(meta.is_file(), "{} is not a file", side.display());
    ensure!(meta.len() <= MAX_SIDECAR_BYTES, "{} is {} bytes, over {MAX_SIDECAR_BYTES}", side.display(), meta.len());
    let want = key_for(manifest)?;
    let mut header = [0u8; HEADER_LEN];
    src.read_exact(&mut header).with_context(|| format!("reading {}", side.display()))?;
    if !indexes(&header, &want) {
        log::info!("{} is not the index of {} as it is now: parsing the YAML", side.display(), manifest.display());
        return Ok(None);
    }
    src.seek(SeekFrom::Start(0))?;
    let mut out = crate::files::AtomicFile::create(dest)?;
    let copied = std::io::copy(&mut src.take(MAX_SIDECAR_BYTES), out.file())?;
    ensure!(copied == meta.len(), "{} changed while being copied", side.display());
    // The copy is what counts: its header must still say this YAML.
    let mut head = [0u8; HEADER_LEN];
    std::fs::File::open(out.temp_path())?.read_exact(&mut head)?;
    if !indexes(&head, &want) {
        bail!("{} changed while being copied", side.display());
    }
    Index::parse_header(&head).with_context(|| format!("index {}", side.display()))?;
    rekey(&mut head, key);
    let file = out.file();
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&head)?;
    out.commit()?;
    Index::open(dest).map(Some)
}

/// The sidecar of `manifest`, if it indexes exactly the YAML there now,
/// copied into a new directory of `scratch` (one kpackfs made; removed with
/// the returned handle): the base of an index that merges more (a crawl
/// result, a reload's kept slots), read instead of the YAML.
pub fn copy_for(manifest: &Path, scratch: &Path) -> Result<Option<(tempfile::TempDir, Index)>> {
    let dir = crate::files::private_temp_dir(scratch, "sidecar.")?;
    let copied = adopt(manifest, &dir.path().join("base.idx"), [0; 32])?;
    Ok(copied.map(|index| (dir, index)))
}

/// Whether an index header says it indexes the YAML whose key is `want`.
fn indexes(head: &[u8; HEADER_LEN], want: &[u8; 32]) -> bool {
    &head[..8] == MAGIC && head[8..40] == *want
}

/// Put `key` in a header and its checksum after.
fn rekey(head: &mut [u8; HEADER_LEN], key: [u8; 32]) {
    head[8..40].copy_from_slice(&key);
    let crc = crc32fast::hash(&head[..HEADER_FIXED]);
    head[HEADER_FIXED..HEADER_FIXED + 4].copy_from_slice(&crc.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "\
1111111111111111111111111111111111111111111111111111111111111111:
  type: debian
  packages:
  - url: http://x.test/linux-headers-6.1.0-1-amd64_6.1.1-1_amd64.deb
";

    fn manifest(dir: &Path) -> PathBuf {
        let id = crate::manifest::bundle_id(["http://x.test/linux-headers-6.1.0-1-amd64_6.1.1-1_amd64.deb"]);
        let p = dir.join("m.yml");
        std::fs::write(&p, YAML.replace(&"1".repeat(64), &id)).unwrap();
        p
    }

    #[test]
    fn a_sidecar_is_adopted_for_its_own_yaml_only() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(dir.path());
        assert_eq!(write(&m).unwrap().shown, 1);
        let dest = dir.path().join("served.idx");
        let index = adopt(&m, &dest, [9; 32]).unwrap().expect("adopted");
        assert_eq!(index.key(), [9; 32], "re-keyed for the cache");
        assert_eq!(index.counts.shown, 1);
        // The YAML changes (one byte): the sidecar is for other bytes.
        let mut text = std::fs::read_to_string(&m).unwrap();
        text.push('\n');
        std::fs::write(&m, text).unwrap();
        assert!(adopt(&m, &dest, [9; 32]).unwrap().is_none());
    }

    #[test]
    fn a_damaged_or_linked_sidecar_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(dir.path());
        write(&m).unwrap();
        let side = path_for(&m);
        let good = std::fs::read(&side).unwrap();
        let mut bad = good.clone();
        bad[100] ^= 0xff; // in the section table: the header checksum fails
        std::fs::write(&side, &bad).unwrap();
        assert!(adopt(&m, &dir.path().join("a.idx"), [1; 32]).is_err());
        // A symlink to a good one is not followed.
        let elsewhere = dir.path().join("elsewhere.idx");
        std::fs::write(&elsewhere, &good).unwrap();
        std::fs::remove_file(&side).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &side).unwrap();
        assert!(adopt(&m, &dir.path().join("b.idx"), [1; 32]).is_err());
    }
}
