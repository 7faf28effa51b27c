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
    tokio::task::spawn_blocking(move || {
        let lease = crate::cpu::pool().lease(crate::cpu::cores());
        work(lease.threads())
    })
    .await
    .map_err(|e| anyhow!("build task failed: {e}"))?
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
            let opened = tokio::task::spawn_blocking(move || Pack::open_verified(&path))
                .await
                .map_err(|e| anyhow!("verification task failed: {e}"))?;
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
        let (pack, bytes) = self.build_pack(id, spec).await?;
        super::bump(&self.stats.builds);
        log::info!(
            "built bundle {label} from {} package(s): {} in {:.2}s",
            spec.packages.len(),
            crate::util::human_bytes(bytes),
            started.elapsed().as_secs_f64()
        );
        Ok(Obtained { value: pack, new_bytes: Some(bytes) })
    }

    /// Download the entry's packages (concurrently) and build its pack.
    async fn build_pack(self: &Arc<Self>, id: BundleId, spec: &BundleSpec) -> Result<(Arc<Pack>, u64)> {
        // A type without a layout fails before anything is downloaded.
        crate::layout::Family::of(&spec.kind)?;
        self.set_phase(id, Phase::Fetching);
        // Pin what the build needs before looking for it: eviction, run by
        // any other build meanwhile, must not remove a package between the
        // store's lookup and the extraction.
        let mut pinned: Vec<Sha256> =
            spec.packages.iter().filter_map(|p| Sha256::parse(&self.store().known_sha(p)?)).collect();
        self.pin_packages(&pinned, true);
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
        self.set_phase(id, Phase::Extracting);
        let (cache, spec) = (self.clone(), spec.clone());
        let result = on_cpu(move |threads| cache.extract_and_pack(id, &spec, files, threads)).await;
        self.pin_packages(&pinned, false);
        result
    }

    fn extract_and_pack(
        &self,
        id: BundleId,
        spec: &BundleSpec,
        files: Vec<PackageFile>,
        threads: usize,
    ) -> Result<(Arc<Pack>, u64)> {
        let hex = id.hex();
        let laid_out = assemble::assemble(assemble::Job {
            kind: &spec.kind,
            id: &hex,
            uname: spec.uname.as_deref(),
            signed_by: spec.signed_by.as_deref(),
            packages: files,
            limits: self.settings.limits,
            threads,
        })?;
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
            let checked = tokio::task::spawn_blocking(move || crate::fetch::hash_file(&p))
                .await
                .map_err(|e| anyhow!("verification task failed: {e}"))?;
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
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spec = spec.clone();
        self.with_pack(
            id,
            Box::new(move || Some(spec)),
            label,
            Box::new(move |outcome| {
                let _ = tx.send(outcome);
            }),
        );
        rx.await.map_err(|_| anyhow!("the pack job ended without an answer"))?.map_err(|cause| anyhow!("{cause}"))
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
