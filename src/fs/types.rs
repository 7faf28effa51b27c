//! What the filesystem core answers, in kpackfs's own types: the fuser
//! adapter (`fuse.rs`) maps these to replies, and tests drive the core with
//! them directly, without a kernel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An error number answered to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const EINTR: Errno = Errno(libc::EINTR);
    pub const ENOTDIR: Errno = Errno(libc::ENOTDIR);
    pub const EISDIR: Errno = Errno(libc::EISDIR);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const ESTALE: Errno = Errno(libc::ESTALE);
    pub const EROFS: Errno = Errno(libc::EROFS);
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
}

/// "Forever" for immutable content: about 100 years (`Duration::MAX`
/// overflows the kernel's arithmetic).
pub const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// No caching: the kernel asks again next time.
pub const NOW: Duration = Duration::ZERO;

/// The mtime of every entry: the bundles' fixed 2000-01-01.
pub fn fixed_mtime() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(crate::tgz::FIXED_MTIME)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    File,
    Symlink,
}

/// A file's attributes. Owner is always root:root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: FileKind,
    pub size: u64,
    pub perm: u16,
    pub nlink: u32,
    pub mtime: SystemTime,
    /// Preferred I/O size reported to stat.
    pub blksize: u32,
}

impl Attr {
    pub fn new(ino: u64, kind: FileKind, size: u64, perm: u16, nlink: u32) -> Attr {
        Attr { ino, kind, size, perm, nlink, mtime: fixed_mtime(), blksize: 4096 }
    }
}

/// An attribute and how long the kernel may keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timed {
    pub attr: Attr,
    pub ttl: Duration,
}

/// The answer to a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Found(Timed),
    /// The name does not exist, and the kernel may remember that forever
    /// (a negative entry; namespace changes invalidate it explicitly).
    Negative,
}

/// One directory entry of a listing. `next` is the offset that resumes
/// after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirItem {
    pub ino: u64,
    pub next: u64,
    pub kind: FileKind,
    pub name: Vec<u8>,
    /// With readdirplus: the entry's attribute.
    pub attr: Option<Timed>,
}

/// File bytes for a read reply: owned, or borrowed from a mapped .tgz.
pub enum Data {
    Owned(Vec<u8>),
    Mapped(std::sync::Arc<crate::cache::Tgz>, std::ops::Range<usize>),
    Shared(std::sync::Arc<Vec<u8>>, std::ops::Range<usize>),
}

impl Data {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Data::Owned(v) => v,
            Data::Mapped(tgz, range) => tgz.mapped(range.clone()),
            Data::Shared(v, range) => &v[range.clone()],
        }
    }
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Data({} bytes)", self.bytes().len())
    }
}

/// Filesystem totals for statfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statfs {
    pub blocks: u64,
    pub free: u64,
    pub files: u64,
}

/// Who asked: the kernel passes the calling thread's id (0 when it is not
/// visible in our pid namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caller {
    pub pid: u32,
}

/// How an answer is delivered: at once, or later from a build's completion.
pub type Done<T> = Box<dyn FnOnce(Result<T, Errno>) + Send>;

/// FUSE requests served, per operation (counted by the adapter; status
/// and the tests read them).
#[derive(Debug, Default, serde::Serialize)]
pub struct Requests {
    pub lookup: AtomicU64,
    pub getattr: AtomicU64,
    pub readlink: AtomicU64,
    pub open: AtomicU64,
    pub read: AtomicU64,
    pub opendir: AtomicU64,
    pub readdir: AtomicU64,
    pub statfs: AtomicU64,
    pub other: AtomicU64,
}

impl Requests {
    pub fn total(&self) -> u64 {
        [
            &self.lookup,
            &self.getattr,
            &self.readlink,
            &self.open,
            &self.read,
            &self.opendir,
            &self.readdir,
            &self.statfs,
            &self.other,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}
