//! The FUSE layer: a read-only filesystem over the namespace and the cache.
//!
//! Speed comes from letting the kernel cache: content is immutable, so entry
//! and attribute TTLs are about 100 years, missing names inside bundles get
//! negative entries, files open with FOPEN_KEEP_CACHE and bundle directories
//! with FOPEN_CACHE_DIR, and readdirplus answers lookups in bulk.
//!
//! No callback blocks on the network or on a build: when a bundle is not
//! ready, the reply object is queued with the cache ([`Cache::with_pack`])
//! and answered when the one shared build finishes. No lock is held across
//! that wait. See docs/semantics.md for what the filesystem promises.

pub mod namespace;
mod procfd;
mod status;

use crate::cache::Cache;
use crate::manifest::Manifest;
use crate::pack::{self, Pack};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, Notifier, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, Request,
};
use namespace::{BundleInfo, Ino, Namespace, Slots, TypeChild};
use procfd::process_has_open;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// "Forever" for immutable content: about 100 years (Duration::MAX overflows the kernel's arithmetic).
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
const NOW: Duration = Duration::ZERO;
/// Preferred I/O size reported for .tgz files.
const TGZ_BLKSIZE: u32 = 1 << 20;

fn mtime() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(crate::bundle::FIXED_MTIME)
}

/// Reply types that can carry an error.
trait ErrorReply: Send + 'static {
    fn fail(self, errno: Errno);
}

macro_rules! error_reply {
    ($($t:ty),*) => {$(impl ErrorReply for $t { fn fail(self, errno: Errno) { self.error(errno) } })*};
}
error_reply!(ReplyEntry, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyOpen, ReplyEmpty);

/// FUSE requests served, per operation (status.json `requests`).
#[derive(Debug, Default, serde::Serialize)]
pub struct Requests {
    pub lookup: AtomicU64,
    pub getattr: AtomicU64,
    pub readlink: AtomicU64,
    pub open: AtomicU64,
    pub read: AtomicU64,
    pub opendir: AtomicU64,
    pub readdir: AtomicU64,
}

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The status files' current content: rendered at getattr (their size must
/// be known before a read), served by read. A new snapshot gets a new mtime,
/// which makes the kernel drop its cached pages of the old one.
struct StatusSnapshot {
    text: Arc<Vec<u8>>,
    json: Arc<Vec<u8>>,
    at: SystemTime,
}

pub struct Inner {
    cache: Arc<Cache>,
    namespace: RwLock<Arc<Namespace>>,
    slots: Mutex<Slots>,
    status: Mutex<StatusSnapshot>,
    notifier: OnceLock<Notifier>,
    started: Instant,
    mountpoint: PathBuf,
    manifest_note: Mutex<String>,
    pub requests: Requests,
}

/// The filesystem handed to fuser; cheap to clone.
#[derive(Clone)]
pub struct KpackFs {
    inner: Arc<Inner>,
}

impl KpackFs {
    pub fn new(cache: Arc<Cache>, manifest: &Manifest, mountpoint: PathBuf) -> KpackFs {
        let mut slots = Slots::default();
        let namespace = Namespace::build(manifest, &mut slots);
        KpackFs {
            inner: Arc::new(Inner {
                cache,
                namespace: RwLock::new(Arc::new(namespace)),
                slots: Mutex::new(slots),
                status: Mutex::new(StatusSnapshot { text: Arc::default(), json: Arc::default(), at: UNIX_EPOCH }),
                notifier: OnceLock::new(),
                started: Instant::now(),
                mountpoint,
                manifest_note: Mutex::new(String::new()),
                requests: Requests::default(),
            }),
        }
    }

    pub fn set_notifier(&self, notifier: Notifier) {
        let _ = self.inner.notifier.set(notifier);
    }

    pub fn inner(&self) -> Arc<Inner> {
        self.inner.clone()
    }
}

