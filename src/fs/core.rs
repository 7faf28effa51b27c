//! The filesystem core: lookup, getattr, readlink, read, readdir and statfs
//! over the namespace and the cache, in kpackfs types.
//!
//! Every operation completes through a [`Done`] callback, at once or later:
//! when a bundle is not ready, the callback is queued with the cache's one
//! shared build and called when it ends, so no thread ever waits. Queued
//! callbacks are registered with [`Waiting`], which answers EINTR for a
//! caller that was killed meanwhile. Nothing here knows about fuser: the
//! adapter (`fuse.rs`) decodes requests and maps these answers to replies,
//! and the fast tests call the core directly.

use super::namespace::{Ino, Namespace, TypeChild, BUNDLES_NAME, BY_UNAME_NAME, META_NAME};
use super::status::Report;
use super::types::{Attr, Caller, Data, DirItem, Done, Errno, FileKind, Lookup, Statfs, Timed, FOREVER, NOW};
use super::waiting::{CallerProbe, Waiting};
use crate::cache::{Cache, Tgz};
use crate::ids::BundleId;
use crate::manifest::Manifest;
use crate::pack::{self, Pack};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// Preferred I/O size reported for .tgz files: read whole, so fewer,
/// larger reads mean fewer FUSE round trips.
const TGZ_BLKSIZE: u32 = 1 << 20;
/// Directory entries computed per readdir request: the kernel's buffer is
/// one page, about 100 plain entries or 25 with attributes (readdirplus);
/// the rest is asked for by offset. Computing more is thrown away.
const DIR_PAGE: usize = 128;
const DIR_PAGE_PLUS: usize = 32;

/// Tells the kernel to forget cached entries when the namespace grows.
pub trait Invalidator: Send + Sync {
    fn entry(&self, parent: u64, name: &str);
    fn inode(&self, ino: u64);
}

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

/// A rendered file under `/.kpackfs/`: rendered at lookup and at a getattr
/// by path (its size must be known before a read), served by read. A
/// reader's own refreshes (getattr from the open file, which the kernel
/// sends before reading past the size it has) keep its rendering, so one
/// read sequence never mixes two renderings. A new rendering gets a new
/// mtime, which makes the kernel drop its cached pages of the old one
/// (FUSE_AUTO_INVAL_DATA).
/// How long a reader's refreshes keep the rendering it started with.
const KEPT_RENDERING: Duration = Duration::from_secs(2);

#[derive(Clone, Copy)]
enum Freshness {
    /// A path walk or a stat by name: render anew.
    New,
    /// The reader's own refresh: keep what it is reading.
    Kept,
}

#[derive(Clone)]
struct Rendered {
    bytes: Arc<Vec<u8>>,
    at: SystemTime,
    made: Instant,
}

pub struct FsCore {
    cache: Arc<Cache>,
    namespace: RwLock<Arc<Namespace>>,
    rendered: Mutex<HashMap<Ino, Rendered>>,
    invalidator: OnceLock<Box<dyn Invalidator>>,
    waiting: Arc<Waiting>,
    callers: Arc<dyn CallerProbe>,
    started: Instant,
    mountpoint: PathBuf,
    manifest_note: Mutex<String>,
    /// Where `--metrics` serves, once bound (status shows it: a port of 0
    /// picks a free one).
    metrics_addr: OnceLock<String>,
    pub requests: Requests,
}

impl FsCore {
    pub fn new(
        cache: Arc<Cache>,
        namespace: Namespace,
        mountpoint: PathBuf,
        callers: Arc<dyn CallerProbe>,
    ) -> Arc<FsCore> {
        Arc::new(FsCore {
            cache,
            namespace: RwLock::new(Arc::new(namespace)),
            rendered: Mutex::default(),
            invalidator: OnceLock::new(),
            waiting: Waiting::new(callers.clone()),
            callers,
            started: Instant::now(),
            mountpoint,
            manifest_note: Mutex::new(String::new()),
            metrics_addr: OnceLock::new(),
            requests: Requests::default(),
        })
    }

    pub fn set_invalidator(&self, invalidator: Box<dyn Invalidator>) {
        let _ = self.invalidator.set(invalidator);
    }

