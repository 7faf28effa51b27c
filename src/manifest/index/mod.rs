//! The served manifest in a compact, memory-mapped form.
//!
//! YAML stays the interchange format, but reading it costs about 30 µs and
//! 2 KB of heap per entry (3 s and 215 MB at 100,000 entries,
//! docs/performance.md). The mount serves from this index instead: fixed-size
//! records and sorted tables over one string area, built once from the YAML
//! (kept in the cache directory, rebuilt when an input changes) and mapped
//! read-only, so start-up is an `mmap` and memory is what the kernel pages
//! in for the names actually looked up.
//!
//! ```text
//! header (232 bytes)   magic "KPKIDX03", counts, section offsets, key, CRC
//! slots                one 80-byte record per bundle id, in slot order (slots
//!                      only grow: a rebuilt index keeps every earlier slot)
//! packages             64-byte records; each slot owns a range
//! alternatives         8-byte string references; each package owns a range
//! types                16-byte records by type number: name, range in by_name
//! by_name              12-byte named records (slot, name in `names`) of the
//!                      served bundles, by (type, name)
//! flat                 named records by name, one per name (bundles/ view)
//! by_id                every slot number, by id
//! by_uname             served slot numbers, by (uname, type name)
//! names                the served names, in by_name order
//! strings              every name, URL and reason
//! ```
//! Locality decides memory at scale: a directory listing or a lookup reads
//! only its type's named records and the packed `names` area, and the slots
//! of a first build are numbered by (type, name), so one type's slots sit
//! together (`ls -l` of 100,000 entries touches a few MB, not the whole file).
//! A string reference is a u64: offset << 24 | length. Every read is bounds
//! checked: a damaged index yields missing entries or a rebuild, never a
//! crash.

use super::{rules, BundleSpec, Package};
use crate::ids::BundleId;
use anyhow::{ensure, Context, Result};
use std::collections::HashMap;
use std::path::Path;

const MAGIC: &[u8; 8] = b"KPKIDX03";
const HEADER_LEN: usize = 232;
/// The header's checksummed part: magic, key, six counts, the section
/// table; its CRC-32 follows.
const HEADER_FIXED: usize = 8 + 32 + 6 * 4 + SECTIONS * 16;
const SLOT_LEN: usize = 80;
const PKG_LEN: usize = 64;
const TYPE_LEN: usize = 16;

const FLAG_NAMED: u8 = 1;
const FLAG_VERIFIED: u8 = 2;
const FLAG_SERVED: u8 = 4;
const PKG_SHA: u8 = 1;
const PKG_SIZE: u8 = 2;

/// Sections, in file order, after the header.
#[derive(Clone, Copy)]
enum Section {
    Slots,
    Packages,
    Alts,
    Types,
    ByName,
    Flat,
    ById,
    ByUname,
    Names,
    Strings,
}

const SECTIONS: usize = 10;
const NAMED_LEN: usize = 12;

/// Counts the mount reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexCounts {
    pub slots: usize,
    pub shown: usize,
    pub unnamed: usize,
    pub shadowed: usize,
    pub flat_collisions: usize,
}

