//! The filesystem core: lookup, getattr, readlink, read, readdir and statfs
//! over the namespace and the bundles, in kpackfs types.
//!
//! Every operation completes through a [`Done`] callback, at once or later:
//! when a bundle is not ready, the callback is queued with the cache's one
//! shared build and called when it ends, so no thread ever waits. Queued
//! callbacks are registered with [`Waiting`], which answers EINTR for a
//! caller that was killed meanwhile. A failed build answers the errno of
//! its class (`error::ErrorClass::errno`). Nothing here knows about fuser:
//! the adapter (`fuse.rs`) decodes requests and maps these answers to
//! replies, and the fast tests call the core directly.

use super::ino::{Ino, META_NAME};
use super::meta::{Freshness, FsFacts, MetaFile, MetaFiles, Renderings};
use super::types::{Attr, Caller, Data, DirItem, Done, Errno, FileKind, Lookup, Requests, Statfs, Timed, FOREVER, NOW};
use super::waiting::{CallerProbe, Waiting};
use crate::build::cached::{Buildable, SpecFn};
use crate::build::Bundles;
use crate::cache::Tgz;
use crate::ids::BundleId;
use crate::manifest::Manifest;
use crate::namespace::{Changes, Current, Namespace, TypeChild, BUNDLES_NAME, BY_UNAME_NAME};
use crate::pack::{self, Pack};
use std::sync::{Arc, OnceLock};

/// Preferred I/O size reported for .tgz files: read whole, so fewer,
/// larger reads mean fewer FUSE round trips.
const TGZ_BLKSIZE: u32 = 1 << 20;
/// Preferred I/O size reported for namespace directories (the root, type
/// directories, bundles/, by-uname/): glibc sizes its getdents buffer by the
/// directory's st_blksize (32 KiB to 1 MiB), and the kernel asks for as much
/// in one READDIRPLUS (up to 256 pages), so a 100,000-bundle directory lists
/// in ~40 requests instead of ~6,000 (docs/performance.md).
const NAMESPACE_DIR_BLKSIZE: u32 = 1 << 20;
/// Entries computed per readdir request of a namespace directory: what a
/// 1 MiB buffer holds with attributes (~160 bytes each at the least); the
/// rest is asked for by offset, whatever did not fit is thrown away.
const NAMESPACE_DIR_PAGE: usize = 6600;
/// The same for bundle trees (32 KiB buffers: ~1,000 plain entries or ~200
/// with attributes).
const DIR_PAGE: usize = 1024;
const DIR_PAGE_PLUS: usize = 256;

/// Tells the kernel to forget cached entries when the namespace grows.
pub trait Invalidator: Send + Sync {
    fn entry(&self, parent: u64, name: &str);
    fn inode(&self, ino: u64);
}

pub struct FsCore {
    bundles: Arc<Bundles>,
    namespace: Arc<Current>,
    meta: Arc<dyn MetaFiles>,
    rendered: Renderings,
    invalidator: OnceLock<Box<dyn Invalidator>>,
    waiting: Arc<Waiting>,
    callers: Arc<dyn CallerProbe>,
    pub requests: Requests,
}

impl FsCore {
    pub fn new(
        bundles: Arc<Bundles>,
        namespace: Arc<Current>,
        meta: Arc<dyn MetaFiles>,
        callers: Arc<dyn CallerProbe>,
    ) -> Arc<FsCore> {
        Arc::new(FsCore {
            bundles,
            namespace,
            meta,
            rendered: Renderings::default(),
            invalidator: OnceLock::new(),
            waiting: Waiting::new(callers.clone()),
            callers,
            requests: Requests::default(),
        })
    }

    pub fn set_invalidator(&self, invalidator: Box<dyn Invalidator>) {
        let _ = self.invalidator.set(invalidator);
    }

    pub fn namespace(&self) -> Arc<Namespace> {
        self.namespace.get()
    }

    pub fn bundles(&self) -> &Arc<Bundles> {
        &self.bundles
    }

    pub fn waiting(&self) -> &Arc<Waiting> {
        &self.waiting
    }

    /// Let go of killed callers (EINTR), then stop the builds nobody has
    /// waited for since the cache's grace. Returns how many callers were let go.
    pub fn sweep(&self) -> usize {
        let released = self.waiting.sweep();
        self.bundles.cache().cancel_unwanted();
        released
    }

    /// Serve a manifest in memory on top of the current namespace (keeping
    /// its slots); see [`FsCore::update_namespace`].
    pub fn update_manifest(&self, manifest: &Manifest) -> usize {
        let ns = Namespace::build(manifest, Some(&self.namespace()));
        self.update_namespace(ns)
    }