impl Inner {
    pub fn namespace(&self) -> Arc<Namespace> {
        self.namespace.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// A note for status about where the manifest came from and its last refresh.
    pub fn set_manifest_note(&self, note: String) {
        *self.manifest_note.lock().unwrap_or_else(|e| e.into_inner()) = note;
    }

    /// Swap in a new manifest: new bundles appear at once; the kernel's cached
    /// (negative) entries and listings of changed directories are invalidated.
    /// Returns the number of new bundles.
    pub fn update_manifest(&self, manifest: &Manifest) -> usize {
        let new = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            Arc::new(Namespace::build(manifest, &mut slots))
        };
        let old = std::mem::replace(&mut *self.namespace.write().unwrap_or_else(|e| e.into_inner()), new.clone());
        let mut added = 0;
        let notifier = self.notifier.get();
        let inval_entry = |parent: u64, name: &str| {
            if let Some(n) = notifier {
                if let Err(e) = n.inval_entry(INodeNo(parent), OsStr::new(name)) {
                    log::debug!("inval_entry {name}: {e}");
                }
            }
        };
        let inval_dir = |ino: u64| {
            if let Some(n) = notifier {
                let _ = n.inval_inode(INodeNo(ino), 0, 0);
            }
        };
        let mut root_changed = false;
        for (type_name, t) in new.type_names() {
            let (_, children) = new.type_dir(*t).expect("listed type");
            let mut changed = false;
            if old.type_dir(*t).is_none() {
                inval_entry(namespace::ROOT, type_name);
                root_changed = true;
            }
            for (name, child) in children {
                if old.type_child(*t, name).is_none() {
                    inval_entry(Ino::TypeDir(*t).encode(), name);
                    changed = true;
                    if matches!(child, TypeChild::Dir(_)) {
                        added += 1;
                    }
                }
            }
            if changed {
                inval_dir(Ino::TypeDir(*t).encode());
            }
        }
        let mut flat_changed = false;
        for (name, _) in new.flat() {
            if old.flat_child(name).is_none() {
                inval_entry(namespace::BUNDLES_DIR, name);
                flat_changed = true;
            }
        }
        if flat_changed {
            inval_dir(namespace::BUNDLES_DIR);
        }
        if root_changed {
            inval_dir(namespace::ROOT);
        }
        added
    }

    fn attr(&self, ino: u64, kind: FileType, size: u64, perm: u16, nlink: u32) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: mtime(),
            mtime: mtime(),
            ctime: mtime(),
            crtime: mtime(),
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn dir_attr(&self, ino: u64, subdirs: usize) -> FileAttr {
        self.attr(ino, FileType::Directory, 0, 0o555, 2 + subdirs as u32)
    }

    /// The bundle directory before (and after) it is built: nothing about it
    /// needs the packages. nlink 1 means "unknown" to tools like find.
    fn bundle_dir_attr(&self, slot: u32) -> FileAttr {
        self.attr(Ino::Entry { slot, index: 0 }.encode(), FileType::Directory, 0, 0o755, 1)
    }

    /// The .tgz: exact size once built (kept after eviction); before that,
    /// size 0 with a zero TTL so the size is asked again after the build.
    fn tgz_attr(&self, slot: u32, info: &BundleInfo) -> (FileAttr, Duration) {
        let ino = Ino::Tgz { slot }.encode();
        let (mut attr, ttl) = match self.cache.tgz_size(&info.id) {
            Some(size) => (self.attr(ino, FileType::RegularFile, size, 0o444, 2), FOREVER),
            None => (self.attr(ino, FileType::RegularFile, 0, 0o444, 2), NOW),
        };
        // .tgz files are read whole: a large preferred I/O size makes cp and
        // friends issue fewer, larger reads (fewer FUSE round trips).
        attr.blksize = TGZ_BLKSIZE;
        (attr, ttl)
    }

    fn pack_attr(&self, slot: u32, index: u32, pack: &Pack) -> Option<FileAttr> {
        if index == 0 {
            return Some(self.bundle_dir_attr(slot));
        }
        let e = pack.entry(index)?;
        let ino = Ino::Entry { slot, index }.encode();
        Some(match e.kind {
            pack::Kind::Dir => self.attr(ino, FileType::Directory, 0, e.mode, 2 + e.subdirs),
            pack::Kind::File => self.attr(ino, FileType::RegularFile, e.size, e.mode, 1),
            pack::Kind::Symlink => self.attr(ino, FileType::Symlink, e.size, 0o777, 1),
        })
    }

