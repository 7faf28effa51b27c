//! Getting a bundle's file: at once when it is open (the synchronous hit
//! path), else through one flight per file: the stored file checked on
//! its first use after start, or the producer the caller handed in. And
//! what producers may ask of the cache while they run (their phase,
//! package pins, a file to write in `tmp/`).

use super::artefact::{Artefact, Held, Kind};
use super::inflight::{Joined, Outcome, Phase, Waiter, Watch};
use super::{Cache, Key};
use crate::error::{BuildError, ErrorClass};
use crate::files::AtomicFile;
use crate::ids::{BundleId, Sha256};
use crate::observe::bump;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How long a build nobody waits for runs on before it is stopped: readers
/// the kernel held behind a killed one ask again within it.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How many failed builds' logs the cache keeps (each at most 16 KiB).
pub const KEPT_LOGS: usize = 256;

/// What a producer made: the artefact, and the bytes it wrote into the cache.
pub struct Produced<T> {
    pub value: Arc<T>,
    pub bytes: u64,
}

pub type Production<T> = Pin<Box<dyn Future<Output = Result<Produced<T>, BuildError>> + Send>>;

/// Makes a bundle's file when the cache has no good one; called at most
/// once per flight, on the cache's runtime.
pub type Produce<T> = Box<dyn FnOnce() -> Production<T> + Send>;

/// Packages a running build needs, kept from eviction until dropped.
pub struct Pinned {
    cache: Arc<Cache>,
    shas: Vec<Sha256>,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        self.cache.lock().pins.unpin(&self.shas);
    }
}

impl Pinned {
    /// Account for downloaded packages and pin them too (in one step, so
    /// eviction never sees them unpinned).
    pub fn add(&mut self, packages: &[(Sha256, PathBuf)]) {
        let sizes: Vec<(Sha256, u64)> =
            packages.iter().map(|(sha, path)| (*sha, std::fs::metadata(path).map_or(0, |m| m.len()))).collect();
        let mut st = self.cache.lock();
        let shas: Vec<Sha256> = sizes.iter().map(|(sha, _)| *sha).collect();
        st.pins.pin(&shas);
        for (sha, bytes) in sizes {
            st.acct.insert(Key::Package(sha), bytes);
        }
        self.shas.extend(shas);
    }
}

fn typed<T: Artefact>(waiter: Waiter<T>) -> Waiter<Held> {
    Box::new(move |outcome: Outcome<Held>| {
        waiter(outcome.and_then(|held| {
            T::unwrap(&held).ok_or_else(|| BuildError::new(ErrorClass::Internal, "the flight held another file kind"))
        }))
    })
}

impl Cache {
    /// The bundle's file if it is open: the hit path, no flight, no task.
    pub fn get<T: Artefact>(&self, id: &BundleId) -> Option<Arc<T>> {
        let mut st = self.lock();
        let value = st.loaded.get(id, T::KIND).and_then(T::unwrap)?;
        self.touch(&mut st, *id);
        drop(st);
        bump(&self.counters.hits);
        Some(value)
    }

    /// Call `waiter` with the bundle's file: at once if open, else after
    /// its one flight (the stored file checked, or `produce` run). `label`
    /// names the bundle in logs (`type/name`); `watch` says whether the
    /// waiter can leave early (a build nobody waits for is stopped).
    pub fn obtain<T: Artefact>(
        self: &Arc<Self>,
        id: BundleId,
        label: &str,
        produce: Produce<T>,
        waiter: Waiter<T>,
        watch: Watch,
    ) {
        let joined = {
            let mut st = self.lock();
            if let Some(value) = st.loaded.get(&id, T::KIND).and_then(T::unwrap) {
                self.touch(&mut st, id);
                drop(st);
                bump(&self.counters.hits);
                return waiter(Ok(value));
            }
            st.flights.join((id, T::KIND), typed(waiter), watch, Instant::now())
        };
        match joined {
            Joined::Queued => {}
            Joined::Failed(waiter, cause) => waiter(Err(cause)),
            Joined::Start => {
                let (cache, label) = (self.clone(), label.to_string());
                self.runtime.spawn(async move {
                    let result = cache.load_or_produce::<T>(id, &label, produce).await;
                    cache.finish::<T>(id, &label, result);
                });
            }
        }
    }

