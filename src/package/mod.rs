//! Streaming readers for distribution packages: .deb, .rpm and tarballs.
//!
//! Every reader turns a package into a list of [`Member`] with paths already
//! checked (no `..`, no absolute paths), permission bits stripped of
//! setuid/setgid/sticky, device nodes dropped, and sizes bounded by [`Limits`].
//! Nothing is written to disk here: the layout decides what the bundle holds.

mod cpio;
mod deb;
pub mod decompress;
mod paths;
pub mod rpm;
mod tarball;

pub use decompress::open as decompressed;
pub use paths::normalize_entry_path;

use anyhow::{bail, Context, Result};
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// File contents shared between the staging tree, the layout and the writers.
pub type Blob = Arc<Vec<u8>>;

/// What an archive entry is.
#[derive(Debug, Clone)]
pub enum Item {
    File(Blob),
    Dir,
    Symlink(String),
    /// A hard link to an earlier entry of the same archive (normalised path).
    Hardlink(String),
}

/// One checked archive entry.
#[derive(Debug, Clone)]
pub struct Member {
    /// Normalised relative path: no leading `./`, no `..`, never empty.
    pub path: String,
    pub item: Item,
    /// Permission bits only (0o777).
    pub mode: u32,
    pub mtime: i64,
}

/// Bounds on what one bundle's packages may expand to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest single file.
    pub max_file_bytes: u64,
    /// All file contents of a bundle together.
    pub max_total_bytes: u64,
    /// Number of entries of a bundle.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_file_bytes: 256 << 20, max_total_bytes: 2 << 30, max_entries: 400_000 }
    }
}

/// The running totals of one bundle's extraction, shared by parallel readers.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    bytes: AtomicU64,
    entries: AtomicUsize,
}

impl Budget {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Budget { limits, bytes: AtomicU64::new(0), entries: AtomicUsize::new(0) })
    }

    /// Account for one entry of `size` bytes, refusing it past a limit.
    pub fn take(&self, path: &str, size: u64) -> Result<()> {
        if size > self.limits.max_file_bytes {
            bail!("entry {path} is {size} bytes, over the {} byte limit per file", self.limits.max_file_bytes);
        }
        let total = self.bytes.fetch_add(size, Ordering::Relaxed) + size;
        if total > self.limits.max_total_bytes {
            bail!("contents exceed the {} byte limit per bundle (decompression bomb?)", self.limits.max_total_bytes);
        }
        let n = self.entries.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.limits.max_entries {
            bail!("more than {} entries per bundle", self.limits.max_entries);
        }
        Ok(())
    }
}

/// Package formats, recognised by their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Deb,
    Rpm,
    /// A tar archive, compressed or not.
    Tarball,
}

/// Recognise a package from its first bytes.
pub fn sniff(head: &[u8]) -> Option<Format> {
    if head.starts_with(b"!<arch>\n") {
        Some(Format::Deb)
    } else if head.starts_with(&[0xed, 0xab, 0xee, 0xdb]) {
        Some(Format::Rpm)
    } else if decompress::Codec::sniff(head) != decompress::Codec::None
        || (head.len() >= 262 && &head[257..262] == b"ustar")
    {
        Some(Format::Tarball)
    } else {
        None
    }
}

/// Read a whole package file into checked entries.
pub fn read_package(path: &Path, budget: &Budget) -> Result<Vec<Member>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    read_from(BufReader::with_capacity(256 << 10, file), budget)
}

/// Read a package (.deb, .rpm or tarball, told by its magic bytes).
pub fn read_from(mut reader: impl std::io::BufRead, budget: &Budget) -> Result<Vec<Member>> {
    let head = peek(&mut reader, 512)?;
    let format = sniff(&head).with_context(|| "not a .deb, .rpm or tar archive (unknown magic bytes)")?;
    let mut sink = EntrySink::new(budget);
    match format {
        Format::Deb => deb::read(&mut reader, &mut sink)?,
        Format::Rpm => rpm::read(&mut reader, &mut sink)?,
        Format::Tarball => tarball::read(decompress::open(reader)?, &mut sink)?,
    }
    Ok(sink.entries)
}