    /// Swap in a new namespace (built on the current one, so inode numbers
    /// stay) and invalidate what changed. Returns the number of new bundles.
    pub fn update_namespace(&self, new: Namespace) -> usize {
        let changes = self.namespace.replace(new);
        self.invalidate(&changes);
        changes.added_bundles
    }

    /// New bundles appear at once: the kernel's cached (negative) entries
    /// and listings of changed directories are invalidated.
    pub fn invalidate(&self, changes: &Changes) {
        if let Some(inval) = self.invalidator.get() {
            for (parent, name) in &changes.entries {
                inval.entry(Ino::from(*parent).encode(), name);
            }
            for dir in &changes.dirs {
                inval.inode(Ino::from(*dir).encode());
            }
        }
    }

    fn dir_attr(ino: u64, subdirs: usize) -> Attr {
        let mut attr = Attr::new(ino, FileKind::Dir, 0, 0o555, 2 + subdirs as u32);
        attr.blksize = NAMESPACE_DIR_BLKSIZE;
        attr
    }

    /// The bundle directory before (and after) it is built: nothing about
    /// it needs the packages. nlink 1 means "unknown" to tools like find.
    fn bundle_dir_attr(slot: u32) -> Attr {
        Attr::new(Ino::Node { slot, index: 0 }.encode(), FileKind::Dir, 0, 0o755, 1)
    }

    /// The .tgz: exact size once built (kept after eviction); before that,
    /// size 0 with a zero TTL so the size is asked again after the build.
    fn tgz_attr(&self, slot: u32, id: &BundleId) -> Timed {
        let ino = Ino::Tgz { slot }.encode();
        let (size, ttl) = match self.bundles.cache().tgz_size(id) {
            Some(size) => (size, FOREVER),
            None => (0, NOW),
        };
        let mut attr = Attr::new(ino, FileKind::File, size, 0o444, 2);
        attr.blksize = TGZ_BLKSIZE;
        Timed { attr, ttl }
    }

    fn pack_attr(slot: u32, index: u32, pack: &Pack) -> Option<Attr> {
        if index == 0 {
            return Some(Self::bundle_dir_attr(slot));
        }
        let e = pack.entry(index)?;
        let ino = Ino::Node { slot, index }.encode();
        Some(match e.kind {
            pack::Kind::Dir => Attr::new(ino, FileKind::Dir, 0, e.mode, 2 + e.subdirs),
            pack::Kind::File => Attr::new(ino, FileKind::File, e.size, e.mode, 1),
            pack::Kind::Symlink => Attr::new(ino, FileKind::Symlink, e.size, 0o777, 1),
        })
    }

    /// Attributes of anything outside bundle trees; `None` if it does not exist.
    fn namespace_attr(&self, ino: Ino, ns: &Namespace) -> Option<Timed> {
        let raw = ino.encode();
        let forever = |attr| Some(Timed { attr, ttl: FOREVER });
        match ino {
            Ino::Root => forever(Self::dir_attr(raw, ns.type_count() + 3)),
            Ino::BundlesDir | Ino::MetaDir | Ino::ByUnameDir => forever(Self::dir_attr(raw, 0)),
            Ino::UnameLink { slot } => {
                let target = ns.uname_target(slot)?;
                forever(Attr::new(raw, FileKind::Symlink, target.len() as u64, 0o777, 1))
            }
            Ino::Status | Ino::StatusJson | Ino::Metrics => {
                Some(Timed { attr: Attr::new(raw, FileKind::File, 0, 0o444, 1), ttl: NOW })
            }
            Ino::TypeDir(t) => forever(Self::dir_attr(raw, ns.type_len(t)? / 2)),
            Ino::Tgz { slot } => Some(self.tgz_attr(slot, &ns.id(slot)?)),
            Ino::Node { slot, index: 0 } => {
                ns.id(slot)?;
                forever(Self::bundle_dir_attr(slot))
            }
            Ino::Node { .. } => None,
        }
    }

