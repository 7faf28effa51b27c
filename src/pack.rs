//! The pack: one bundle materialised as one file.
//!
//! Creating 16k small files costs about 50× writing the same bytes as one
//! file on this kind of disk (docs/design.md), and evicting a tree costs as
//! many unlinks. A pack is written sequentially once, read with `pread`, and
//! evicted with one unlink; the kernel's page cache does the rest.
//!
//! ```text
//! "KPKPACK1"                      8-byte magic
//! file contents, end to end       (identical blobs stored once)
//! index                           one record per entry, in canonical order
//! trailer (48 bytes)              index offset u64, index length u64,
//!                                 record count u64, index crc32 u32,
//!                                 body crc32 u32 (magic and contents),
//!                                 version u32, reserved u32, "KPKEND02"
//! ```
//! Every trailer field is checked before it is trusted (a pack is input
//! like any other: a flipped byte must mean "rebuild", never a crash), and
//! [`Pack::open_verified`] also checks the body's CRC the first time a pack
//! is used after start (docs/design.md gives the measured cost).
//! Index record (little-endian): kind u8 (0 dir, 1 file, 2 symlink), mode u16,
//! parent u32, name length u16, name; then a file's offset u64 and size u64,
//! or a symlink's target length u16 and target.
//!
//! Entries keep the bundle's canonical order (depth first, names sorted), so
//! a .tgz written from a pack is byte-identical to one written from the tree.

use crate::layout::{BundleTree, ItemKind};
use crate::tgz::{TarItem, TarKind, TarWriter};
use anyhow::{bail, ensure, Context, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

const MAGIC: &[u8; 8] = b"KPKPACK1";
const END_MAGIC: &[u8; 8] = b"KPKEND02";
const TRAILER_LEN: u64 = 48;
const VERSION: u32 = 2;
/// The smallest index record: kind, mode, parent, name length.
const MIN_RECORD: u64 = 1 + 2 + 4 + 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
}

/// One entry of a loaded pack.
#[derive(Debug, Clone, Copy)]
pub struct PackRecord {
    pub parent: u32,
    name_off: u32,
    name_len: u16,
    pub kind: Kind,
    pub mode: u16,
    /// File size, or symlink target length.
    pub size: u64,
    /// File: content offset in the pack. Symlink: target offset in `strings`.
    data: u64,
    child_start: u32,
    child_len: u32,
    /// Direct subdirectories (for nlink).
    pub subdirs: u32,
}

/// A loaded pack: its open file and parsed index.
#[derive(Debug)]
pub struct Pack {
    file: File,
    entries: Vec<PackRecord>,
    /// Names and symlink targets.
    strings: Vec<u8>,
    /// Children of every directory, each directory's range sorted by name.
    children: Vec<u32>,
    /// Bytes on disk.
    pub file_bytes: u64,
    body_crc: u32,
    /// Where the contents end (the index starts).
    contents_end: u64,
}

/// A writer that keeps a CRC of what passes through.
struct Crc<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for Crc<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Write `tree` as a pack to `out` (flushed, not synced). Returns the bytes written.
pub fn write(tree: &BundleTree, out: impl Write) -> Result<u64> {
    let mut out = Crc { inner: out, crc: crc32fast::Hasher::new() };
    out.write_all(MAGIC)?;
    let mut pos = MAGIC.len() as u64;
    let mut stored: HashMap<*const Vec<u8>, u64> = HashMap::new();
    let mut offsets = Vec::with_capacity(tree.items.len());
    for entry in &tree.items {
        let offset = match &entry.kind {
            ItemKind::File(blob) => {
                let key = std::sync::Arc::as_ptr(blob);
                match stored.get(&key) {
                    Some(off) => *off,
                    None => {
                        out.write_all(blob).context("writing pack contents")?;
                        stored.insert(key, pos);
                        pos += blob.len() as u64;
                        pos - blob.len() as u64
                    }
                }
            }
            _ => 0,
        };
        offsets.push(offset);
    }
    let body_crc = out.crc.clone().finalize();
    let mut out = out.inner;
    let index = encode_index(tree, &offsets)?;
    out.write_all(&index).context("writing pack index")?;
    let mut trailer = Vec::with_capacity(TRAILER_LEN as usize);
    trailer.extend_from_slice(&pos.to_le_bytes());
    trailer.extend_from_slice(&(index.len() as u64).to_le_bytes());
    trailer.extend_from_slice(&(tree.items.len() as u64).to_le_bytes());
    trailer.extend_from_slice(&crc32fast::hash(&index).to_le_bytes());
    trailer.extend_from_slice(&body_crc.to_le_bytes());
    trailer.extend_from_slice(&VERSION.to_le_bytes());
    trailer.extend_from_slice(&0u32.to_le_bytes());
    trailer.extend_from_slice(END_MAGIC);
    out.write_all(&trailer)?;
    out.flush().context("flushing the pack")?;
    Ok(pos + index.len() as u64 + TRAILER_LEN)
}