impl IndexCounts {
    /// The one way every command counts a mount's entries: "1826 bundles
    /// shown of 1893 entries (40 unnamed, 27 with another's name)".
    pub fn summary(&self) -> String {
        let mut hidden = Vec::new();
        if self.unnamed > 0 {
            hidden.push(format!("{} unnamed", self.unnamed));
        }
        if self.shadowed > 0 {
            hidden.push(format!("{} with the name of another", self.shadowed));
        }
        let hidden = if hidden.is_empty() { String::new() } else { format!(" ({})", hidden.join(", ")) };
        format!("{} bundles shown of {} entries{hidden}", self.shown, self.slots)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct SlotRec {
    id: [u8; 32],
    kind: u16,
    flags: u8,
    name: u64,
    uname: u64,
    reason: u64,
    signed_by: u64,
    pkgs_start: u32,
    pkgs_len: u16,
}

#[derive(Debug, Clone, Copy, Default)]
struct PkgRec {
    url: u64,
    sha: [u8; 32],
    flags: u8,
    size: u64,
    alts_start: u32,
    alts_len: u16,
    /// The sha512's hex digits in the string area (0: none).
    sha512: u64,
}

impl PkgRec {
    /// The record as the packages section holds it (read::Index::package).
    fn encode(&self, o: &mut [u8; PKG_LEN]) {
        o[0..8].copy_from_slice(&self.url.to_le_bytes());
        o[8..40].copy_from_slice(&self.sha);
        o[40] = self.flags;
        o[41] = 0;
        o[42..44].copy_from_slice(&self.alts_len.to_le_bytes());
        o[44..48].copy_from_slice(&self.alts_start.to_le_bytes());
        o[48..56].copy_from_slice(&self.size.to_le_bytes());
        o[56..64].copy_from_slice(&self.sha512.to_le_bytes());
    }
}

mod build;
mod column;
mod read;
mod settle;
pub mod sidecar;

pub use build::IndexBuilder;
pub use read::Index;

/// The key of an index: what it was built from, so an unchanged input is
/// served from the index file without reading the YAML.
pub fn key_of(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(MAGIC);
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// A file's identity for an index key: path, device, inode, size, mtime.
pub fn file_identity(path: &Path) -> Vec<u8> {
    use std::os::unix::fs::MetadataExt;
    let mut out = path.as_os_str().as_encoded_bytes().to_vec();
    if let Ok(m) = std::fs::metadata(path) {
        for v in [m.dev(), m.ino(), m.size(), m.mtime() as u64, m.mtime_nsec() as u64] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Feed a manifest's entries into a builder, deriving names.
pub fn add_manifest(b: &mut IndexBuilder, m: &super::Manifest) -> Result<()> {
    for (id, spec) in &m.entries {
        let bid = BundleId::parse(id).with_context(|| format!("entry {id} has no valid id"))?;
        b.add(bid, spec, m.unnamed.get(id).map(String::as_str))?;
    }
    Ok(())
}

/// Slots read between two releases of an index's pages in a pass over all
/// of them: a million-entry index is ~630 MiB, all resident otherwise, and
/// such a pass reads one of the two orders (slots, or packages) out of
/// order, so a window of 8,192 slots touches up to 8,192 pages of it.
pub(super) const RELEASE_EVERY: u32 = 1 << 13;

/// On a reload, what one source gives that the kept index (whose slots
/// the builder kept) holds unchanged, so it is not added again. The last
/// copy of an id wins and both are the same, so the result is too; a second
/// copy of a million entries would double the builder's records and the new
/// file (package records are copied whole, dead ones included). Every kept
/// id met is marked: an id twice in one source is still refused when a copy
/// was skipped (the builder only checks what is added).
struct Unchanged<'a> {
    kept: &'a Index,
    /// One bit per kept slot.
    seen: Vec<u64>,
    looked: u32,
}

impl<'a> Unchanged<'a> {
    fn new(kept: &'a Index) -> Unchanged<'a> {
        Unchanged { kept, seen: vec![0; kept.counts.slots.div_ceil(64)], looked: 0 }
    }

    fn holds(&mut self, id: &BundleId, spec: &BundleSpec, reason: Option<&str>) -> Result<bool> {
        self.looked = self.looked.wrapping_add(1);
        if self.looked.is_multiple_of(RELEASE_EVERY) {
            self.kept.release_pages();
        }
        let Some(slot) = self.kept.find_id(id) else { return Ok(false) };
        let Some(word) = self.seen.get_mut(slot as usize / 64) else { return Ok(false) };
        let bit = 1u64 << (slot % 64);
        ensure!(*word & bit == 0, "malformed manifest: entry {id} appears twice");
        *word |= bit;
        Ok(self.kept.entry(slot).is_some_and(|(_, s, r)| s == *spec && r.as_deref() == reason))
    }
}

impl Drop for Unchanged<'_> {
    fn drop(&mut self) {
        self.kept.release_pages();
    }
}

/// Add one entry of a source, unless `unchanged` says the builder holds it.
fn add_new(
    b: &mut IndexBuilder,
    unchanged: &mut Option<Unchanged<'_>>,
    id: BundleId,
    spec: &BundleSpec,
    reason: Option<&str>,
) -> Result<()> {
    if let Some(u) = unchanged {
        if u.holds(&id, spec, reason)? {
            return Ok(());
        }
    }
    b.add(id, spec, reason)
}

/// Add every entry of `index` (a sidecar: one manifest file's entries,
/// names derived) as one source, as if its YAML had been read. `kept`: on
/// a reload, the index whose slots the builder kept ([`Unchanged`]).
pub fn add_index(b: &mut IndexBuilder, index: &Index, kept: Option<&Index>) -> Result<()> {
    let start = b.added();
    let mut unchanged = kept.map(Unchanged::new);
    for (i, slot) in index.slots_in_file_order().into_iter().enumerate() {
        let (id, spec, reason) = index.entry(slot).context("damaged index: an unreadable slot")?;
        add_new(b, &mut unchanged, id, &spec, reason.as_deref())?;
        if i as u32 % RELEASE_EVERY == RELEASE_EVERY - 1 {
            index.release_pages();
        }
    }
    index.release_pages();
    b.check_unique_since(start)
}

/// Stream manifest YAML text into a builder (see [`super::parse_each`]);
/// `kept` as for [`add_index`].
pub fn add_yaml(
    b: &mut IndexBuilder,
    text: &str,
    lists: &super::PackageLists,
    kept: Option<&Index>,
) -> Result<super::ParseStats> {
    let start = b.added();
    let mut unchanged = kept.map(Unchanged::new);
    let stats = super::parse_each(text, lists, |id, spec| add_parsed(b, &mut unchanged, id, spec))?;
    finish_source(b, start, stats)
}

/// Stream a manifest file into a builder (see [`super::parse_file_each`]);
/// `kept` as for [`add_index`].
/// One thread: a second one adding entries while this one reads them took
/// 1.34x the CPU for the same wall time (docs/performance.md).
pub fn add_yaml_file(
    b: &mut IndexBuilder,
    path: &Path,
    lists: &mut super::Lists<'_>,
    kept: Option<&Index>,
) -> Result<super::ParseStats> {
    let start = b.added();
    let mut unchanged = kept.map(Unchanged::new);
    let stats = super::parse_file_each(path, lists, |id, spec| add_parsed(b, &mut unchanged, id, spec))?;
    finish_source(b, start, stats)
}

fn add_parsed(
    b: &mut IndexBuilder,
    unchanged: &mut Option<Unchanged<'_>>,
    id: String,
    mut spec: BundleSpec,
) -> Result<()> {
    let reason = spec.fill_names().err();
    let bid = BundleId::parse(&id).with_context(|| format!("entry {id} has no valid id"))?;
    add_new(b, unchanged, bid, &spec, reason.as_deref())
}

fn finish_source(b: &IndexBuilder, start: usize, stats: super::ParseStats) -> Result<super::ParseStats> {
    b.check_unique_since(start)?;
    sidecar::count_parsed(stats.entries);
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    fn spec(kind: &str, file: &str, sha: bool) -> BundleSpec {
        let mut p = Package::new(format!("http://x.test/{file}"));
        if sha {
            p.sha256 = Some("ab".repeat(32));
            p.size = Some(42);
            p.also = vec![format!("http://y.test/{file}")];
        }
        BundleSpec { kind: kind.into(), name: None, uname: None, signed_by: None, packages: vec![p] }
    }

    fn manifest() -> Manifest {
        let mut m = Manifest::default();
        m.insert(spec("debian", "linux-headers-1.0-1-amd64_1_amd64.deb", true));
        m.insert(spec("debian", "linux-headers-1.0-2-amd64_1_amd64.deb", true));
        m.insert(spec("debian", "sub/linux-headers-1.0-2-amd64_1_amd64.deb", false)); // shadowed
        m.insert(spec("garden", "g/linux-headers-1.0-2-amd64_1_amd64.deb", true)); // flat clash
        m.insert(spec("cos", "kernel-src.tar.gz", true)); // unnamed
        m
    }

    #[test]
    fn round_trips_and_answers_lookups() {
        let m = manifest();
        let mut b = IndexBuilder::new();
        add_manifest(&mut b, &m).unwrap();
        let idx = Index::from_bytes(b.finish([7; 32])).unwrap();
        assert_eq!(idx.key(), [7; 32]);
        assert_eq!(idx.counts, IndexCounts { slots: 5, shown: 3, unnamed: 1, shadowed: 1, flat_collisions: 1 });
        for (id, spec) in &m.entries {
            let slot = idx.find_id(&BundleId::parse(id).unwrap()).unwrap();
            let (got_id, got, reason) = idx.entry(slot).unwrap();
            assert_eq!(got_id.hex(), *id);
            assert_eq!(&got, spec);
            assert_eq!(reason.as_deref(), m.unnamed.get(id).map(String::as_str));
        }
        let debian = (0..idx.type_count() as u16).find(|t| idx.type_name(*t) == Some("debian")).unwrap();
        assert_eq!(idx.type_len(debian), Some(2));
        let served = idx.find_in_type(debian, "1.0-2-amd64").unwrap();
        assert!(idx.entry(served).unwrap().1.packages[0].sha256.is_some(), "the verified entry is served");
        assert!(idx.find_in_type(debian, "1.0-3-amd64").is_none());
        assert_eq!(idx.flat_len(), 2);
        assert_eq!(idx.kind(idx.find_flat("1.0-2-amd64").unwrap()), Some("debian"), "the first type by name");
        assert_eq!(idx.uname_len(), 3);
    }

    #[test]
    fn a_rebuild_under_the_same_release_is_served_and_sha512_round_trips() {
        // The same two directories hold the old and the new build, each way
        // round: whichever has the smaller id, the newer build is served.
        for swap in [false, true] {
            let mut m = Manifest::default();
            let builds = if swap { ["90+cvm10", "90+cvm2"] } else { ["90+cvm2", "90+cvm10"] };
            for (dir, build) in ["d1", "d2"].iter().zip(builds) {
                let mut s = spec(
                    "ubuntu",
                    &format!("{dir}/linux-headers-5.4.0-1085-azure-cvm_5.4.0-1085.{build}_amd64.deb"),
                    true,
                );
                if build.ends_with("cvm2") {
                    s.packages[0].sha256 = None;
                    s.packages[0].sha512 = Some("cd".repeat(64));
                }
                m.insert(s);
            }
            let mut b = IndexBuilder::new();
            add_manifest(&mut b, &m).unwrap();
            let idx = Index::from_bytes(b.finish([0; 32])).unwrap();
            let t = (0..idx.type_count() as u16).find(|t| idx.type_name(*t) == Some("ubuntu")).unwrap();
            let served = idx.find_in_type(t, "5.4.0-1085-azure-cvm").unwrap();
            let (_, got, _) = idx.entry(served).unwrap();
            assert!(got.packages[0].url.contains("+cvm10"), "the newest build: {}", got.packages[0].url);
            let old = (0..2).filter_map(|s| idx.entry(s)).find(|(_, e, _)| e.packages[0].url.contains("cvm2_"));
            assert_eq!(old.unwrap().1.packages[0].sha512.as_deref(), Some("cd".repeat(64).as_str()));
            assert_eq!(idx.counts.shadowed, 1);
        }
    }

    #[test]
    fn a_rebuild_keeps_slots_and_types() {
        let m = manifest();
        let mut b = IndexBuilder::new();
        add_manifest(&mut b, &m).unwrap();
        let first = Index::from_bytes(b.finish([0; 32])).unwrap();
        let mut b = IndexBuilder::with_prev(&first).unwrap();
        let mut more = Manifest::default();
        more.insert(spec("aaa", "linux-headers-2.0-1-amd64_1_amd64.deb", true));
        add_manifest(&mut b, &more).unwrap();
        let second = Index::from_bytes(b.finish([0; 32])).unwrap();
        for slot in 0..first.counts.slots as u32 {
            assert_eq!(first.entry(slot), second.entry(slot));
            assert_eq!(first.kind_number(slot), second.kind_number(slot));
        }
        assert_eq!(second.counts.slots, 6);
    }

    #[test]
    fn damaged_indexes_are_refused_or_answer_nothing() {
        let mut b = IndexBuilder::new();
        add_manifest(&mut b, &manifest()).unwrap();
        let good = b.finish([0; 32]);
        let mut bad = good.clone();
        bad[50] ^= 1;
        assert!(Index::from_bytes(bad).is_err(), "header checksum");
        // Any flipped byte past the header: never a panic.
        for i in (HEADER_LEN..good.len()).step_by(3) {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            if let Ok(idx) = Index::from_bytes(bad) {
                for s in 0..idx.counts.slots as u32 + 2 {
                    let _ = idx.entry(s);
                    let _ = idx.name(s);
                }
                for t in 0..idx.type_count() as u16 + 1 {
                    let _ = idx.find_in_type(t, "1.0-1-amd64");
                    let _ = idx.type_at(t, 0);
                }
                let _ = idx.find_flat("1.0-1-amd64");
                let _ = idx.find_id(&BundleId([0; 32]));
            }
        }
    }

    #[test]
    fn an_index_written_to_a_file_is_the_one_built_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("served.idx");
        let mut in_file = IndexBuilder::for_file(&path).unwrap();
        let mut in_memory = IndexBuilder::new();
        add_manifest(&mut in_file, &manifest()).unwrap();
        add_manifest(&mut in_memory, &manifest()).unwrap();
        let written = in_file.write([3; 32]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), in_memory.finish([3; 32]));
        assert_eq!(written.counts.slots, 5);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("served.idx")], "no temporary file is left");
    }