/// Read a tar stream (compressed or not), keeping only the entries whose
/// checked path `keep` accepts; the rest are skipped unread.
pub fn read_tarball_where(
    reader: impl std::io::BufRead,
    budget: &Budget,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<Member>> {
    let mut sink = EntrySink::new(budget);
    sink.keep = Some(keep);
    tarball::read(decompress::open(reader)?, &mut sink)?;
    Ok(sink.entries)
}

/// Read a bare cpio (newc) archive, as RPM payloads hold (for fuzzing).
pub fn read_cpio(reader: impl Read, budget: &Budget) -> Result<Vec<Member>> {
    let mut sink = EntrySink::new(budget);
    cpio::read(reader, &mut sink)?;
    Ok(sink.entries)
}

fn peek<R: std::io::BufRead>(reader: &mut R, n: usize) -> Result<Vec<u8>> {
    let buf = reader.fill_buf().context("reading package header")?;
    Ok(buf[..buf.len().min(n)].to_vec())
}

/// Collects entries, applying the checks every format shares.
pub(crate) struct EntrySink<'a> {
    budget: &'a Budget,
    entries: Vec<Member>,
    keep: Option<&'a dyn Fn(&str) -> bool>,
}

/// What the format reader knows about an entry before the checks.
pub(crate) enum RawKind {
    File,
    Dir,
    Symlink(Vec<u8>),
    Hardlink(Vec<u8>),
    /// Device nodes, FIFOs, sockets: never extracted.
    Special,
}

impl<'a> EntrySink<'a> {
    fn new(budget: &'a Budget) -> Self {
        EntrySink { budget, entries: Vec::new(), keep: None }
    }

    /// Check and record one entry. `data` is read only for regular files, at
    /// most `size` bytes.
    pub(crate) fn push(
        &mut self,
        raw_path: &[u8],
        kind: RawKind,
        mode: u32,
        mtime: i64,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<()> {
        let Some(path) = normalize_entry_path(raw_path)? else {
            return Ok(()); // the archive root itself
        };
        if self.keep.is_some_and(|keep| !keep(&path)) {
            return Ok(());
        }
        let mode = mode & 0o777; // setuid, setgid and sticky never take effect
        let item = match kind {
            RawKind::Special => {
                log::warn!("skipping special file {path} (device node, FIFO or socket)");
                return Ok(());
            }
            RawKind::Dir => Item::Dir,
            RawKind::Symlink(target) => {
                let target =
                    String::from_utf8(target).with_context(|| format!("symlink {path} has a non-UTF-8 target"))?;
                if target.is_empty() || target.contains('\0') || target.len() > paths::MAX_PATH_BYTES {
                    bail!("symlink {path} has an invalid target");
                }
                Item::Symlink(target)
            }
            RawKind::Hardlink(target) => {
                let target = normalize_entry_path(&target)
                    .with_context(|| format!("hard link {path}"))?
                    .with_context(|| format!("hard link {path} points at the archive root"))?;
                Item::Hardlink(target)
            }
            RawKind::File => {
                self.budget.take(&path, size)?;
                let mut buf = Vec::with_capacity(size as usize);
                data.take(size).read_to_end(&mut buf).with_context(|| format!("reading {path}"))?;
                if buf.len() as u64 != size {
                    bail!("entry {path} is truncated ({} of {size} bytes)", buf.len());
                }
                self.entries.push(Member { path, item: Item::File(Arc::new(buf)), mode, mtime });
                return Ok(());
            }
        };
        self.budget.take(&path, 0)?;
        self.entries.push(Member { path, item, mode, mtime });
        Ok(())
    }
}