fn encode_index(tree: &BundleTree, offsets: &[u64]) -> Result<Vec<u8>> {
    let mut index = Vec::with_capacity(tree.items.len() * 48);
    // Parent of each entry: the nearest preceding directory that prefixes it.
    let mut dir_stack: Vec<(usize, &str)> = Vec::new();
    for (i, entry) in tree.items.iter().enumerate() {
        let (parent, name) = if i == 0 {
            (0u32, "")
        } else {
            let (dir, name) = entry.path.rsplit_once('/').unwrap_or(("", entry.path.as_str()));
            while dir_stack.last().is_some_and(|(_, p)| *p != dir) {
                dir_stack.pop();
            }
            let (parent, _) =
                dir_stack.last().copied().with_context(|| format!("entry {} is out of order", entry.path))?;
            (parent as u32, name)
        };
        ensure!(name.len() <= u16::MAX as usize, "name too long: {}", entry.path);
        let kind = match entry.kind {
            ItemKind::Dir => 0u8,
            ItemKind::File(_) => 1,
            ItemKind::Symlink(_) => 2,
        };
        index.push(kind);
        index.extend_from_slice(&(entry.mode as u16).to_le_bytes());
        index.extend_from_slice(&parent.to_le_bytes());
        index.extend_from_slice(&(name.len() as u16).to_le_bytes());
        index.extend_from_slice(name.as_bytes());
        match &entry.kind {
            ItemKind::Dir => dir_stack.push((i, entry.path.as_str())),
            ItemKind::File(blob) => {
                index.extend_from_slice(&offsets[i].to_le_bytes());
                index.extend_from_slice(&(blob.len() as u64).to_le_bytes());
            }
            ItemKind::Symlink(target) => {
                ensure!(target.len() <= u16::MAX as usize, "link target too long: {}", entry.path);
                index.extend_from_slice(&(target.len() as u16).to_le_bytes());
                index.extend_from_slice(target.as_bytes());
            }
        }
    }
    Ok(index)
}

/// Reads fields from the index, refusing to run past its end.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).context("pack index is truncated")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }
}

impl Pack {
    /// Open and validate a pack file.
    pub fn open(path: &Path) -> Result<Pack> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let file_bytes = file.metadata()?.len();
        ensure!(file_bytes >= MAGIC.len() as u64 + TRAILER_LEN, "pack {} is too short", path.display());
        let mut head = [0u8; 8];
        file.read_exact_at(&mut head, 0)?;
        ensure!(&head == MAGIC, "{} is not a pack", path.display());
        let mut trailer = [0u8; TRAILER_LEN as usize];
        file.read_exact_at(&mut trailer, file_bytes - TRAILER_LEN)?;
        ensure!(&trailer[40..48] == END_MAGIC, "pack {} has no trailer (incomplete)", path.display());
        let index_off = u64::from_le_bytes(trailer[0..8].try_into()?);
        let index_len = u64::from_le_bytes(trailer[8..16].try_into()?);
        let count = u64::from_le_bytes(trailer[16..24].try_into()?);
        let crc = u32::from_le_bytes(trailer[24..28].try_into()?);
        let body_crc = u32::from_le_bytes(trailer[28..32].try_into()?);
        let version = u32::from_le_bytes(trailer[32..36].try_into()?);
        ensure!(version == VERSION, "pack {} has version {version}, expected {VERSION}", path.display());
        ensure!(
            index_off >= MAGIC.len() as u64 && index_off.checked_add(index_len) == Some(file_bytes - TRAILER_LEN),
            "pack {} index is misplaced",
            path.display()
        );
        // Each record takes at least MIN_RECORD bytes: a count beyond what
        // the index can hold is damage, not a reason to allocate.
        ensure!(
            count >= 1 && count <= index_len / MIN_RECORD && count <= u32::MAX as u64,
            "pack {} claims {count} records in a {index_len}-byte index",
            path.display()
        );
        let mut index = vec![0u8; index_len as usize];
        file.read_exact_at(&mut index, index_off)?;
        ensure!(crc32fast::hash(&index) == crc, "pack {} index checksum mismatch", path.display());

