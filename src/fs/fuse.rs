//! The fuser adapter: decode a request, count it, hand it to the
//! [`FsCore`], map the answer to a reply. Nothing else here.
//!
//! Two kernel settings live here because they are FUSE's: `open` and
//! `opendir` answer ENOSYS. The kernel then stops sending OPEN, FLUSH,
//! RELEASE and OPENDIR for the whole connection, keeps page caches across
//! opens and caches directory listings (each OPEN round trip cost about
//! 20 µs, 9% of a module build, docs/performance.md).

use super::core::{FsCore, Invalidator};
use super::types::{Attr, Caller, Data, DirItem, Errno, FileKind, Lookup, Timed, FOREVER};
use fuser::{
    FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, Notifier,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, Request,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// Every kind of write is EROFS (the mount is also `ro`, so the kernel
/// refuses most before they arrive).
macro_rules! read_only {
    ($($name:ident($($ty:ty),*) -> $reply:ty;)*) => {$(
        #[allow(clippy::too_many_arguments)]
        fn $name(&self, _req: &Request, $(_: $ty),*, reply: $reply) {
            count(&self.core.requests.other);
            reply.error(fuser::Errno::EROFS);
        }
    )*};
}

/// The filesystem handed to fuser.
pub struct FuseAdapter {
    core: Arc<FsCore>,
}

impl FuseAdapter {
    pub fn new(core: Arc<FsCore>) -> FuseAdapter {
        FuseAdapter { core }
    }
}

/// A running FUSE session (fuser's threads serve it).
pub struct Session(fuser::BackgroundSession);

impl Session {
    /// Whether the session ended (the filesystem was unmounted).
    pub fn is_finished(&self) -> bool {
        self.0.guard.is_finished()
    }

    pub fn join(self) -> std::io::Result<()> {
        self.0.join()
    }
}

/// Serve `core` on `fd` (a /dev/fuse descriptor already mounted) with
/// `threads` workers; `all_users` lets every user in (the mount's
/// allow_other). The kernel's caches are invalidated through the session.
pub fn start(core: Arc<FsCore>, fd: std::os::fd::OwnedFd, all_users: bool, threads: usize) -> std::io::Result<Session> {
    let mut config = fuser::Config::default();
    config.acl = if all_users { fuser::SessionACL::All } else { config.acl };
    config.n_threads = Some(threads.max(1));
    config.clone_fd = true;
    let acl = config.acl;
    let session = fuser::Session::from_fd(FuseAdapter::new(core.clone()), fd, acl, config)?;
    core.set_invalidator(Box::new(NotifierInvalidator(session.notifier())));
    session.spawn().map(Session)
}

/// The kernel's caches, told through fuser's notifier.
pub struct NotifierInvalidator(pub Notifier);

impl Invalidator for NotifierInvalidator {
    fn entry(&self, parent: u64, name: &str) {
        if let Err(e) = self.0.inval_entry(INodeNo(parent), OsStr::new(name)) {
            log::debug!("inval_entry {name}: {e}");
        }
    }
    fn inode(&self, ino: u64) {
        let _ = self.0.inval_inode(INodeNo(ino), 0, 0);
    }
}

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn errno(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e.0)
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Dir => FileType::Directory,
        FileKind::File => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: a.blksize,
        flags: 0,
    }
}