    /// Run `then` with the bundle's file (after a build if needed); a
    /// failure answers its class's errno (the cache logs the cause once,
    /// naming the bundle).
    fn with<A: Buildable, T: Send + 'static>(
        &self,
        slot: u32,
        caller: Caller,
        done: Done<T>,
        then: impl FnOnce(Arc<A>) -> Result<T, Errno> + Send + 'static,
    ) {
        let ns = self.namespace();
        let Some(id) = ns.id(slot) else { return done(Err(Errno::ENOENT)) };
        // The hit path: no registration, no allocation.
        if let Some(file) = self.bundles.get::<A>(&id) {
            return done(then(file));
        }
        let Some(info) = ns.bundle(slot) else { return done(Err(Errno::ENOENT)) };
        let (done, watch) = self.waiting.register(caller, done);
        let spec: SpecFn = Box::new(move || ns.spec(slot));
        self.bundles.obtain::<A>(
            info.id,
            &info.label(),
            spec,
            Box::new(move |outcome| match outcome {
                Ok(file) => done(then(file)),
                Err(e) => done(Err(Errno(e.errno()))),
            }),
            watch,
        );
    }

    fn with_pack<T: Send + 'static>(
        &self,
        slot: u32,
        caller: Caller,
        done: Done<T>,
        then: impl FnOnce(Arc<Pack>) -> Result<T, Errno> + Send + 'static,
    ) {
        self.with::<Pack, T>(slot, caller, done, then)
    }

    fn with_tgz<T: Send + 'static>(
        &self,
        slot: u32,
        caller: Caller,
        done: Done<T>,
        then: impl FnOnce(Arc<Tgz>) -> Result<T, Errno> + Send + 'static,
    ) {
        self.with::<Tgz, T>(slot, caller, done, then)
    }

    pub fn lookup(&self, parent: u64, name: &[u8], caller: Caller, done: Done<Lookup>) {
        let Some(parent) = Ino::decode(parent) else { return done(Err(Errno::ENOENT)) };
        let ns = self.namespace();
        let name_str = std::str::from_utf8(name).unwrap_or("");
        let found: Option<Ino> = match parent {
            Ino::Root => match name_str {
                BUNDLES_NAME => Some(Ino::BundlesDir),
                META_NAME => Some(Ino::MetaDir),
                BY_UNAME_NAME => Some(Ino::ByUnameDir),
                n => ns.type_by_name(n).map(Ino::TypeDir),
            },
            Ino::ByUnameDir => ns.uname_child(name_str).map(|slot| Ino::UnameLink { slot }),
            Ino::MetaDir => MetaFile::by_name(name_str).map(Ino::from),
            Ino::BundlesDir => ns.flat_child(name_str).map(|slot| Ino::Tgz { slot }),
            Ino::TypeDir(t) => ns.type_child(t, name_str).map(|c| match c {
                TypeChild::Dir(slot) => Ino::Node { slot, index: 0 },
                TypeChild::Tgz(slot) => Ino::Tgz { slot },
            }),
            Ino::Node { slot, index } => {
                let name = name.to_vec();
                return self.with_pack(slot, caller, done, move |pack| match pack.lookup(index, &name) {
                    Some(child) => match Self::pack_attr(slot, child, &pack) {
                        Some(attr) => Ok(Lookup::Found(Timed { attr, ttl: FOREVER })),
                        None => Err(Errno::EIO),
                    },
                    None => Ok(Lookup::Negative),
                });
            }
            Ino::Status | Ino::StatusJson | Ino::Metrics | Ino::Tgz { .. } | Ino::UnameLink { .. } => {
                return done(Err(Errno::ENOTDIR))
            }
        };
        if let Some(which @ (Ino::Status | Ino::StatusJson | Ino::Metrics)) = found {
            // A path walk to a status file: what an open is about to read.
            return done(Ok(Lookup::Found(self.rendered_attr(which, Freshness::New))));
        }
        // Namespace directories change only on a manifest refresh, which
        // invalidates these negative entries.
        done(Ok(match found.and_then(|ino| self.namespace_attr(ino, &ns)) {
            Some(timed) => Lookup::Found(timed),
            None => Lookup::Negative,
        }))
    }

    /// `from_open_file`: the kernel refreshes a file's attributes with a
    /// file handle before reading past its cached size.
    pub fn getattr(&self, ino: u64, from_open_file: bool, caller: Caller, done: Done<Timed>) {
        let Some(decoded) = Ino::decode(ino) else { return done(Err(Errno::ENOENT)) };
        match decoded {
            Ino::Node { slot, index } if index > 0 => {
                return self.with_pack(slot, caller, done, move |pack| match Self::pack_attr(slot, index, &pack) {
                    Some(attr) => Ok(Timed { attr, ttl: FOREVER }),
                    None => Err(Errno::ESTALE),
                });
            }
            Ino::Status | Ino::StatusJson | Ino::Metrics => {
                let freshness = if from_open_file { Freshness::Kept } else { Freshness::New };
                return done(Ok(self.rendered_attr(decoded, freshness)));
            }
            Ino::Tgz { slot } => {
                let Some(id) = self.namespace().id(slot) else { return done(Err(Errno::ENOENT)) };
                // A .tgz that was never built reads as size 0 to stat and ls
                // (which never build). A reader that has it open needs the
                // real size first: cp and tar read past the cached size
                // (from_open_file), rsync and Python fstat the open file.
                let reading = from_open_file || self.callers.has_tgz_open(caller.pid, ino);
                if self.bundles.cache().tgz_size(&id).is_none() && reading {
                    return self.with_tgz(slot, caller, done, move |tgz| {
                        let mut attr = Attr::new(ino, FileKind::File, tgz.size, 0o444, 2);
                        attr.blksize = TGZ_BLKSIZE;
                        Ok(Timed { attr, ttl: FOREVER })
                    });
                }
            }
            _ => {}
        }
        done(self.namespace_attr(decoded, &self.namespace()).ok_or(Errno::ENOENT))
    }

    /// A status file's attributes, from a rendering as fresh as asked.
    fn rendered_attr(&self, which: Ino, freshness: Freshness) -> Timed {
        let r = self.render(which, freshness);
        let mut attr = Attr::new(which.encode(), FileKind::File, r.bytes.len() as u64, 0o444, 1);
        attr.mtime = r.at;
        Timed { attr, ttl: NOW }
    }

    fn render(&self, which: Ino, freshness: Freshness) -> super::meta::Rendered {
        let file = which.meta_file().unwrap_or(MetaFile::Status);
        self.rendered.render(file, freshness, || {
            self.meta.render(file, &FsFacts { requests: &self.requests, waiting: self.waiting.len() })
        })
    }

    pub fn readlink(&self, ino: u64, caller: Caller, done: Done<Vec<u8>>) {
        if let Some(Ino::UnameLink { slot }) = Ino::decode(ino) {
            // Known from the manifest: nothing is built.
            return done(self.namespace().uname_target(slot).map(String::into_bytes).ok_or(Errno::ENOENT));
        }
        let Some(Ino::Node { slot, index }) = Ino::decode(ino) else { return done(Err(Errno::EINVAL)) };
        self.with_pack(slot, caller, done, move |pack| match pack.entry(index) {
            Some(e) if e.kind == pack::Kind::Symlink => Ok(pack.link_target(e).to_vec()),
            _ => Err(Errno::EINVAL),
        });
    }

    /// Reads arrive by inode: the kernel sends no OPEN (see the adapter).
    pub fn read(&self, ino: u64, offset: u64, size: u32, caller: Caller, done: Done<Data>) {
        match Ino::decode(ino) {
            Some(Ino::Node { slot, index }) => {
                self.with_pack(slot, caller, done, move |pack| match pack.entry(index) {
                    Some(e) if e.kind == pack::Kind::File => {
                        pack.read(e, offset, size).map(Data::Owned).map_err(|err| {
                            log::error!("reading inode {ino}: {err}");
                            Errno::EIO
                        })
                    }
                    Some(e) if e.kind == pack::Kind::Dir => Err(Errno::EISDIR),
                    Some(_) => Err(Errno::EINVAL),
                    None => Err(Errno::ESTALE),
                })
            }
            Some(Ino::Tgz { slot }) => {
                self.with_tgz(slot, caller, done, move |tgz| {
                    if offset == 0 {
                        tgz.advise_sequential();
                    }
                    if tgz.is_mapped() {
                        let range = tgz.range(offset, size);
                        return Ok(Data::Mapped(tgz, range));
                    }
                    tgz.read(offset, size).map(Data::Owned).map_err(|err| {
                        log::error!("reading inode {ino}: {err}");
                        Errno::EIO
                    })
                });
            }
            Some(which @ (Ino::Status | Ino::StatusJson | Ino::Metrics)) => {
                let r = which.meta_file().and_then(|f| self.rendered.current(f));
                let r = r.unwrap_or_else(|| self.render(which, Freshness::Kept));
                let start = (offset as usize).min(r.bytes.len());
                let end = start.saturating_add(size as usize).min(r.bytes.len());
                done(Ok(Data::Shared(r.bytes, start..end)))
            }
            Some(_) => done(Err(Errno::EISDIR)),
            None => done(Err(Errno::ENOENT)),
        }
    }

    /// Children of a namespace directory from position `from`: (ino, kind, name).
    fn namespace_children(
        &self,
        dir: Ino,
        ns: &Namespace,
        from: usize,
        page: usize,
    ) -> Option<Vec<(u64, FileKind, String)>> {
        Some(match dir {
            Ino::Root => {
                let mut v: Vec<_> =
                    ns.type_names().into_iter().map(|(n, t)| (Ino::TypeDir(t).encode(), FileKind::Dir, n)).collect();
                v.push((Ino::BundlesDir.encode(), FileKind::Dir, BUNDLES_NAME.to_string()));
                v.push((Ino::ByUnameDir.encode(), FileKind::Dir, BY_UNAME_NAME.to_string()));
                v.push((Ino::MetaDir.encode(), FileKind::Dir, META_NAME.to_string()));
                v.into_iter().skip(from).collect()
            }
            Ino::MetaDir => MetaFile::ALL
                .iter()
                .map(|(file, name)| (Ino::from(*file).encode(), FileKind::File, name.to_string()))
                .skip(from)
                .collect(),
            Ino::ByUnameDir => ns
                .uname_children(from, page)
                .into_iter()
                .map(|(n, slot)| (Ino::UnameLink { slot }.encode(), FileKind::Symlink, n))
                .collect(),
            Ino::BundlesDir => ns
                .flat_children(from, page)
                .into_iter()
                .map(|(n, slot)| (Ino::Tgz { slot }.encode(), FileKind::File, n))
                .collect(),
            Ino::TypeDir(t) => ns
                .type_children(t, from, page)?
                .into_iter()
                .map(|(n, c)| match c {
                    TypeChild::Dir(slot) => (Ino::Node { slot, index: 0 }.encode(), FileKind::Dir, n),
                    TypeChild::Tgz(slot) => (Ino::Tgz { slot }.encode(), FileKind::File, n),
                })
                .collect(),
            _ => return None,
        })
    }

    fn pack_children(slot: u32, dir: u32, pack: &Pack, from: usize, plus: bool) -> Vec<DirItem> {
        pack.children(dir)
            .iter()
            .enumerate()
            .skip(from)
            .take(if plus { DIR_PAGE_PLUS } else { DIR_PAGE })
            .filter_map(|(i, &c)| {
                let e = pack.entry(c)?;
                let kind = match e.kind {
                    pack::Kind::Dir => FileKind::Dir,
                    pack::Kind::File => FileKind::File,
                    pack::Kind::Symlink => FileKind::Symlink,
                };
                let attr =
                    if plus { Some(Timed { attr: Self::pack_attr(slot, c, pack)?, ttl: FOREVER }) } else { None };
                Some(DirItem {
                    ino: Ino::Node { slot, index: c }.encode(),
                    next: i as u64 + 1,
                    kind,
                    name: pack.name(e).to_vec(),
                    attr,
                })
            })
            .collect()
    }

    /// A page of the directory's entries after `offset` (0: the start);
    /// with `plus`, each with its attribute (readdirplus).
    pub fn readdir(&self, ino: u64, offset: u64, plus: bool, caller: Caller, done: Done<Vec<DirItem>>) {
        let Some(dir) = Ino::decode(ino) else { return done(Err(Errno::ENOENT)) };
        let from = usize::try_from(offset).unwrap_or(usize::MAX);
        if let Ino::Node { slot, index } = dir {
            return self.with_pack(slot, caller, done, move |pack| match pack.entry(index).map(|e| e.kind) {
                Some(pack::Kind::Dir) => Ok(Self::pack_children(slot, index, &pack, from, plus)),
                Some(_) => Err(Errno::ENOTDIR),
                None => Err(Errno::ESTALE),
            });
        }
        let ns = self.namespace();
        let Some(children) = self.namespace_children(dir, &ns, from, NAMESPACE_DIR_PAGE) else {
            return done(Err(Errno::ENOTDIR));
        };
        let items = children
            .into_iter()
            .enumerate()
            .filter_map(|(i, (child, kind, name))| {
                let attr = if plus { Some(self.namespace_attr(Ino::decode(child)?, &ns)?) } else { None };
                Some(DirItem { ino: child, next: (from + i) as u64 + 1, kind, name: name.into_bytes(), attr })
            })
            .collect();
        done(Ok(items))
    }

    pub fn statfs(&self) -> Statfs {
        let u = self.bundles.cache().usage();
        Statfs { blocks: u.budget / 4096, free: u.budget.saturating_sub(u.used) / 4096, files: u.bundles as u64 }
    }
}