    fn status_attr(&self, ino: u64) -> FileAttr {
        self.attr(ino, FileType::RegularFile, 0, 0o444, 1)
    }

    /// Attributes of anything outside bundle trees; `None` if it does not exist.
    fn namespace_attr(&self, ino: Ino, ns: &Namespace) -> Option<(FileAttr, Duration)> {
        let raw = ino.encode();
        Some(match ino {
            Ino::Root => (self.dir_attr(raw, ns.type_names().len() + 2), FOREVER),
            Ino::BundlesDir => (self.dir_attr(raw, 0), FOREVER),
            Ino::MetaDir => (self.dir_attr(raw, 0), FOREVER),
            Ino::Status | Ino::StatusJson => (self.status_attr(raw), NOW),
            Ino::TypeDir(t) => {
                let (_, children) = ns.type_dir(t)?;
                (self.dir_attr(raw, children.len() / 2), FOREVER)
            }
            Ino::Tgz { slot } => self.tgz_attr(slot, ns.bundle(slot)?),
            Ino::Entry { slot, index: 0 } => {
                ns.bundle(slot)?;
                (self.bundle_dir_attr(slot), FOREVER)
            }
            Ino::Entry { .. } => return None,
        })
    }

    /// Run `then` with the bundle's pack (after a build if needed); a failure
    /// answers EIO (the cache logs the cause once, naming the bundle).
    fn with_pack<R: ErrorReply>(
        self: &Arc<Self>,
        slot: u32,
        reply: R,
        then: impl FnOnce(&Arc<Inner>, Arc<Pack>, R) + Send + 'static,
    ) {
        let ns = self.namespace();
        let Some(info) = ns.bundle(slot) else {
            reply.fail(Errno::ENOENT);
            return;
        };
        let me = self.clone();
        self.cache.with_pack(
            &info.id,
            &info.entry,
            &info.label(),
            Box::new(move |outcome| match outcome {
                Ok(pack) => then(&me, pack, reply),
                Err(_) => reply.fail(Errno::EIO),
            }),
        );
    }

    fn entry_reply(reply: ReplyEntry, attr: &FileAttr, attr_ttl: Duration) {
        reply.entry_with_ttls(&attr_ttl, &FOREVER, attr, Generation(0));
    }

    /// A negative entry: the kernel remembers the name does not exist.
    fn negative(&self, reply: ReplyEntry) {
        let attr = self.attr(0, FileType::RegularFile, 0, 0, 0);
        reply.entry_with_ttls(&FOREVER, &FOREVER, &attr, Generation(0));
    }

    fn lookup(self: &Arc<Self>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let Some(parent) = Ino::decode(parent) else { return reply.error(Errno::ENOENT) };
        let ns = self.namespace();
        let name_str = name.to_str().unwrap_or("");
        let found: Option<Ino> = match parent {
            Ino::Root => match name_str {
                namespace::BUNDLES_NAME => Some(Ino::BundlesDir),
                namespace::META_NAME => Some(Ino::MetaDir),
                n => ns.type_by_name(n).map(Ino::TypeDir),
            },
            Ino::MetaDir => match name_str {
                "status" => Some(Ino::Status),
                "status.json" => Some(Ino::StatusJson),
                _ => None,
            },
            Ino::BundlesDir => ns.flat_child(name_str).map(|slot| Ino::Tgz { slot }),
            Ino::TypeDir(t) => ns.type_child(t, name_str).map(|c| match c {
                TypeChild::Dir(slot) => Ino::Entry { slot, index: 0 },
                TypeChild::Tgz(slot) => Ino::Tgz { slot },
            }),
            Ino::Entry { slot, index } => {
                let name = name.as_bytes().to_vec();
                return self.with_pack(slot, reply, move |me, pack, reply| match pack.lookup(index, &name) {
                    Some(child) => match me.pack_attr(slot, child, &pack) {
                        Some(attr) => Self::entry_reply(reply, &attr, FOREVER),
                        None => reply.error(Errno::EIO),
                    },
                    None => me.negative(reply),
                });
            }
            Ino::Status | Ino::StatusJson | Ino::Tgz { .. } => return reply.error(Errno::ENOTDIR),
        };
        match found.and_then(|ino| self.namespace_attr(ino, &ns)) {
            Some((attr, ttl)) => Self::entry_reply(reply, &attr, ttl),
            // Namespace directories change only on a manifest refresh, which
            // invalidates these negative entries.
            None => self.negative(reply),
        }
    }