        let mut cur = Cursor { buf: &index, pos: 0 };
        let mut entries = Vec::with_capacity(count as usize);
        let mut strings = Vec::with_capacity(index.len() / 2);
        for i in 0..count {
            let kind = match cur.u8()? {
                0 => Kind::Dir,
                1 => Kind::File,
                2 => Kind::Symlink,
                k => bail!("pack entry {i} has unknown kind {k}"),
            };
            let mode = cur.u16()?;
            let parent = cur.u32()?;
            // Strictly before it (the root alone is its own parent): a
            // directory that contains itself would make any walk endless.
            ensure!((parent as u64) < i.max(1), "pack entry {i} has parent {parent}, not before it");
            let name_len = cur.u16()?;
            let name_off = strings.len() as u32;
            strings.extend_from_slice(cur.take(name_len as usize)?);
            let (size, data) = match kind {
                Kind::Dir => (0, 0),
                Kind::File => {
                    let off = cur.u64()?;
                    let size = cur.u64()?;
                    ensure!(
                        off.checked_add(size).is_some_and(|end| end <= index_off),
                        "pack entry {i} points past the contents"
                    );
                    (size, off)
                }
                Kind::Symlink => {
                    let len = cur.u16()?;
                    let off = strings.len() as u64;
                    strings.extend_from_slice(cur.take(len as usize)?);
                    (len as u64, off)
                }
            };
            entries.push(PackRecord {
                parent,
                name_off,
                name_len,
                kind,
                mode,
                size,
                data,
                child_start: 0,
                child_len: 0,
                subdirs: 0,
            });
        }
        ensure!(entries[0].kind == Kind::Dir, "pack root is not a directory");
        // Children ranges: count, prefix-sum, fill (entries are in name order
        // within each directory, so each range comes out sorted).
        let mut counts = vec![0u32; entries.len()];
        for (i, e) in entries.iter().enumerate().skip(1) {
            ensure!(entries[e.parent as usize].kind == Kind::Dir, "pack entry {i} has a non-directory parent");
            counts[e.parent as usize] += 1;
        }
        let mut start = 0u32;
        for (i, e) in entries.iter_mut().enumerate() {
            e.child_start = start;
            e.child_len = counts[i];
            start += counts[i];
        }
        let mut children = vec![0u32; start as usize];
        let mut fill = vec![0u32; entries.len()];
        for i in 1..entries.len() {
            let p = entries[i].parent as usize;
            children[(entries[p].child_start + fill[p]) as usize] = i as u32;
            fill[p] += 1;
            if entries[i].kind == Kind::Dir {
                entries[p].subdirs += 1;
            }
        }
        Ok(Pack { file, entries, strings, children, file_bytes, body_crc, contents_end: index_off })
    }

    /// Open, then check the body against its CRC: for a pack used for the
    /// first time since start (it may have been damaged on disk meanwhile).
    pub fn open_verified(path: &Path) -> Result<Pack> {
        let pack = Pack::open(path)?;
        pack.check_body(path)?;
        Ok(pack)
    }

    /// [`Pack::open_verified`], and the pack must be the bundle `id`'s: its
    /// BUNDLE_CHECKSUM is the id. A pack copied over another bundle's (or
    /// a name swapped on disk) is refused, never served as that bundle.
    pub fn open_verified_as(path: &Path, id: &crate::ids::BundleId) -> Result<Pack> {
        let pack = Pack::open_verified(path)?;
        let checksum = pack.bundle_checksum();
        ensure!(
            checksum.as_deref() == Some(id.hex().as_str()),
            "pack {} is bundle {:?}, not {id}",
            path.display(),
            checksum.unwrap_or_default()
        );
        Ok(pack)
    }

    /// The BUNDLE_CHECKSUM file at the pack's root (what bundle it is).
    pub fn bundle_checksum(&self) -> Option<String> {
        self.root_file("BUNDLE_CHECKSUM")
    }

    /// A small file at the pack's root (a BUNDLE_* file), trimmed.
    fn root_file(&self, name: &str) -> Option<String> {
        let idx = self.lookup(0, name.as_bytes())?;
        let e = self.entry(idx)?;
        if e.kind != Kind::File || e.size > 4096 {
            return None;
        }
        let bytes = self.read(e, 0, e.size as u32).ok()?;
        Some(String::from_utf8_lossy(&bytes).trim().to_string())
    }

    /// The bundle's BUNDLE_* values, as [`crate::layout::Meta::from_tree`] reads them.
    pub fn meta(&self) -> Option<crate::layout::Meta> {
        Some(crate::layout::Meta {
            checksum: self.root_file("BUNDLE_CHECKSUM")?,
            distro: self.root_file("BUNDLE_DISTRO")?,
            uname: self.root_file("BUNDLE_UNAME")?,
            build_dir: self.root_file("BUNDLE_BUILD_DIR")?,
        })
    }

    /// The whole file, read through the open handle (an evicted pack's
    /// name may be gone; its file is not while this is open).
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.file_bytes).map_err(|_| io::Error::other("pack too large"))?;
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }

    fn check_body(&self, path: &Path) -> Result<()> {
        let pack = self;
        let mut crc = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        while pos < pack.contents_end {
            let n = (pack.contents_end - pos).min(buf.len() as u64) as usize;
            pack.file.read_exact_at(&mut buf[..n], pos).with_context(|| format!("reading {}", path.display()))?;
            crc.update(&buf[..n]);
            pos += n as u64;
        }
        ensure!(crc.finalize() == pack.body_crc, "pack {} contents checksum mismatch", path.display());
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entry(&self, idx: u32) -> Option<&PackRecord> {
        self.entries.get(idx as usize)
    }

    pub fn name(&self, e: &PackRecord) -> &[u8] {
        &self.strings[e.name_off as usize..e.name_off as usize + e.name_len as usize]
    }

    pub fn link_target(&self, e: &PackRecord) -> &[u8] {
        match e.kind {
            Kind::Symlink => &self.strings[e.data as usize..(e.data + e.size) as usize],
            _ => &[],
        }
    }

    pub fn children(&self, dir: u32) -> &[u32] {
        match self.entries.get(dir as usize) {
            Some(e) if e.kind == Kind::Dir => {
                &self.children[e.child_start as usize..(e.child_start + e.child_len) as usize]
            }
            _ => &[],
        }
    }

    /// The child of `dir` called `name`.
    pub fn lookup(&self, dir: u32, name: &[u8]) -> Option<u32> {
        let kids = self.children(dir);
        kids.binary_search_by(|&c| self.name(&self.entries[c as usize]).cmp(name)).ok().map(|i| kids[i])
    }

    /// Read up to `len` bytes of a file entry from `offset`.
    pub fn read(&self, e: &PackRecord, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        if e.kind != Kind::File || offset >= e.size {
            return Ok(Vec::new());
        }
        let n = (e.size - offset).min(len as u64) as usize;
        let mut buf = vec![0u8; n];
        self.file.read_exact_at(&mut buf, e.data + offset)?;
        Ok(buf)
    }

    /// Write the bundle's .tgz: byte-identical to [`crate::tgz::write`]
    /// over the tree the pack was written from.
    pub fn write_tgz<W: Write>(&self, out: W, threads: usize) -> Result<W> {
        let gz = crate::tgz::gzip::ParallelGzip::new(out, crate::tgz::LEVEL, threads)?;
        let mut tar = TarWriter::new(gz);
        let mut paths: Vec<String> = Vec::with_capacity(self.entries.len());
        for (i, e) in self.entries.iter().enumerate() {
            let path = if i == 0 {
                String::new()
            } else {
                let parent = &paths[e.parent as usize];
                let name = String::from_utf8_lossy(self.name(e));
                if parent.is_empty() {
                    name.into_owned()
                } else {
                    format!("{parent}/{name}")
                }
            };
            let kind = match e.kind {
                Kind::Dir => TarKind::Dir,
                Kind::File => {
                    TarKind::File { size: e.size, data: Box::new(PackReader { pack: self, entry: *e, pos: 0 }) }
                }
                Kind::Symlink => {
                    TarKind::Symlink(std::str::from_utf8(self.link_target(e)).context("link target is not UTF-8")?)
                }
            };
            tar.append(TarItem { path: &path, mode: e.mode as u32, kind })
                .with_context(|| format!("writing {path}"))?;
            paths.push(if e.kind == Kind::Dir { path } else { String::new() });
        }
        let gz = tar.finish()?;
        Ok(gz.finish()?)
    }
}

