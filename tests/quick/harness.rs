//! The filesystem core and cache in-process, over a directory source with
//! injectable faults: no FUSE, no root, no network.

use super::synthetic::{manifest_ordered, Kernel};
use kpackfs::build::{Bundles, Env};
use kpackfs::cache::{Backoff, Cache, Settings};
use kpackfs::daemon::refresh::CrawlStates;
use kpackfs::daemon::status::Status;
use kpackfs::fetch::source::{DirSource, FaultySource};
use kpackfs::fetch::{FetchConfig, Fetcher, RetryPolicy};
use kpackfs::fs::{Caller, CallerProbe, Data, DirItem, Errno, FsCore, Invalidator, Lookup, Timed};
use kpackfs::manifest::Manifest;
use kpackfs::namespace::{Current, Namespace};
use kpackfs::observe::Counters;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Callers as the tests say they are.
#[derive(Default)]
pub struct FakeCallers {
    pub dying: Mutex<HashSet<u32>>,
    pub open: Mutex<HashSet<(u32, u64)>>,
}

impl CallerProbe for FakeCallers {
    fn is_dying(&self, pid: u32) -> bool {
        self.dying.lock().unwrap().contains(&pid)
    }
    fn has_tgz_open(&self, pid: u32, ino: u64) -> bool {
        self.open.lock().unwrap().contains(&(pid, ino))
    }
}

/// Invalidations the core asked for.
#[derive(Default)]
pub struct Recorded(pub Mutex<Vec<String>>);

struct Recorder(Arc<Recorded>);

impl Invalidator for Recorder {
    fn entry(&self, parent: u64, name: &str) {
        self.0 .0.lock().unwrap().push(format!("entry {parent} {name}"));
    }
    fn inode(&self, ino: u64) {
        self.0 .0.lock().unwrap().push(format!("inode {ino}"));
    }
}

pub struct Options {
    pub budget: u64,
    pub grace: Duration,
    pub backoff: Duration,
    pub fetch: FetchConfig,
    pub with_sums: bool,
    /// The shared bundle tier, if any.
    pub remote: Option<Arc<kpackfs::remote::Remote>>,
    /// Bytes in the kbuild package every kernel shares; when set, it is
    /// listed first in each entry (so it is the oldest package of a build).
    pub shared_kbuild_bytes: Option<usize>,
    /// Fill the headers with zeros: packages of a few KB, packs of full size.
    pub zeros: bool,
}

impl Default for Options {
    fn default() -> Self {
        let fetch = FetchConfig {
            stall_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(500),
            deadline: Duration::from_secs(10),
            rate_grace: Duration::from_secs(5),
            retry: RetryPolicy { retries: 1, base: Duration::from_millis(10), max_delay: Duration::from_millis(50) },
            ..FetchConfig::default()
        };
        Options {
            budget: 1 << 30,
            grace: Duration::ZERO,
            backoff: Duration::from_millis(200),
            fetch,
            with_sums: true,
            remote: None,
            shared_kbuild_bytes: None,
            zeros: false,
        }
    }
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub kernels: Vec<Kernel>,
    pub ids: Vec<String>,
    pub manifest: Manifest,
    pub source: Arc<FaultySource>,
    pub callers: Arc<FakeCallers>,
    pub invalidations: Arc<Recorded>,
    pub cache: Arc<Cache>,
    pub core: Arc<FsCore>,
    pub opts: Options,
    runtime: tokio::runtime::Runtime,
}

/// The default caller of the tests.
pub const ME: Caller = Caller { pid: 4242 };

impl Harness {
    /// Kernels named by `unames`, each with `filler` bytes of content.
    pub fn new(unames: &[&str], filler: usize, opts: Options) -> Harness {
        let dir = tempfile::Builder::new().prefix("kpackfs-quick-").tempdir().unwrap();
        let mirror = dir.path().join("mirror");
        let kbuild = opts.shared_kbuild_bytes;
        let kernels: Vec<Kernel> =
            unames.iter().map(|u| Kernel::write_with(&mirror, u, filler, kbuild.unwrap_or(0), opts.zeros)).collect();
        let (manifest, ids) = manifest_ordered(&kernels, opts.with_sums, kbuild.is_some());
        let source = FaultySource::new(Arc::new(DirSource::new(&mirror)));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let callers = Arc::new(FakeCallers::default());
        let invalidations = Arc::new(Recorded::default());
        let (cache, core) =
            Self::open(dir.path().join("cache"), &manifest, &source, &callers, &invalidations, &opts, &runtime);
        Harness { dir, kernels, ids, manifest, source, callers, invalidations, cache, core, opts, runtime }
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        cache_dir: PathBuf,
        manifest: &Manifest,
        source: &Arc<FaultySource>,
        callers: &Arc<FakeCallers>,
        invalidations: &Arc<Recorded>,
        opts: &Options,
        runtime: &tokio::runtime::Runtime,
    ) -> (Arc<Cache>, Arc<FsCore>) {
        let settings = Settings {
            dir: cache_dir.clone(),
            budget: opts.budget,
            backoff: Backoff { base: opts.backoff, max: Duration::from_secs(300) },
            grace: opts.grace,
            min_free: kpackfs::util::FreeFloor::Bytes(0),
        };
        let counters = Arc::new(Counters::default());
        let cache = Cache::open(settings, counters.clone(), runtime.handle().clone()).unwrap();
        let fetcher = Fetcher::new(opts.fetch.clone(), cache.store().clone(), source.clone())
            .with_space_guard(cache.space_guard());
        let env = Env {
            fetcher,
            tier: opts.remote.clone(),
            limits: Default::default(),
            sandbox: Default::default(),
            image: Default::default(),
            counters: counters.clone(),
            cache: None,
        };
        let bundles = Bundles::new(cache.clone(), env);
        let current = Current::new(Namespace::build(manifest, None));
        let tier = opts.remote.as_ref().map(|r| r.url().to_string());
        let crawl = CrawlStates::open(&cache_dir);
        let status = Status::new(cache.clone(), current.clone(), crawl, counters, PathBuf::from("/quick"), tier);
        let core = FsCore::new(bundles, current, status, callers.clone());
        core.set_invalidator(Box::new(Recorder(invalidations.clone())));
        (cache, core)
    }

