//! A built .tgz, open for reading. It is mapped into memory: a read reply
//! then copies straight from the page cache into the kernel's FUSE pages.

use std::fs::File;
use std::os::fd::AsRawFd;

#[derive(Debug)]
pub struct Tgz {
    pub file: File,
    pub size: u64,
    pub sha256: String,
    map: Option<Mapping>,
}

/// A read-only shared mapping of a whole file. Cached files are never
/// modified after their rename into place (eviction unlinks them, which
/// leaves the mapping valid), so the mapped bytes cannot change under us.
#[derive(Debug)]
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and immutable for its whole life.
unsafe impl Send for Mapping {}
// SAFETY: as above; concurrent reads of immutable memory are fine.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(file: &File, len: u64) -> Option<Mapping> {
        if len == 0 {
            return None;
        }
        let len = usize::try_from(len).ok()?;
        // SAFETY: mapping a file we hold open, read-only and shared.
        let ptr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        (ptr != libc::MAP_FAILED).then_some(Mapping { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: ptr/len come from a successful mmap that lives as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what mmap returned.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
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
