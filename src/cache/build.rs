//! Building into the cache: download → verify → extract → lay out → pack,
//! and pack → .tgz. Every output is written under `tmp/` and renamed into
//! place only when complete and synced.

use super::{Cache, Tgz};
use crate::build::{self, PackageFile};
use crate::manifest::{file_name_of, simplify, Entry};
use crate::pack::{self, Pack};
use anyhow::{anyhow, Context, Result};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Removes a temporary file unless disarmed.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn keep(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Cache {
    fn temp_path(&self, id: &str, suffix: &str) -> TempFile {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        TempFile(Some(self.tmp_dir.join(format!("{id}.{suffix}.{}.{n}", std::process::id()))))
    }

    /// Download the entry's packages (concurrently) and build its pack.
    pub(super) async fn build_pack(self: &Arc<Self>, id: &str, entry: &Entry) -> Result<(Arc<Pack>, u64)> {
        self.set_phase(id, Some("fetching"));
        let result = self.fetch_and_extract(id, entry).await;
        self.set_phase(id, None);
        result
    }

    async fn fetch_and_extract(self: &Arc<Self>, id: &str, entry: &Entry) -> Result<(Arc<Pack>, u64)> {
        let downloads: Vec<_> = entry
            .packages
            .iter()
            .cloned()
            .map(|pkg| {
                let fetcher = self.fetcher.clone();
                tokio::spawn(async move { fetcher.fetch(&pkg).await })
            })
            .collect();
        let mut files = Vec::with_capacity(downloads.len());
        for (task, pkg) in downloads.into_iter().zip(&entry.packages) {
            let path = task.await.map_err(|e| anyhow!("download task failed: {e}"))??;
            files.push(PackageFile {
                path,
                display: file_name_of(&pkg.url).to_string(),
                order_key: simplify(&pkg.url),
            });
        }
        let shas: Vec<String> =
            files.iter().filter_map(|f| f.path.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
        self.pin_packages(&shas, 1);
        for f in &files {
            self.register_package(&f.path);
        }
        self.set_phase(id, Some("extracting"));
        let result = async {
            let _permit = self.cpu.clone().acquire_owned().await.context("build slots closed")?;
            let (cache, id, entry) = (self.clone(), id.to_string(), entry.clone());
            tokio::task::spawn_blocking(move || cache.extract_and_pack(&id, &entry, files))
                .await
                .map_err(|e| anyhow!("build task failed: {e}"))?
        }
        .await;
        self.pin_packages(&shas, -1);
        result
    }

    fn extract_and_pack(&self, id: &str, entry: &Entry, files: Vec<PackageFile>) -> Result<(Arc<Pack>, u64)> {
        let built = build::build(build::Job {
            kind: &entry.kind,
            id,
            uname: entry.uname.as_deref(),
            packages: files,
            limits: self.settings.limits,
        })?;
        let tmp = self.temp_path(id, "pack");
        let path = tmp.0.clone().unwrap_or_default();
        let bytes = pack::write(&built.bundle, &path).context("writing the pack")?;
        let dest = self.pack_path(id);
        std::fs::rename(&path, &dest).with_context(|| format!("installing {}", dest.display()))?;
        tmp.keep();
        sync_dir(&self.bundles_dir);
        let pack = Pack::open(&dest)?;
        Ok((Arc::new(pack), bytes))
    }

    /// Write the bundle's .tgz from its pack.
    pub(super) async fn build_tgz(self: &Arc<Self>, id: &str, pack: Arc<Pack>) -> Result<Arc<Tgz>> {
        self.set_phase(id, Some("compressing"));
        let result = self.compress(id, pack).await;
        self.set_phase(id, None);
        result
    }

    async fn compress(self: &Arc<Self>, id: &str, pack: Arc<Pack>) -> Result<Arc<Tgz>> {
        let _permit = self.cpu.clone().acquire_owned().await.context("build slots closed")?;
        let (cache, id) = (self.clone(), id.to_string());
        tokio::task::spawn_blocking(move || cache.write_tgz(&id, &pack))
            .await
            .map_err(|e| anyhow!("tgz task failed: {e}"))?
    }

    fn write_tgz(&self, id: &str, pack: &Pack) -> Result<Arc<Tgz>> {
        let tmp = self.temp_path(id, "tgz");
        let path = tmp.0.clone().unwrap_or_default();
        let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let hashing = crate::bundle::HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        let (writer, sha256, size) = pack.write_tgz(hashing).context("writing the .tgz")?.finish();
        let file = writer.into_inner().map_err(|e| e.into_error()).context("flushing the .tgz")?;
        file.sync_all().context("syncing the .tgz")?;
        let dest = self.tgz_path(id);
        std::fs::rename(&path, &dest).with_context(|| format!("installing {}", dest.display()))?;
        tmp.keep();
        sync_dir(&self.bundles_dir);
        let file = std::fs::File::open(&dest).with_context(|| format!("opening {}", dest.display()))?;
        Ok(Arc::new(Tgz::new(file, size, sha256)))
    }
}

/// Make a rename durable.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