struct PackReader<'a> {
    pack: &'a Pack,
    entry: PackRecord,
    pos: u64,
}

impl Read for PackReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.entry.size - self.pos;
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.pack.file.read_exact_at(&mut buf[..n], self.entry.data + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::TreeItem;
    use std::sync::Arc;

    fn sample() -> BundleTree {
        let shared = Arc::new(b"same bytes".to_vec());
        let e = |path: &str, kind: ItemKind, mode| TreeItem { path: path.into(), kind, mode };
        BundleTree {
            items: vec![
                e("", ItemKind::Dir, 0o755),
                e("BUNDLE_UNAME", ItemKind::File(Arc::new(b"1.0".to_vec())), 0o644),
                e("a", ItemKind::Dir, 0o755),
                e("a/b", ItemKind::Dir, 0o755),
                e("a/b/one", ItemKind::File(shared.clone()), 0o644),
                e("a/b/two", ItemKind::File(shared), 0o755),
                e("a/link", ItemKind::Symlink("b/one".into()), 0o777),
                e("z", ItemKind::File(Arc::new(Vec::new())), 0o644),
            ],
        }
    }

    #[test]
    fn round_trip_and_same_tgz() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pack");
        let bundle = sample();
        write(&bundle, std::fs::File::create(&path).unwrap()).unwrap();
        let pack = Pack::open(&path).unwrap();
        assert_eq!(pack.len(), 8);
        let a = pack.lookup(0, b"a").unwrap();
        let b = pack.lookup(a, b"b").unwrap();
        let two = pack.lookup(b, b"two").unwrap();
        let e = *pack.entry(two).unwrap();
        assert_eq!(pack.read(&e, 5, 100).unwrap(), b"bytes");
        assert_eq!(e.mode, 0o755);
        assert_eq!(pack.entry(a).unwrap().subdirs, 1);
        assert!(pack.lookup(b, b"nope").is_none());
        let link = pack.lookup(a, b"link").unwrap();
        assert_eq!(pack.link_target(pack.entry(link).unwrap()), b"b/one");
        // Identical blobs are stored once: the contents are "1.0" and "same bytes".
        let raw = std::fs::read(&path).unwrap();
        let trailer = &raw[raw.len() - TRAILER_LEN as usize..];
        let index_off = u64::from_le_bytes(trailer[..8].try_into().unwrap());
        assert_eq!(index_off - MAGIC.len() as u64, 13);
        let from_tree = crate::tgz::write(&bundle, Vec::new(), 2).unwrap();
        let from_pack = pack.write_tgz(Vec::new(), 1).unwrap();
        assert_eq!(from_tree, from_pack);
    }

    #[test]
    fn truncated_or_corrupt_packs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pack");
        write(&sample(), std::fs::File::create(&path).unwrap()).unwrap();
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 10]).unwrap();
        assert!(Pack::open(&path).is_err());
        let mut bad = full.clone();
        let n = bad.len();
        bad[n - TRAILER_LEN as usize - 5] ^= 0xff; // inside the index
        std::fs::write(&path, &bad).unwrap();
        assert!(Pack::open(&path).unwrap_err().to_string().contains("checksum"));
        // A flipped content byte passes open (the index is fine) but not verification.
        let mut bad = full.clone();
        bad[MAGIC.len() + 1] ^= 0xff;
        std::fs::write(&path, &bad).unwrap();
        assert!(Pack::open(&path).is_ok());
        assert!(Pack::open_verified(&path).unwrap_err().to_string().contains("contents checksum"));
        std::fs::write(&path, &full).unwrap();
        assert!(Pack::open_verified(&path).is_ok());
    }

    /// Issue 8 item 6: a record count outside the index CRC once made the
    /// daemon allocate 154 GB and abort at every start.
    #[test]
    fn a_corrupt_record_count_is_refused_without_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pack");
        write(&sample(), std::fs::File::create(&path).unwrap()).unwrap();
        let mut bad = std::fs::read(&path).unwrap();
        let at = bad.len() - TRAILER_LEN as usize + 16;
        bad[at..at + 8].copy_from_slice(&(154_618_822_656u64 / 48).to_le_bytes());
        std::fs::write(&path, &bad).unwrap();
        let err = Pack::open(&path).unwrap_err().to_string();
        assert!(err.contains("claims"), "{err}");
        // Every single-byte flip of the trailer is refused or harmless, never a panic.
        write(&sample(), std::fs::File::create(&path).unwrap()).unwrap();
        let full = std::fs::read(&path).unwrap();
        for i in full.len() - TRAILER_LEN as usize..full.len() {
            let mut bad = full.clone();
            bad[i] ^= 0x80;
            std::fs::write(&path, &bad).unwrap();
            let _ = Pack::open_verified(&path);
        }
    }
}
