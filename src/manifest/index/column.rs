//! A column of an index being built: bytes appended as entries arrive.

use anyhow::{Context, Result};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Bytes appended as they come: in memory, in an unnamed file, or already
/// in the index file being written, right after its header (the string
/// area, the largest part, is then written once).
pub(super) enum Column {
    Memory(Vec<u8>),
    File { w: BufWriter<std::fs::File>, len: u64 },
    InPlace { w: BufWriter<std::fs::File>, len: u64 },
}

impl Column {
    /// An unnamed file in `dir` (O_TMPFILE: nothing to clean up, no name
    /// another user could swap).
    pub fn file_in(dir: &Path) -> Result<Column> {
        let f = tempfile::tempfile_in(dir).with_context(|| format!("a temporary file in {}", dir.display()))?;
        Ok(Column::File { w: BufWriter::with_capacity(1 << 20, f), len: 0 })
    }

    pub fn len(&self) -> u64 {
        match self {
            Column::Memory(v) => v.len() as u64,
            Column::File { len, .. } | Column::InPlace { len, .. } => *len,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Column::Memory(v) => v.extend_from_slice(bytes),
            Column::File { w, len } | Column::InPlace { w, len } => {
                w.write_all(bytes)?;
                *len += bytes.len() as u64;
            }
        }
        Ok(())
    }

    pub fn copy_to<W: Write + Seek>(self, out: &mut Out<'_, W>) -> std::io::Result<()> {
        match self {
            Column::Memory(v) => out.put(&v),
            Column::File { w, len } => {
                let mut f = w.into_inner().map_err(|e| e.into_error())?;
                f.seek(SeekFrom::Start(0))?;
                let copied = std::io::copy(&mut f.take(len), out.w)?;
                out.pos += copied;
                if copied != len {
                    return Err(std::io::Error::other("a temporary column of the index came back short"));
                }
                Ok(())
            }
            // Written through a second handle on the same open file, which
            // shares its offset: once flushed, `out` continues after it.
            Column::InPlace { mut w, len } => {
                w.flush()?;
                out.pos += len;
                Ok(())
            }
        }
    }
}

/// A writer that knows where it is.
pub(super) struct Out<'a, W: std::io::Write + std::io::Seek> {
    pub w: &'a mut W,
    pub pos: u64,
}

impl<W: std::io::Write + std::io::Seek> Out<'_, W> {
    pub fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.w.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    pub fn pad8(&mut self) -> std::io::Result<()> {
        let pad = (8 - self.pos % 8) % 8;
        self.put(&[0u8; 8][..pad as usize])
    }

    /// Start a section on an 8-byte boundary; returns where it starts.
    pub fn begin(&mut self) -> std::io::Result<u64> {
        self.pad8()?;
        Ok(self.pos)
    }

    /// The (offset, length) of the section begun at `start`.
    pub fn since(&self, start: u64) -> (u64, u64) {
        (start, self.pos - start)
    }
}