    /// A new cache and core over the same directory: a daemon restart.
    pub fn restart(self) -> Harness {
        self.restart_after(|_| {})
    }

    /// A restart, running `meanwhile` on the cache directory while no
    /// daemon has it open.
    pub fn restart_after(self, meanwhile: impl FnOnce(&std::path::Path)) -> Harness {
        self.cache.flush();
        let Harness { dir, kernels, ids, manifest, source, callers, invalidations, cache, core, opts, runtime } = self;
        drop(core);
        // Build tasks may still hold the old cache for a moment.
        let weak = Arc::downgrade(&cache);
        drop(cache);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while weak.strong_count() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        // The last holder may still be dropping the cache (its index closes
        // after the count reached zero): wait until the index can be opened.
        let index = dir.path().join("cache/index.redb");
        while kpackfs::cache::index::Index::open(&index).is_err() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        meanwhile(&dir.path().join("cache"));
        let (cache, core) =
            Self::open(dir.path().join("cache"), &manifest, &source, &callers, &invalidations, &opts, &runtime);
        Harness { dir, kernels, ids, manifest, source, callers, invalidations, cache, core, opts, runtime }
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// Start an operation; its answer arrives on the receiver.
    pub fn start<T: Send + 'static>(
        &self,
        op: impl FnOnce(kpackfs::fs::types::Done<T>),
    ) -> mpsc::Receiver<Result<T, Errno>> {
        let (tx, rx) = mpsc::channel();
        op(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        rx
    }

    /// Run an operation to its answer (at most 30 s).
    pub fn call<T: Send + 'static>(&self, op: impl FnOnce(kpackfs::fs::types::Done<T>)) -> Result<T, Errno> {
        self.start(op).recv_timeout(Duration::from_secs(30)).expect("an answer within 30 s")
    }

    pub fn lookup(&self, parent: u64, name: &str) -> Result<Lookup, Errno> {
        let core = self.core.clone();
        let name = name.as_bytes().to_vec();
        self.call(move |done| core.lookup(parent, &name, ME, done))
    }

    /// Walk `path` from the root, as the kernel would.
    pub fn resolve(&self, path: &str) -> Result<Timed, Errno> {
        let mut ino = 1;
        let mut last = None;
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            match self.lookup(ino, comp)? {
                Lookup::Found(t) => {
                    ino = t.attr.ino;
                    last = Some(t);
                }
                Lookup::Negative => return Err(Errno::ENOENT),
            }
        }
        match last {
            Some(t) => Ok(t),
            None => self.getattr(1, false),
        }
    }

    pub fn getattr(&self, ino: u64, from_open_file: bool) -> Result<Timed, Errno> {
        let core = self.core.clone();
        self.call(move |done| core.getattr(ino, from_open_file, ME, done))
    }

    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let core = self.core.clone();
        self.call(move |done| core.read(ino, offset, size, ME, done)).map(|d: Data| d.bytes().to_vec())
    }

    /// A whole file, read in 128 KiB requests as the kernel does.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, Errno> {
        let t = self.resolve(path)?;
        let mut out = Vec::new();
        loop {
            let chunk = self.read(t.attr.ino, out.len() as u64, 128 << 10)?;
            if chunk.is_empty() {
                return Ok(out);
            }
            out.extend(chunk);
        }
    }

    pub fn readdir_page(&self, ino: u64, offset: u64, plus: bool) -> Result<Vec<DirItem>, Errno> {
        let core = self.core.clone();
        self.call(move |done| core.readdir(ino, offset, plus, ME, done))
    }

    /// Every name in a directory, following offsets page by page.
    pub fn list(&self, path: &str) -> Result<Vec<String>, Errno> {
        let ino = self.resolve(path)?.attr.ino;
        let mut names = Vec::new();
        let mut offset = 0;
        loop {
            let page = self.readdir_page(ino, offset, false)?;
            let Some(last) = page.last() else { return Ok(names) };
            offset = last.next;
            names.extend(page.iter().map(|i| String::from_utf8(i.name.clone()).unwrap()));
        }
    }

    /// Files of kpackfs's own under the cache directory, by subdirectory.
    pub fn files_in(&self, sub: &str) -> Vec<String> {
        let dir = self.cache_dir().join(sub);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The packages stored, by sha256, each checked to hash to its name (a
    /// cut or corrupted download kept under any name fails here).
    pub fn stored_packages(&self) -> Vec<String> {
        let names = self.files_in("packages/sha256");
        for name in &names {
            let data = std::fs::read(self.cache_dir().join("packages/sha256").join(name)).unwrap();
            assert_eq!(
                &kpackfs::util::sha256_hex(&data),
                name,
                "a stored package holds other bytes than its name says"
            );
        }
        names
    }

    /// The counters status and metrics show.
    pub fn counters(&self) -> &Counters {
        self.cache.counters()
    }

    pub fn bundle_id(&self, i: usize) -> kpackfs::ids::BundleId {
        kpackfs::ids::BundleId::parse(&self.ids[i]).unwrap()
    }
}