    /// [`Cache::obtain`] as a future.
    pub async fn obtained<T: Artefact>(
        self: &Arc<Self>,
        id: BundleId,
        label: &str,
        produce: Produce<T>,
        watch: Watch,
    ) -> Outcome<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.obtain(id, label, produce, Box::new(move |outcome| drop(tx.send(outcome))), watch);
        rx.await.map_err(|_| BuildError::new(ErrorClass::Internal, "the flight ended without an answer"))?
    }

    /// The stored file, checked, or what `produce` makes. `new_bytes` is
    /// None for a stored file (already accounted).
    async fn load_or_produce<T: Artefact>(
        self: &Arc<Self>,
        id: BundleId,
        label: &str,
        produce: Produce<T>,
    ) -> Result<(Arc<T>, Option<u64>), BuildError> {
        let path = self.path_of(&id, T::KIND);
        let (checkable, record) = {
            let st = self.lock();
            let stored = st.acct.contains(&Key::Bundle(id));
            let len = std::fs::metadata(&path).ok().map(|m| m.len()).filter(|_| stored);
            let record = st.records.get(&id).cloned();
            (T::checkable(record.as_ref(), len), record)
        };
        if checkable {
            self.set_phase(id, Phase::Verifying);
            let started = Instant::now();
            let p = path.clone();
            match crate::cpu::run(1, move |_| T::open_checked(&p, &id, record.as_ref())).await {
                Ok(value) => {
                    log::debug!(
                        "checked the cached {label}{} in {:.1} ms",
                        T::KIND.suffix(),
                        started.elapsed().as_secs_f64() * 1000.0
                    );
                    if T::KIND == Kind::Pack {
                        bump(&self.counters.hits);
                    }
                    return Ok((Arc::new(value), None));
                }
                Err(e) => self.discard(id, T::KIND, &e),
            }
        }
        if T::KIND == Kind::Pack {
            bump(&self.counters.misses);
        }
        let produced = produce().await?;
        Ok((produced.value, Some(produced.bytes)))
    }

    fn finish<T: Artefact>(&self, id: BundleId, label: &str, result: Result<(Arc<T>, Option<u64>), BuildError>) {
        let mut persist = false;
        let (waiters, outcome) = {
            let mut st = self.lock();
            let stopped = st.flights.cancel_token(&(id, T::KIND)).is_some_and(|c| c.load(Ordering::SeqCst));
            let outcome: Outcome<Held> = match result {
                Ok((value, new_bytes)) => {
                    if let Some(bytes) = new_bytes {
                        let key = Key::Bundle(id);
                        // A pack is the bundle's first file; a .tgz joins it.
                        let total = match T::KIND {
                            Kind::Pack => bytes,
                            Kind::Tgz => st.acct.size_of(&key).unwrap_or(0) + bytes,
                        };
                        if st.acct.contains(&key) {
                            st.acct.resize(&key, total);
                        } else {
                            st.acct.insert(key, total);
                        }
                    }
                    if value.record(st.records.entry(id).or_default()) {
                        st.dirty.insert(id);
                        persist = true;
                    }
                    let held = T::wrap(value);
                    st.loaded.set(id, T::KIND, held.clone());
                    self.touch(&mut st, id);
                    Ok(Arc::new(held))
                }
                Err(e) if stopped => {
                    log::info!("bundle {label}{}: stopped, nobody waits for it any more", T::KIND.suffix());
                    Err(e)
                }
                Err(e) => {
                    if T::KIND == Kind::Pack {
                        self.counters.failed(e.class);
                    }
                    log::error!(
                        "bundle {label}{}: {} ({})",
                        T::KIND.suffix(),
                        crate::util::printable(e.message()),
                        e.class
                    );
                    Err(e)
                }
            };
            let done = outcome.as_ref().map(|_| ()).map_err(Clone::clone);
            let (waiters, _) = st.flights.finish((id, T::KIND), &done, Instant::now());
            self.evict_over_budget(&mut st);
            (waiters, outcome)
        };
        // A .tgz's size must survive a crash: persist now.
        if persist {
            self.flush();
        }
        for w in waiters {
            w(outcome.clone());
        }
    }

    /// Stop the builds nobody has waited for during [`STOP_GRACE`] (their
    /// callers were killed): a bundle's build is wanted while a caller of
    /// its pack or its .tgz still waits, or a client that stays (serve's).
    pub fn cancel_unwanted(&self) -> usize {
        self.cancel_unwanted_as_of(Instant::now())
    }

    /// [`Cache::cancel_unwanted`] with the clock at `now`.
    pub fn cancel_unwanted_as_of(&self, now: Instant) -> usize {
        let told = self.lock().flights.cancel_unwanted(|(id, _)| *id, now, STOP_GRACE);
        for (id, kind) in &told {
            log::info!("cache: bundle {id}{}: every reader left; stopping its build", kind.suffix());
        }
        told.len()
    }

    /// The flag that stops the bundle's running build (its pack's flight).
    pub fn cancel_token(&self, id: &BundleId) -> Option<Arc<AtomicBool>> {
        self.lock().flights.cancel_token(&(*id, Kind::Pack))
    }

    /// What a running flight of the bundle is doing (status shows it).
    pub fn set_phase(&self, id: BundleId, phase: Phase) {
        let mut st = self.lock();
        st.flights.set_phase((id, Kind::Pack), phase);
        st.flights.set_phase((id, Kind::Tgz), phase);
    }

    /// Pin packages the store already has, before looking for them:
    /// eviction, run by any other build meanwhile, must not remove one
    /// between the store's lookup and the extraction.
    pub fn pin(self: &Arc<Self>, shas: Vec<Sha256>) -> Pinned {
        self.lock().pins.pin(&shas);
        Pinned { cache: self.clone(), shas }
    }

    /// A new file for the bundle's `kind`, written in `tmp/` and renamed
    /// into place by its commit.
    pub fn new_file(&self, id: &BundleId, kind: Kind) -> anyhow::Result<AtomicFile> {
        AtomicFile::create_in(&self.path_of(id, kind), &self.tmp_dir)
    }

    /// Keep the log of a failed build (`logs/<id>.log`, replacing an older
    /// one), and only the newest [`KEPT_LOGS`]. Returns where it is.
    pub fn keep_log(&self, id: &BundleId, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.logs_dir.join(format!("{id}.log"));
        crate::util::write_atomic(&path, text.as_bytes())?;
        let mut logs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&self.logs_dir)?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if logs.len() > KEPT_LOGS {
            logs.sort();
            for (_, old) in &logs[..logs.len() - KEPT_LOGS] {
                let _ = std::fs::remove_file(old);
            }
        }
        Ok(path)
    }

    /// Forget a bundle's failure log once it builds.
    pub fn forget_log(&self, id: &BundleId) {
        let _ = std::fs::remove_file(self.logs_dir.join(format!("{id}.log")));
    }

    /// A private scratch directory under `tmp/` (removed on drop).
    pub fn scratch(&self, prefix: &str) -> anyhow::Result<tempfile::TempDir> {
        crate::files::private_temp_dir(&self.tmp_dir, prefix)
    }

    /// Forget a damaged stored file: off the books and off the disk. A
    /// damaged pack takes its .tgz with it (the .tgz is made from it).
    fn discard(&self, id: BundleId, kind: Kind, cause: &anyhow::Error) {
        let what = match kind {
            Kind::Pack => "pack",
            Kind::Tgz => ".tgz",
        };
        log::warn!("cache: bundle {id}: the cached {what} is damaged ({cause:#}); it will be rebuilt");
        bump(&self.counters.damaged);
        let mut st = self.lock();
        st.acct.remove(&Key::Bundle(id));
        st.loaded.unload(&id);
        let _ = crate::files::remove_file_if_exists(&self.tgz_path(&id));
        if kind == Kind::Pack {
            let _ = crate::files::remove_file_if_exists(&self.pack_path(&id));
        } else if let Some(bytes) = std::fs::metadata(self.pack_path(&id)).ok().map(|m| m.len()) {
            st.acct.insert(Key::Bundle(id), bytes);
        }
    }
}