    #[test]
    fn a_later_source_replaces_an_entry_and_one_file_may_not_repeat_an_id() {
        let first = manifest();
        let (id, old) = first.entries.iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap();
        let mut b = IndexBuilder::new();
        add_yaml(&mut b, &first.to_yaml().unwrap(), &super::super::PackageLists::default(), None).unwrap();
        let mut newer = old.clone();
        newer.packages[0].size = Some(4242);
        newer.name = Some("9.9-renamed".into());
        let mut second = Manifest::default();
        second.entries.insert(id.clone(), newer);
        add_yaml(&mut b, &second.to_yaml().unwrap(), &super::super::PackageLists::default(), None).unwrap();
        let idx = Index::from_bytes(b.finish([0; 32])).unwrap();
        assert_eq!(idx.counts.slots, 5, "replaced, not added");
        let slot = idx.find_id(&BundleId::parse(&id).unwrap()).unwrap();
        let (_, got, _) = idx.entry(slot).unwrap();
        assert_eq!(got.packages[0].size, Some(4242), "the later source wins");
        // Twice in one file: YAML allows a key once; the line reader does
        // not look, the builder refuses it.
        let yaml = first.to_yaml().unwrap();
        let body = yaml.lines().skip(1).collect::<Vec<_>>().join("\n");
        let twice = format!("{yaml}{body}\n");
        let mut b = IndexBuilder::new();
        let err = add_yaml(&mut b, &twice, &super::super::PackageLists::default(), None).unwrap_err();
        assert!(format!("{err:#}").contains("appears twice"), "{err:#}");
        // On a reload too, where both copies equal the kept entry and so
        // neither is added.
        let mut b = IndexBuilder::new();
        add_yaml(&mut b, &yaml, &super::super::PackageLists::default(), None).unwrap();
        let kept = Index::from_bytes(b.finish([0; 32])).unwrap();
        let mut b = IndexBuilder::with_prev(&kept).unwrap();
        let err = add_yaml(&mut b, &twice, &super::super::PackageLists::default(), Some(&kept)).unwrap_err();
        assert!(format!("{err:#}").contains("appears twice"), "{err:#}");
        let mut b = IndexBuilder::with_prev(&kept).unwrap();
        add_yaml(&mut b, &yaml, &super::super::PackageLists::default(), Some(&kept)).unwrap();
        assert_eq!(b.added(), 5, "once, unchanged: nothing added to the kept slots");
        // So do the in-memory readers, of text and of a file.
        let err = Manifest::parse(&twice, &super::super::PackageLists::default()).unwrap_err();
        assert!(format!("{err:#}").contains("appears twice"), "{err:#}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yml");
        std::fs::write(&path, &twice).unwrap();
        let err = Manifest::load(&path, None).unwrap_err();
        assert!(format!("{err:#}").contains("appears twice"), "{err:#}");
    }
}