    pub fn namespace(&self) -> Arc<Namespace> {
        self.namespace.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    pub fn waiting(&self) -> &Arc<Waiting> {
        &self.waiting
    }

    pub fn mountpoint(&self) -> &std::path::Path {
        &self.mountpoint
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// A note for status about where the manifest came from and its last refresh.
    pub fn set_manifest_note(&self, note: String) {
        *self.manifest_note.lock().unwrap_or_else(|e| e.into_inner()) = note;
    }

    pub fn set_metrics_addr(&self, addr: String) {
        let _ = self.metrics_addr.set(addr);
    }

    pub fn metrics_addr(&self) -> Option<String> {
        self.metrics_addr.get().cloned()
    }

    pub fn manifest_note(&self) -> String {
        self.manifest_note.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Serve a manifest in memory on top of the current namespace (keeping
    /// its slots); see [`FsCore::update_namespace`].
    pub fn update_manifest(&self, manifest: &Manifest) -> usize {
        let ns = Namespace::build(manifest, Some(&self.namespace()));
        self.update_namespace(ns)
    }

    /// Swap in a new namespace (built on the current one, so inode numbers
    /// stay): new bundles appear at once; the kernel's cached (negative)
    /// entries and listings of changed directories are invalidated.
    /// Returns the number of new bundles.
    pub fn update_namespace(&self, new: Namespace) -> usize {
        let old = self.namespace();
        let new = Arc::new(new);
        *self.namespace.write().unwrap_or_else(|e| e.into_inner()) = new.clone();
        let changes = new.changes_since(&old);
        if let Some(inval) = self.invalidator.get() {
            for (parent, name) in &changes.entries {
                inval.entry(*parent, name);
            }
            for dir in &changes.dirs {
                inval.inode(*dir);
            }
        }
        changes.added_bundles
    }

    fn dir_attr(ino: u64, subdirs: usize) -> Attr {
        Attr::new(ino, FileKind::Dir, 0, 0o555, 2 + subdirs as u32)
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
        let (size, ttl) = match self.cache.tgz_size(id) {
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

    /// Run `then` with the bundle's pack (after a build if needed); a
    /// failure answers EIO (the cache logs the cause once, naming the bundle).
    fn with_pack<T: Send + 'static>(
        &self,
        slot: u32,
        caller: Caller,
        done: Done<T>,
        then: impl FnOnce(Arc<Pack>) -> Result<T, Errno> + Send + 'static,
    ) {
        let ns = self.namespace();
        let Some(info) = ns.bundle(slot) else { return done(Err(Errno::ENOENT)) };
        let done = self.waiting.register(caller, done);
        self.cache.with_pack(
            info.id,
            Box::new(move || ns.spec(slot)),
            &info.label(),
            Box::new(move |outcome| match outcome {
                Ok(pack) => done(then(pack)),
                Err(_) => done(Err(Errno::EIO)),
            }),
        );
    }

    fn with_tgz<T: Send + 'static>(
        &self,
        slot: u32,
        caller: Caller,
        done: Done<T>,
        then: impl FnOnce(Arc<Tgz>) -> Result<T, Errno> + Send + 'static,
    ) {
        let ns = self.namespace();
        let Some(info) = ns.bundle(slot) else { return done(Err(Errno::ENOENT)) };
        let done = self.waiting.register(caller, done);
        self.cache.with_tgz(
            info.id,
            Box::new(move || ns.spec(slot)),
            &info.label(),
            Box::new(move |outcome| match outcome {
                Ok(tgz) => done(then(tgz)),
                Err(_) => done(Err(Errno::EIO)),
            }),
        );
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
            Ino::MetaDir => match name_str {
                "status" => Some(Ino::Status),
                "status.json" => Some(Ino::StatusJson),
                "metrics" => Some(Ino::Metrics),
                _ => None,
            },
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
                let reading = from_open_file || self.callers.has_open(caller.pid, ino);
                if self.cache.tgz_size(&id).is_none() && reading {
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

    /// Render a `/.kpackfs/` file anew (an open sees the state as it is
    /// now), or keep the current rendering for a reader that has the file
    /// open (for up to `KEPT_RENDERING`: a reader that keeps the file open
    /// sees updates).
    fn render(&self, which: Ino, freshness: Freshness) -> Rendered {
        let mut rendered = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        let keep_for = match freshness {
            Freshness::New => Duration::ZERO,
            Freshness::Kept => KEPT_RENDERING,
        };
        if let Some(r) = rendered.get(&which).filter(|r| r.made.elapsed() < keep_for) {
            return r.clone();
        }
        let report = Report::collect(self);
        let bytes = match which {
            Ino::Status => report.to_text(),
            Ino::Metrics => crate::metrics::render(&report, &self.cache.stats),
            _ => report.to_json(),
        };
        let r = Rendered { bytes: Arc::new(bytes.into_bytes()), at: SystemTime::now(), made: Instant::now() };
        rendered.insert(which, r.clone());
        r
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
                let r = self.rendered.lock().unwrap_or_else(|e| e.into_inner()).get(&which).cloned();
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
            Ino::MetaDir => vec![
                (Ino::Status.encode(), FileKind::File, "status".to_string()),
                (Ino::StatusJson.encode(), FileKind::File, "status.json".to_string()),
                (Ino::Metrics.encode(), FileKind::File, "metrics".to_string()),
            ]
            .into_iter()
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
        let page = if plus { DIR_PAGE_PLUS } else { DIR_PAGE };
        let Some(children) = self.namespace_children(dir, &ns, from, page) else { return done(Err(Errno::ENOTDIR)) };
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
        let u = self.cache.usage();
        Statfs { blocks: u.budget / 4096, free: u.budget.saturating_sub(u.used) / 4096, files: u.bundles as u64 }
    }
}
