//! BundleTree tree → deterministic `.tgz`.
//!
//! Same entries in, same bytes out, on any machine: canonical entry order,
//! `./`-prefixed paths, owner root:root (0:0), one fixed mtime, normalised
//! modes, GNU headers, and the fixed-header parallel gzip of [`gzip`].

pub mod gzip;

use crate::layout::{BundleTree, ItemKind};
use anyhow::{Context, Result};
use std::io::{self, Read, Write};

/// The mtime of every entry: 2000-01-01T00:00:00Z. Fixed for reproducibility;
/// equal times keep make from rebuilding anything inside the tree.
pub const FIXED_MTIME: u64 = 946_684_800;
/// gzip level: the size target is met at 6, and 9 costs twice the time.
pub const LEVEL: u32 = 6;

/// What the tar writer needs of one entry.
pub enum TarKind<'a> {
    Dir,
    File { size: u64, data: Box<dyn Read + 'a> },
    Symlink(&'a str),
}

pub struct TarItem<'a> {
    /// Relative to the bundle root; "" is the root.
    pub path: &'a str,
    pub mode: u32,
    pub kind: TarKind<'a>,
}

/// Writes tar entries with fixed metadata, named like GNU tar names them
/// (`./`, `./dir/`, `./file`), with GNU long-name records past 100 bytes.
pub struct TarWriter<W: Write> {
    out: W,
}

const NAME_FIELD: usize = 100;

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter { out }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> io::Result<tar::Header> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mtime(FIXED_MTIME);
        header.set_uid(0);
        header.set_gid(0);
        header.set_username("root")?;
        header.set_groupname("root")?;
        header.set_mode(mode);
        header.set_size(size);
        Ok(header)
    }

    /// A `././@LongLink` record carrying a name that does not fit its field.
    fn long_record(&mut self, kind: tar::EntryType, value: &[u8]) -> io::Result<()> {
        let mut header = Self::header(kind, 0o644, value.len() as u64 + 1)?;
        header.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        header.set_cksum();
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(value)?;
        self.out.write_all(&[0])?; // the name's terminator, counted in the size
        self.pad(value.len() as u64 + 1)
    }

    /// Zeros up to the next 512-byte boundary after `len` bytes of data.
    fn pad(&mut self, len: u64) -> io::Result<()> {
        const ZEROS: [u8; 512] = [0; 512];
        self.out.write_all(&ZEROS[..(512 - (len % 512) as usize) % 512])
    }

    pub fn append(&mut self, item: TarItem<'_>) -> io::Result<()> {
        let name = match (&item.kind, item.path.is_empty()) {
            (_, true) => "./".to_string(),
            (TarKind::Dir, false) => format!("./{}/", item.path),
            _ => format!("./{}", item.path),
        };
        let (kind, size, link) = match &item.kind {
            TarKind::Dir => (tar::EntryType::Directory, 0, None),
            TarKind::File { size, .. } => (tar::EntryType::Regular, *size, None),
            TarKind::Symlink(target) => (tar::EntryType::Symlink, 0, Some(*target)),
        };
        if name.len() > NAME_FIELD {
            self.long_record(tar::EntryType::GNULongName, name.as_bytes())?;
        }
        if let Some(link) = link.filter(|l| l.len() > NAME_FIELD) {
            self.long_record(tar::EntryType::GNULongLink, link.as_bytes())?;
        }
        let mut header = Self::header(kind, item.mode, size)?;
        let fields = header.as_old_mut();
        let n = name.len().min(NAME_FIELD);
        fields.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        if let Some(link) = link {
            let n = link.len().min(NAME_FIELD);
            fields.linkname[..n].copy_from_slice(&link.as_bytes()[..n]);
        }
        header.set_cksum();
        self.out.write_all(header.as_bytes())?;
        if let TarKind::File { size, data } = item.kind {
            let copied = io::copy(&mut data.take(size), &mut self.out)?;
            if copied != size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{}: {copied} of {size} bytes", item.path),
                ));
            }
            self.pad(size)?;
        }
        Ok(())
    }

    /// The end-of-archive marker (two zero blocks); returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 1024])?;
        Ok(self.out)
    }
}

/// Write `tree` as a .tgz to `out`, compressing with `threads` threads
/// (the bytes do not depend on it); returns the writer.
pub fn write<W: Write>(tree: &BundleTree, out: W, threads: usize) -> Result<W> {
    let gz = gzip::ParallelGzip::new(out, LEVEL, threads).context("starting gzip")?;
    let mut tar = TarWriter::new(gz);
    for entry in &tree.items {
        let kind = match &entry.kind {
            ItemKind::Dir => TarKind::Dir,
            ItemKind::File(blob) => TarKind::File { size: blob.len() as u64, data: Box::new(&blob[..]) },
            ItemKind::Symlink(target) => TarKind::Symlink(target),
        };
        tar.append(TarItem { path: &entry.path, mode: entry.mode, kind })
            .with_context(|| format!("writing {} to the tar", entry.path))?;
    }
    let gz = tar.finish().context("finishing the tar")?;
    gz.finish().context("finishing the gzip stream")
}

/// Write the bundle's .tgz into `out` (buffered): its sha256 and size.
pub fn write_hashed(tree: &BundleTree, out: impl Write, threads: usize) -> Result<(String, u64)> {
    let hashing = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, out));
    let (writer, sha, size) = write(tree, hashing, threads)?.finish();
    writer.into_inner().map_err(|e| e.into_error()).context("flushing the .tgz")?;
    Ok((sha, size))
}

/// A `Write` that also hashes and counts what passes through.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: sha2::Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        use sha2::Digest;
        HashingWriter { inner, hasher: sha2::Sha256::new(), bytes: 0 }
    }

    /// (inner writer, hex sha256, byte count)
    pub fn finish(self) -> (W, String, u64) {
        use sha2::Digest;
        (self.inner, hex::encode(self.hasher.finalize()), self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
