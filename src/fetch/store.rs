//! The content-addressed package store.
//!
//! Layout under its directory:
//! - `sha256/<hex>`: verified packages, named by their sha256;
//! - `by-url/<sha256 of url>`: the hex sha256 of a URL's package, for
//!   manifests without checksums;
//! - `partial/<sha256 of url>`: downloads in progress (resumable).

use crate::manifest::Package;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct PackageStore {
    dir: PathBuf,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

fn url_key(url: &str) -> String {
    crate::util::sha256_hex(url.as_bytes())
}

/// Hex sha256 and length of a file.
pub fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), len))
}

impl PackageStore {
    pub fn open(dir: &Path) -> Result<Self> {
        for sub in ["sha256", "by-url", "partial"] {
            std::fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        Ok(PackageStore { dir: dir.to_path_buf(), locks: Arc::default() })
    }

    /// One lock per URL, so concurrent builds download a shared package once.
    pub(crate) fn lock_for(&self, url: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(url.to_string()).or_default().clone()
    }

    pub fn path_for_sha(&self, sha: &str) -> PathBuf {
        self.dir.join("sha256").join(sha)
    }

    pub(crate) fn partial_path(&self, url: &str) -> PathBuf {
        self.dir.join("partial").join(url_key(url))
    }

    /// The sha256 the store knows for a package: the manifest's, or the one
    /// recorded when its URL was first downloaded.
    pub fn known_sha(&self, pkg: &Package) -> Option<String> {
        if let Some(sha) = &pkg.sha256 {
            return Some(sha.to_ascii_lowercase());
        }
        let recorded = std::fs::read_to_string(self.dir.join("by-url").join(url_key(&pkg.url))).ok()?;
        let sha = recorded.trim().to_string();
        (sha.len() == 64).then_some(sha)
    }

    /// A verified copy in the store. A damaged one is removed.
    pub fn lookup(&self, pkg: &Package) -> Result<Option<PathBuf>> {
        let Some(sha) = self.known_sha(pkg) else { return Ok(None) };
        let path = self.path_for_sha(&sha);
        if !path.exists() {
            return Ok(None);
        }
        let (actual, len) = hash_file(&path)?;
        if actual != sha || pkg.size.is_some_and(|s| s != len) {
            log::warn!(
                "package store: {} is damaged (sha256 {actual}, {len} bytes); fetching it again",
                path.display()
            );
            let _ = std::fs::remove_file(&path);
            return Ok(None);
        }
        // Mark it recently used for the cache's eviction order.
        let _ =
            std::fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        Ok(Some(path))
    }

    /// Verify a finished download and move it into the store.
    pub fn admit(&self, pkg: &Package, partial: &Path) -> Result<PathBuf> {
        let (actual, len) = hash_file(partial)?;
        if let Some(size) = pkg.size {
            if len != size {
                let _ = std::fs::remove_file(partial);
                bail!("size mismatch: expected {size} bytes, got {len}");
            }
        }
        if let Some(expected) = &pkg.sha256 {
            if !expected.eq_ignore_ascii_case(&actual) {
                let _ = std::fs::remove_file(partial);
                bail!("sha256 mismatch: expected {expected}, got {actual}");
            }
        }
        let dest = self.path_for_sha(&actual);
        std::fs::rename(partial, &dest).with_context(|| format!("moving the download into {}", dest.display()))?;
        if pkg.sha256.is_none() {
            crate::util::write_atomic(&self.dir.join("by-url").join(url_key(&pkg.url)), actual.as_bytes())?;
        }
        Ok(dest)
    }

    /// Every verified package: (sha256, bytes, last use).
    pub fn list(&self) -> Vec<(String, u64, std::time::SystemTime)> {
        let Ok(dir) = std::fs::read_dir(self.dir.join("sha256")) else { return Vec::new() };
        dir.filter_map(|e| e.ok())
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                let name = e.file_name().to_string_lossy().into_owned();
                (name.len() == 64).then(|| (name, meta.len(), meta.modified().unwrap_or(std::time::UNIX_EPOCH)))
            })
            .collect()
    }

    /// Remove a verified package (eviction).
    pub fn remove(&self, sha: &str) -> Result<()> {
        match std::fs::remove_file(self.path_for_sha(sha)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing package {sha}")),
        }
    }
}
