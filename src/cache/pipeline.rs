//! How the cache obtains a bundle's files: a cached file is checked against
//! its digest the first time it is used after start; a missing or damaged
//! one is built: download → verify → extract → lay out → pack, and
//! pack → .tgz. Every output is written under `tmp/` and renamed into place
//! only when complete and synced.

use super::{Cache, Key, Phase, Tgz};
use crate::assemble::{self, PackageFile};
use crate::files::AtomicFile;
use crate::ids::{BundleId, Sha256};
use crate::manifest::BundleSpec;
use crate::pack::Pack;
use anyhow::{anyhow, Context, Result};
use std::sync::Arc;

/// A file obtained for the cache; `new_bytes` when it was written just now.
pub(super) struct Obtained<T> {
    pub value: Arc<T>,
    pub new_bytes: Option<u64>,
}

/// Run CPU-bound work on a blocking thread under a CPU lease.
async fn on_cpu<T: Send + 'static>(work: impl FnOnce(usize) -> Result<T> + Send + 'static) -> Result<T> {
    on_cpus(crate::cpu::cores(), work).await
}

/// As [`on_cpu`], leasing at most `want` threads: single-threaded work
/// must not hold the other cores.
async fn on_cpus<T: Send + 'static>(want: usize, work: impl FnOnce(usize) -> Result<T> + Send + 'static) -> Result<T> {
    crate::cpu::run(want, work).await
}

/// A cache job's outcome as a future: `start` hands the job its waiter.
async fn awaited<T: Send + Sync + 'static>(
    what: &str,
    start: impl FnOnce(super::inflight::Waiter<T>),
) -> Result<Arc<T>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    start(Box::new(move |outcome| {
        let _ = tx.send(outcome);
    }));
    rx.await.map_err(|_| anyhow!("the {what} job ended without an answer"))?.map_err(|cause| anyhow!("{cause}"))
}

impl Cache {
    pub(super) async fn obtain_pack(
        self: &Arc<Self>,
        id: BundleId,
        spec: &BundleSpec,
        label: &str,
    ) -> Result<Obtained<Pack>> {
        let on_disk = self.lock().acct.contains(&Key::Bundle(id));
        if on_disk {
            self.set_phase(id, Phase::Verifying);
            let path = self.pack_path(&id);
            let started = std::time::Instant::now();
            let opened = crate::cpu::run(1, move |_| Pack::open_verified_as(&path, &id)).await;
            match opened {
                Ok(pack) => {
                    log::debug!(
                        "checked the cached pack of {label} ({}) in {:.1} ms",
                        crate::util::human_bytes(pack.file_bytes),
                        started.elapsed().as_secs_f64() * 1000.0
                    );
                    super::bump(&self.stats.hits);
                    return Ok(Obtained { value: Arc::new(pack), new_bytes: None });
                }
                Err(e) => self.discard_bundle(id, "pack", &e),
            }
        }
        super::bump(&self.stats.misses);
        let started = std::time::Instant::now();
        if let Some((pack, bytes)) = self.from_remote(id, label).await {
            self.stats.timings.observe("remote", started.elapsed());
            log::info!(
                "installed bundle {label} from the remote tier: {} in {:.2}s",
                crate::util::human_bytes(bytes),
                started.elapsed().as_secs_f64()
            );
            return Ok(Obtained { value: pack, new_bytes: Some(bytes) });
        }
        let downloaded_before = self.stats.downloaded_bytes.load(std::sync::atomic::Ordering::Relaxed);
        let (pack, bytes, phases) = match self.build_pack(id, spec).await {
            Ok(built) => built,
            Err(e) => {
                // Waiting hosts build it themselves rather than wait out the claim.
                if let Some(remote) = &self.settings.remote {
                    remote.release(&id).await;
                }
                return Err(e);
            }
        };
        super::bump(&self.stats.builds);
        // Approximate under concurrent builds: the counter is shared.
        let downloaded =
            self.stats.downloaded_bytes.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(downloaded_before);
        log::info!(
            "built bundle {label} from {} package(s) ({} downloaded): {} in {:.2}s (fetch {:.2}s, extract {:.2}s)",
            spec.packages.len(),
            crate::util::human_bytes(downloaded),
            crate::util::human_bytes(bytes),
            started.elapsed().as_secs_f64(),
            phases.0.as_secs_f64(),
            phases.1.as_secs_f64()
        );
        self.write_back_later(id, Arc::new(spec.clone()), label);
        Ok(Obtained { value: pack, new_bytes: Some(bytes) })
    }