    /// `from_open_file`: the kernel refreshes a file's attributes before
    /// reading past its cached size (it passes a file handle then).
    fn getattr(self: &Arc<Self>, ino: u64, from_open_file: bool, pid: u32, reply: ReplyAttr) {
        let Some(decoded) = Ino::decode(ino) else { return reply.error(Errno::ENOENT) };
        match decoded {
            Ino::Entry { slot, index } if index > 0 => {
                return self.with_pack(slot, reply, move |me, pack, reply| match me.pack_attr(slot, index, &pack) {
                    Some(attr) => reply.attr(&FOREVER, &attr),
                    None => reply.error(Errno::ESTALE),
                });
            }
            Ino::Status | Ino::StatusJson => {
                let (text, json, at) = self.refresh_status();
                let len = if decoded == Ino::Status { text.len() } else { json.len() };
                let mut attr = self.status_attr(ino);
                attr.size = len as u64;
                (attr.mtime, attr.ctime) = (at, at);
                return reply.attr(&NOW, &attr);
            }
            Ino::Tgz { slot } => {
                let ns = self.namespace();
                let Some(info) = ns.bundle(slot) else { return reply.error(Errno::ENOENT) };
                // A .tgz that was never built reads as size 0 to stat and ls
                // (which never build). A reader that has it open needs the
                // real size first: cp and tar read past the cached size
                // (from_open_file), rsync and Python fstat the open file.
                if self.cache.tgz_size(&info.id).is_none() && (from_open_file || process_has_open(pid, ino)) {
                    let me = self.clone();
                    return self.cache.with_tgz(
                        &info.id,
                        &info.entry,
                        &info.label(),
                        Box::new(move |outcome| match outcome {
                            Ok(tgz) => {
                                let mut attr = me.attr(ino, FileType::RegularFile, tgz.size, 0o444, 2);
                                attr.blksize = TGZ_BLKSIZE;
                                reply.attr(&FOREVER, &attr)
                            }
                            Err(_) => reply.error(Errno::EIO),
                        }),
                    );
                }
            }
            _ => {}
        }
        match self.namespace_attr(decoded, &self.namespace()) {
            Some((attr, ttl)) => reply.attr(&ttl, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    /// Render the status files anew (at most every 100 ms).
    fn refresh_status(self: &Arc<Self>) -> (Arc<Vec<u8>>, Arc<Vec<u8>>, SystemTime) {
        {
            let snap = self.status.lock().unwrap_or_else(|e| e.into_inner());
            if snap.at.elapsed().is_ok_and(|age| age < Duration::from_millis(100)) {
                return (snap.text.clone(), snap.json.clone(), snap.at);
            }
        }
        let report = status::Report::collect(self);
        let text = Arc::new(report.to_text().into_bytes());
        let json = Arc::new(report.to_json().into_bytes());
        let at = SystemTime::now();
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) =
            StatusSnapshot { text: text.clone(), json: json.clone(), at };
        (text, json, at)
    }

    fn readlink(self: &Arc<Self>, ino: u64, reply: ReplyData) {
        let Some(Ino::Entry { slot, index }) = Ino::decode(ino) else { return reply.error(Errno::EINVAL) };
        self.with_pack(slot, reply, move |_, pack, reply| match pack.entry(index) {
            Some(e) if e.kind == pack::Kind::Symlink => reply.data(pack.link_target(e)),
            _ => reply.error(Errno::EINVAL),
        });
    }

    /// Reads arrive by inode: the kernel sends no OPEN (see `Filesystem::open`).
    fn read(self: &Arc<Self>, ino: u64, offset: u64, size: u32, reply: ReplyData) {
        match Ino::decode(ino) {
            Some(Ino::Entry { slot, index }) => {
                self.with_pack(slot, reply, move |_, pack, reply| match pack.entry(index) {
                    Some(e) => match pack.read(e, offset, size) {
                        Ok(data) => reply.data(&data),
                        Err(err) => {
                            log::error!("reading inode {ino}: {err}");
                            reply.error(Errno::EIO)
                        }
                    },
                    None => reply.error(Errno::ESTALE),
                })
            }
            Some(Ino::Tgz { slot }) => {
                let ns = self.namespace();
                let Some(info) = ns.bundle(slot) else { return reply.error(Errno::ENOENT) };
                self.cache.with_tgz(
                    &info.id,
                    &info.entry,
                    &info.label(),
                    Box::new(move |outcome| match outcome {
                        Ok(tgz) => match tgz.bytes(offset, size) {
                            Ok(data) => reply.data(&data),
                            Err(err) => {
                                log::error!("reading inode {ino}: {err}");
                                reply.error(Errno::EIO)
                            }
                        },
                        Err(_) => reply.error(Errno::EIO),
                    }),
                );
            }
            Some(which @ (Ino::Status | Ino::StatusJson)) => {
                let snap = self.status.lock().unwrap_or_else(|e| e.into_inner());
                let bytes = if which == Ino::Status { &snap.text } else { &snap.json };
                let start = (offset as usize).min(bytes.len());
                let end = (start + size as usize).min(bytes.len());
                reply.data(&bytes[start..end]);
            }
            Some(_) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    /// Children of a namespace directory: (ino, kind, name).
    fn namespace_children(&self, dir: Ino, ns: &Namespace) -> Option<Vec<(u64, FileType, String)>> {
        Some(match dir {
            Ino::Root => {
                let mut v: Vec<_> = ns
                    .type_names()
                    .iter()
                    .map(|(n, t)| (Ino::TypeDir(*t).encode(), FileType::Directory, n.clone()))
                    .collect();
                v.push((namespace::BUNDLES_DIR, FileType::Directory, namespace::BUNDLES_NAME.to_string()));
                v.push((namespace::META_DIR, FileType::Directory, namespace::META_NAME.to_string()));
                v
            }
            Ino::MetaDir => vec![
                (namespace::STATUS, FileType::RegularFile, "status".to_string()),
                (namespace::STATUS_JSON, FileType::RegularFile, "status.json".to_string()),
            ],
            Ino::BundlesDir => ns
                .flat()
                .iter()
                .map(|(n, slot)| (Ino::Tgz { slot: *slot }.encode(), FileType::RegularFile, n.clone()))
                .collect(),
            Ino::TypeDir(t) => ns
                .type_dir(t)?
                .1
                .iter()
                .map(|(n, c)| match c {
                    TypeChild::Dir(slot) => {
                        (Ino::Entry { slot: *slot, index: 0 }.encode(), FileType::Directory, n.clone())
                    }
                    TypeChild::Tgz(slot) => (Ino::Tgz { slot: *slot }.encode(), FileType::RegularFile, n.clone()),
                })
                .collect(),
            _ => return None,
        })
    }

    fn pack_children(slot: u32, dir: u32, pack: &Pack) -> Vec<(u64, FileType, Vec<u8>, u32)> {
        pack.children(dir)
            .iter()
            .filter_map(|&c| {
                let e = pack.entry(c)?;
                let kind = match e.kind {
                    pack::Kind::Dir => FileType::Directory,
                    pack::Kind::File => FileType::RegularFile,
                    pack::Kind::Symlink => FileType::Symlink,
                };
                Some((Ino::Entry { slot, index: c }.encode(), kind, pack.name(e).to_vec(), c))
            })
            .collect()
    }

    fn readdir(self: &Arc<Self>, ino: u64, offset: u64, mut reply: ReplyDirectory) {
        let Some(dir) = Ino::decode(ino) else { return reply.error(Errno::ENOENT) };
        if let Ino::Entry { slot, index } = dir {
            return self.with_pack(slot, reply, move |_, pack, mut reply| {
                for (i, (child, kind, name, _)) in
                    Self::pack_children(slot, index, &pack).into_iter().enumerate().skip(offset as usize)
                {
                    if reply.add(INodeNo(child), i as u64 + 1, kind, OsStr::from_bytes(&name)) {
                        break;
                    }
                }
                reply.ok();
            });
        }
        let ns = self.namespace();
        let Some(children) = self.namespace_children(dir, &ns) else { return reply.error(Errno::ENOTDIR) };
        for (i, (child, kind, name)) in children.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(self: &Arc<Self>, ino: u64, offset: u64, mut reply: ReplyDirectoryPlus) {
        let Some(dir) = Ino::decode(ino) else { return reply.error(Errno::ENOENT) };
        if let Ino::Entry { slot, index } = dir {
            return self.with_pack(slot, reply, move |me, pack, mut reply| {
                for (i, (_, _, name, child)) in
                    Self::pack_children(slot, index, &pack).into_iter().enumerate().skip(offset as usize)
                {
                    let Some(attr) = me.pack_attr(slot, child, &pack) else { continue };
                    if reply.add(attr.ino, i as u64 + 1, OsStr::from_bytes(&name), &FOREVER, &attr, Generation(0)) {
                        break;
                    }
                }
                reply.ok();
            });
        }
        let ns = self.namespace();
        let Some(children) = self.namespace_children(dir, &ns) else { return reply.error(Errno::ENOTDIR) };
        for (i, (child, _, name)) in children.into_iter().enumerate().skip(offset as usize) {
            let Some((attr, ttl)) = Ino::decode(child).and_then(|c| self.namespace_attr(c, &ns)) else { continue };
            if reply.add(attr.ino, i as u64 + 1, &name, &ttl, &attr, Generation(0)) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, reply: ReplyStatfs) {
        let (used, budget, bundles, _) = self.cache.usage();
        let blocks = budget / 4096;
        let free = budget.saturating_sub(used) / 4096;
        reply.statfs(blocks, free, free, bundles as u64, 0, 4096, 255, 4096);
    }
}

/// fuser entry points: decode, then hand off to [`Inner`].
impl Filesystem for KpackFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        for cap in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
        ] {
            if let Err(e) = config.add_capabilities(cap) {
                log::debug!("kernel lacks {e:?}");
            }
        }
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        count(&self.inner.requests.lookup);
        self.inner.lookup(parent.0, name, reply);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        count(&self.inner.requests.getattr);
        self.inner.getattr(ino.0, fh.is_some(), req.pid(), reply);
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        count(&self.inner.requests.readlink);
        self.inner.readlink(ino.0, reply);
    }

    /// ENOSYS for every read-only open: the kernel then stops sending OPEN,
    /// FLUSH and RELEASE for the rest of the connection and keeps its page
    /// cache across opens. A module build opens about 2,000 headers per
    /// compile; each round trip cost about 20 µs here, 9% of a build
    /// (docs/performance.md). Reads then arrive by inode.
    fn open(&self, _req: &Request, _ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        count(&self.inner.requests.open);
        let raw = flags.0;
        if raw & libc::O_ACCMODE != libc::O_RDONLY || raw & libc::O_TRUNC != 0 {
            return reply.error(Errno::EROFS);
        }
        reply.error(Errno::ENOSYS);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        count(&self.inner.requests.read);
        self.inner.read(ino.0, offset, size, reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        count(&self.inner.requests.opendir);
        // Bundle trees never change: let the kernel keep their listings.
        let flags = match Ino::decode(ino.0) {
            Some(Ino::Entry { .. }) => FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
            _ => FopenFlags::empty(),
        };
        reply.opened(FileHandle(0), flags);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, reply: ReplyDirectory) {
        count(&self.inner.requests.readdir);
        self.inner.readdir(ino.0, offset, reply);
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, reply: ReplyDirectoryPlus) {
        count(&self.inner.requests.readdir);
        self.inner.readdirplus(ino.0, offset, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.inner.statfs(reply);
    }

    // Quiet answers for calls fuser's defaults would log on every use. ENOSYS
    // makes the kernel stop asking for the rest of the connection.
    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock: LockOwner, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    // Read-only: every kind of write gets EROFS (the mount is also "ro").
    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: fuser::ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: fuser::ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }
}
