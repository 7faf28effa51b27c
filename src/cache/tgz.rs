//! A built .tgz, open for reading. It is mapped into memory: a read reply
//! then copies straight from the page cache into the kernel's FUSE pages.

use crate::files::Mapping;
use std::fs::File;
use std::os::fd::AsRawFd;

#[derive(Debug)]
pub struct Tgz {
    pub file: File,
    pub size: u64,
    pub sha256: String,
    map: Option<Mapping>,
}

impl Tgz {
    pub fn new(file: File, size: u64, sha256: String) -> Tgz {
        let map = Mapping::new(&file, size);
        Tgz { file, size, sha256, map }
    }

    /// The byte range for a read of up to `len` bytes at `offset` (empty past the end).
    pub fn range(&self, offset: u64, len: u32) -> std::ops::Range<usize> {
        let start = offset.min(self.size) as usize;
        let end = offset.saturating_add(len as u64).min(self.size) as usize;
        start..end
    }

    /// Bytes of the mapping; empty when the file could not be mapped (see [`Tgz::read`]).
    pub fn mapped(&self, range: std::ops::Range<usize>) -> &[u8] {
        match &self.map {
            Some(map) => &map.bytes()[range],
            None => &[],
        }
    }

    pub fn is_mapped(&self) -> bool {
        self.map.is_some()
    }

    /// Up to `len` bytes from `offset`, read from the file.
    pub fn read(&self, offset: u64, len: u32) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let range = self.range(offset, len);
        let mut buf = vec![0u8; range.len()];
        self.file.read_exact_at(&mut buf, range.start as u64)?;
        Ok(buf)
    }

    /// A reader starting at offset 0 takes the file whole: let the disk stream ahead.
    pub fn advise_sequential(&self) {
        // SAFETY: fadvise on a descriptor this Tgz owns.
        unsafe { libc::posix_fadvise(self.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED) };
    }
}