    /// The bundle from the remote tier, verified and installed as if built
    /// here; None (after one log line, and a backoff on failure) when the
    /// tier lacks it, is unusable, or serves something wrong.
    async fn from_remote(self: &Arc<Self>, id: BundleId, label: &str) -> Option<(Arc<Pack>, u64)> {
        let remote = self.settings.remote.clone()?;
        let now = std::time::Instant::now();
        if !remote.health.can_read(now) {
            return None;
        }
        self.set_phase(id, Phase::Remote);
        let limit = self.settings.limits.max_total_bytes;
        let result = match remote.fetch_or_claim(&id, &self.tmp_dir, limit).await {
            Ok(crate::remote::Lookup::Build) => {
                remote.health.read_worked();
                return None;
            }
            Ok(crate::remote::Lookup::Found(fetched)) => {
                let cache = self.clone();
                // gunzip and one pass over the tree: one thread.
                on_cpus(1, move |_| cache.install_remote(id, fetched)).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(installed) => {
                remote.health.read_worked();
                super::bump(&self.stats.remote_hits);
                Some(installed)
            }
            Err(e) => {
                let wait = remote.health.read_failed(now);
                super::bump(&self.stats.remote_errors);
                log::warn!(
                    "bundle {label}: remote tier {}: {e:#}; building it from packages (the tier is skipped for {}s)",
                    remote.url(),
                    wait.as_secs()
                );
                None
            }
        }
    }

    /// Check a fetched .tgz (a hostile input: read by the tarball reader
    /// under the bundle limits; its BUNDLE_CHECKSUM must be the id), make
    /// its pack, and install both. Returns the pack and the bytes added.
    fn install_remote(&self, id: BundleId, fetched: crate::remote::Fetched) -> Result<(Arc<Pack>, u64)> {
        let installed = (|| -> Result<(Arc<Pack>, u64)> {
            let tree = crate::remote::verify_bundle(&fetched.path, &id, self.settings.limits)?;
            let dest = self.pack_path(&id);
            let mut out = AtomicFile::create_in(&dest, &self.tmp_dir)?;
            let pack_bytes = crate::pack::write(&tree, std::io::BufWriter::with_capacity(1 << 20, out.file()))
                .context("writing the pack")?;
            out.commit().context("installing the pack")?;
            let pack = Pack::open(&dest)?;
            let tgz = self.tgz_path(&id);
            std::fs::rename(&fetched.path, &tgz).with_context(|| format!("installing {}", tgz.display()))?;
            let mut st = self.lock();
            let record = st.records.entry(id).or_default();
            record.tgz_size = Some(fetched.size);
            record.tgz_sha256 = Some(fetched.sha256.clone());
            st.dirty.insert(id);
            Ok((Arc::new(pack), pack_bytes + fetched.size))
        })();
        if installed.is_err() {
            let _ = std::fs::remove_file(&fetched.path);
        }
        installed
    }

    /// After a local build, write the bundle to the remote tier in the
    /// background (create-only: a host that wrote it first wins, with the
    /// same bytes). A failure is one log line and a write backoff.
    fn write_back_later(self: &Arc<Self>, id: BundleId, spec: Arc<BundleSpec>, label: &str) {
        let Some(remote) = self.settings.remote.clone() else { return };
        if remote.is_read_only() || !remote.health.can_write(std::time::Instant::now()) {
            // A claim this host may hold must not make others wait it out.
            self.runtime.spawn(async move { remote.release(&id).await });
            return;
        }
        let (cache, label) = (self.clone(), label.to_string());
        self.runtime.spawn(async move {
            let _permit = cache.write_backs.acquire().await;
            let written = async {
                let tgz = cache.tgz_for(id, &spec, &label).await?;
                remote.publish_id(&id, &cache.tgz_path(&id), &tgz.sha256).await
            }
            .await;
            remote.release(&id).await;
            match written {
                Ok(put) => {
                    remote.health.write_worked();
                    if put == crate::remote::Put::Created {
                        super::bump(&cache.stats.remote_writes);
                        log::info!("bundle {label}: written to the remote tier");
                    }
                }
                Err(e) => {
                    let wait = remote.health.write_failed(std::time::Instant::now());
                    super::bump(&cache.stats.remote_errors);
                    log::warn!(
                        "bundle {label}: not written to the remote tier {}: {e:#} (writes are skipped for {}s)",
                        remote.url(),
                        wait.as_secs()
                    );
                }
            }
        });
    }

    /// The .tgz, through the .tgz job (awaiting it as a future).
    async fn tgz_for(self: &Arc<Self>, id: BundleId, spec: &Arc<BundleSpec>, label: &str) -> Result<Arc<Tgz>> {
        let spec = spec.clone();
        awaited(".tgz", |waiter| self.with_tgz(id, Box::new(move || Some(spec)), label, waiter)).await
    }

    /// Download the entry's packages (concurrently) and build its pack.
    /// Also returns how long the fetch and extract phases took.
    async fn build_pack(
        self: &Arc<Self>,
        id: BundleId,
        spec: &BundleSpec,
    ) -> Result<(Arc<Pack>, u64, (std::time::Duration, std::time::Duration))> {
        // A type without a layout fails before anything is downloaded.
        crate::layout::Family::of(&spec.kind)?;
        self.set_phase(id, Phase::Fetching);
        // Pin what the build needs before looking for it: eviction, run by
        // any other build meanwhile, must not remove a package between the
        // store's lookup and the extraction.
        let mut pinned: Vec<Sha256> =
            spec.packages.iter().filter_map(|p| Sha256::parse(&self.store().known_sha(p)?)).collect();
        self.pin_packages(&pinned, true);
        let fetch_started = std::time::Instant::now();
        let files = match assemble::download(&self.fetcher, spec).await {
            Ok(files) => files,
            Err(e) => {
                self.pin_packages(&pinned, false);
                return Err(e);
            }
        };
        let mut shas = Vec::with_capacity(files.len());
        for f in &files {
            if let Some(sha) = f.path.file_name().and_then(|n| Sha256::parse(&n.to_string_lossy())) {
                shas.push((sha, f.path.clone()));
            }
        }
        pinned.extend(self.register_packages(&shas));
        let fetch_took = fetch_started.elapsed();
        self.stats.timings.observe("fetch", fetch_took);
        self.set_phase(id, Phase::Extracting);
        let (cache, spec) = (self.clone(), spec.clone());
        let extract_started = std::time::Instant::now();
        let result = on_cpu(move |threads| cache.extract_and_pack(id, &spec, files, threads)).await;
        let extract_took = extract_started.elapsed();
        self.stats.timings.observe("extract", extract_took);
        self.pin_packages(&pinned, false);
        result.map(|(pack, bytes)| (pack, bytes, (fetch_took, extract_took)))
    }

    fn extract_and_pack(
        &self,
        id: BundleId,
        spec: &BundleSpec,
        files: Vec<PackageFile>,
        threads: usize,
    ) -> Result<(Arc<Pack>, u64)> {
        let hex = id.hex();
        let laid_out = assemble::assemble(assemble::Job::of(spec, &hex, files, self.settings.limits, threads))?;
        let dest = self.pack_path(&id);
        let mut out = AtomicFile::create_in(&dest, &self.tmp_dir)?;
        let bytes = crate::pack::write(&laid_out.tree, std::io::BufWriter::with_capacity(1 << 20, out.file()))
            .context("writing the pack")?;
        out.commit().context("installing the pack")?;
        let pack = Pack::open(&dest)?;
        Ok((Arc::new(pack), bytes))
    }

    pub(super) async fn obtain_tgz(
        self: &Arc<Self>,
        id: BundleId,
        spec: &Arc<BundleSpec>,
        label: &str,
    ) -> Result<Obtained<Tgz>> {
        let recorded = self.lock().records.get(&id).and_then(|r| Some((r.tgz_size?, r.tgz_sha256.clone()?)));
        let path = self.tgz_path(&id);
        if let Some((size, sha)) = recorded.filter(|(size, _)| std::fs::metadata(&path).is_ok_and(|m| m.len() == *size))
        {
            self.set_phase(id, Phase::Verifying);
            let p = path.clone();
            let checked = crate::cpu::run(1, move |_| crate::fetch::hash_file(&p)).await;
            match checked {
                Ok((actual, len)) if actual == sha && len == size => {
                    log::debug!("checked the cached {label}.tgz ({}) by sha256", crate::util::human_bytes(size));
                    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                    return Ok(Obtained { value: Arc::new(Tgz::new(file, size, sha)), new_bytes: None });
                }
                Ok((actual, _)) => self.discard_bundle(id, ".tgz", &anyhow!("sha256 {actual}, recorded {sha}")),
                Err(e) => self.discard_bundle(id, ".tgz", &e),
            }
        }
        let pack = self.pack_for(id, spec, label).await?;
        self.set_phase(id, Phase::Compressing);
        let started = std::time::Instant::now();
        let cache = self.clone();
        let tgz = on_cpu(move |threads| cache.write_tgz(id, &pack, threads)).await?;
        self.stats.timings.observe("compress", started.elapsed());
        log::info!(
            "built {label}.tgz: {} in {:.2}s",
            crate::util::human_bytes(tgz.size),
            started.elapsed().as_secs_f64()
        );
        let size = tgz.size;
        Ok(Obtained { value: tgz, new_bytes: Some(size) })
    }

    /// The pack, through the pack job (awaiting it as a future).
    async fn pack_for(self: &Arc<Self>, id: BundleId, spec: &Arc<BundleSpec>, label: &str) -> Result<Arc<Pack>> {
        let spec = spec.clone();
        awaited("pack", |waiter| self.with_pack(id, Box::new(move || Some(spec)), label, waiter)).await
    }

    fn write_tgz(&self, id: BundleId, pack: &Pack, threads: usize) -> Result<Arc<Tgz>> {
        let dest = self.tgz_path(&id);
        let mut out = AtomicFile::create_in(&dest, &self.tmp_dir)?;
        let hashing = crate::tgz::HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, out.file()));
        let (writer, sha256, size) = pack.write_tgz(hashing, threads).context("writing the .tgz")?.finish();
        writer.into_inner().map_err(|e| e.into_error()).context("flushing the .tgz")?;
        out.commit().context("installing the .tgz")?;
        let file = std::fs::File::open(&dest).with_context(|| format!("opening {}", dest.display()))?;
        Ok(Arc::new(Tgz::new(file, size, sha256)))
    }
}