fn caller(req: &Request) -> Caller {
    Caller { pid: req.pid() }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        for cap in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            // A status file's new rendering has a new mtime: drop its old pages.
            InitFlags::FUSE_AUTO_INVAL_DATA,
        ] {
            if let Err(e) = config.add_capabilities(cap) {
                log::debug!("kernel lacks {e:?}");
            }
        }
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        count(&self.core.requests.lookup);
        self.core.lookup(
            parent.0,
            name.as_bytes(),
            caller(req),
            Box::new(move |r| match r {
                Ok(Lookup::Found(Timed { attr, ttl })) => {
                    reply.entry_with_ttls(&ttl, &FOREVER, &file_attr(&attr), Generation(0))
                }
                // A negative entry: inode 0, remembered by the kernel.
                Ok(Lookup::Negative) => {
                    let none = file_attr(&Attr::new(0, FileKind::File, 0, 0, 0));
                    reply.entry_with_ttls(&FOREVER, &FOREVER, &none, Generation(0))
                }
                Err(e) => reply.error(errno(e)),
            }),
        );
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        count(&self.core.requests.getattr);
        self.core.getattr(
            ino.0,
            fh.is_some(),
            caller(req),
            Box::new(move |r| match r {
                Ok(t) => reply.attr(&t.ttl, &file_attr(&t.attr)),
                Err(e) => reply.error(errno(e)),
            }),
        );
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        count(&self.core.requests.readlink);
        self.core.readlink(
            ino.0,
            caller(req),
            Box::new(move |r| match r {
                Ok(target) => reply.data(&target),
                Err(e) => reply.error(errno(e)),
            }),
        );
    }

    /// ENOSYS for every read-only open (see the module comment); EROFS for writes.
    fn open(&self, _req: &Request, _ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        count(&self.core.requests.open);
        let raw = flags.0;
        if raw & libc::O_ACCMODE != libc::O_RDONLY || raw & libc::O_TRUNC != 0 {
            return reply.error(fuser::Errno::EROFS);
        }
        reply.error(fuser::Errno::ENOSYS);
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        count(&self.core.requests.read);
        self.core.read(
            ino.0,
            offset,
            size,
            caller(req),
            Box::new(move |r: Result<Data, Errno>| match r {
                Ok(data) => reply.data(data.bytes()),
                Err(e) => reply.error(errno(e)),
            }),
        );
    }

    /// ENOSYS too: the kernel then opens every directory itself with
    /// FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR (its no-opendir default) and keeps
    /// listings in its cache; a namespace change invalidates the directories
    /// it touches. Without this, each opendir of a warm build was a round trip.
    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        count(&self.core.requests.opendir);
        reply.error(fuser::Errno::ENOSYS);
    }

    fn readdir(&self, req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        count(&self.core.requests.readdir);
        self.core.readdir(
            ino.0,
            offset,
            false,
            caller(req),
            Box::new(move |r: Result<Vec<DirItem>, Errno>| match r {
                Ok(items) => {
                    for item in items {
                        if reply.add(INodeNo(item.ino), item.next, file_type(item.kind), OsStr::from_bytes(&item.name))
                        {
                            break;
                        }
                    }
                    reply.ok()
                }
                Err(e) => reply.error(errno(e)),
            }),
        );
    }

    fn readdirplus(&self, req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        count(&self.core.requests.readdir);
        self.core.readdir(
            ino.0,
            offset,
            true,
            caller(req),
            Box::new(move |r: Result<Vec<DirItem>, Errno>| match r {
                Ok(items) => {
                    for item in items {
                        let Some(t) = item.attr else { continue };
                        let name = OsStr::from_bytes(&item.name);
                        if reply.add(INodeNo(item.ino), item.next, name, &t.ttl, &file_attr(&t.attr), Generation(0)) {
                            break;
                        }
                    }
                    reply.ok()
                }
                Err(e) => reply.error(errno(e)),
            }),
        );
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        count(&self.core.requests.statfs);
        let s = self.core.statfs();
        reply.statfs(s.blocks, s.free, s.free, s.files, 0, 4096, 255, 4096);
    }

    // Quiet answers for calls fuser's defaults would log on every use.
    // ENOSYS makes the kernel stop asking for the rest of the connection.
    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock: LockOwner, reply: ReplyEmpty) {
        reply.error(fuser::Errno::ENOSYS);
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(fuser::Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(fuser::Errno::ENOSYS);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.error(fuser::Errno::ENOSYS);
    }

    read_only! {
        setattr(INodeNo, Option<u32>, Option<u32>, Option<u32>, Option<u64>, Option<fuser::TimeOrNow>,
            Option<fuser::TimeOrNow>, Option<SystemTime>, Option<FileHandle>, Option<SystemTime>,
            Option<SystemTime>, Option<SystemTime>, Option<fuser::BsdFileFlags>) -> ReplyAttr;
        mknod(INodeNo, &OsStr, u32, u32, u32) -> ReplyEntry;
        mkdir(INodeNo, &OsStr, u32, u32) -> ReplyEntry;
        unlink(INodeNo, &OsStr) -> ReplyEmpty;
        rmdir(INodeNo, &OsStr) -> ReplyEmpty;
        symlink(INodeNo, &OsStr, &std::path::Path) -> ReplyEntry;
        rename(INodeNo, &OsStr, INodeNo, &OsStr, fuser::RenameFlags) -> ReplyEmpty;
        link(INodeNo, INodeNo, &OsStr) -> ReplyEntry;
        write(INodeNo, FileHandle, u64, &[u8], fuser::WriteFlags, OpenFlags, Option<LockOwner>) -> fuser::ReplyWrite;
        create(INodeNo, &OsStr, u32, u32, i32) -> fuser::ReplyCreate;
        setxattr(INodeNo, &OsStr, &[u8], i32, u32) -> ReplyEmpty;
        removexattr(INodeNo, &OsStr) -> ReplyEmpty;
        fallocate(INodeNo, FileHandle, u64, u64, i32) -> ReplyEmpty;
    }
}
