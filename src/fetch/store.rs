//! The content-addressed package store.
//!
//! Layout under its directory:
//! - `sha256/<hex>`: verified packages, named by their sha256;
//! - `by-url/<sha256 of url>`: the hex sha256 of a URL's package, for
//!   manifests without checksums;
//! - `by-sha512/<sha512>`: the hex sha256 of a package the manifest pins
//!   by sha512 only;
//! - `partial/<key>`: downloads in progress (`sha-<hex>` for packages with a
//!   known sha256, resumable; `url-<hash>` for the others), and beside each
//!   resumable one `<key>.validator`, the first response's ETag or
//!   Last-Modified for `If-Range`.

use super::error::FetchError;
use crate::manifest::Package;
use anyhow::Result;
use std::collections::HashMap;
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

pub use crate::util::{hash_file, hash_file_with};

impl PackageStore {
    pub fn open(dir: &Path) -> Result<Self> {
        for sub in ["sha256", "by-url", "by-sha512", "partial"] {
            crate::files::create_private_dir_all(&dir.join(sub))?;
        }
        Ok(PackageStore { dir: dir.to_path_buf(), locks: Arc::default() })
    }

    /// The store key of a package: its digest when known, else its URL.
    fn key(pkg: &Package) -> String {
        match (&pkg.sha256, &pkg.sha512) {
            (Some(sha), _) => format!("sha-{}", sha.to_ascii_lowercase()),
            (None, Some(sha)) => format!("sha512-{}", sha.to_ascii_lowercase()),
            (None, None) => format!("url-{}", url_key(&pkg.url)),
        }
    }

    /// Where the sha256 of a package known by another key is recorded.
    fn record_path(&self, pkg: &Package) -> PathBuf {
        match &pkg.sha512 {
            Some(sha) if pkg.sha256.is_none() => self.dir.join("by-sha512").join(sha.to_ascii_lowercase()),
            _ => self.dir.join("by-url").join(url_key(&pkg.url)),
        }
    }

    /// One lock per package, so concurrent builds download a shared package once.
    pub(crate) fn lock_for(&self, pkg: &Package) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(Self::key(pkg)).or_default().clone()
    }

    pub fn path_for_sha(&self, sha: &str) -> PathBuf {
        self.dir.join("sha256").join(sha)
    }

    pub(crate) fn partial_path(&self, pkg: &Package) -> PathBuf {
        self.dir.join("partial").join(Self::key(pkg))
    }

    pub(crate) fn validator_path(partial: &Path) -> PathBuf {
        partial.with_extension("validator")
    }

    /// The sha256 the store knows for a package: the manifest's, or the one
    /// recorded when it was first downloaded (by its sha512, or its URL).
    pub fn known_sha(&self, pkg: &Package) -> Option<String> {
        if let Some(sha) = &pkg.sha256 {
            return Some(sha.to_ascii_lowercase());
        }
        let recorded = std::fs::read_to_string(self.record_path(pkg)).ok()?;
        let sha = recorded.trim().to_string();
        (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then_some(sha)
    }

    /// A verified copy in the store. A damaged one is removed.
    pub fn lookup(&self, pkg: &Package) -> Result<Option<PathBuf>> {
        let Some(sha) = self.known_sha(pkg) else { return Ok(None) };
        let path = self.path_for_sha(&sha);
        if !path.exists() {
            return Ok(None);
        }
        let (actual, actual512, len) = hash_file_with(&path, pkg.sha512.is_some())?;
        let sha512_differs =
            pkg.sha512.as_ref().is_some_and(|want| actual512.as_ref().is_none_or(|a| !a.eq_ignore_ascii_case(want)));
        if actual != sha || sha512_differs || pkg.size.is_some_and(|s| s != len) {
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

    /// Verify a finished download and move it into the store. A mismatch
    /// removes the partial file: it can never be admitted.
    pub fn admit(&self, pkg: &Package, partial: &Path) -> Result<PathBuf, FetchError> {
        let refuse = |e: FetchError| {
            let _ = std::fs::remove_file(partial);
            let _ = std::fs::remove_file(Self::validator_path(partial));
            Err(e)
        };
        let (actual, actual512, len) = hash_file_with(partial, pkg.sha512.is_some())
            .map_err(|e| FetchError::local("checking the download", &e))?;
        if let Some(size) = pkg.size {
            if len != size {
                return refuse(FetchError::SizeMismatch { expected: size, got: len });
            }
        }
        if let Some(expected) = &pkg.sha256 {
            if !expected.eq_ignore_ascii_case(&actual) {
                return refuse(FetchError::Sha256Mismatch { expected: expected.clone(), got: actual });
            }
        }
        if let (Some(expected), Some(got)) = (&pkg.sha512, &actual512) {
            if !expected.eq_ignore_ascii_case(got) {
                return refuse(FetchError::Sha512Mismatch { expected: expected.clone(), got: got.clone() });
            }
        }
        let dest = self.path_for_sha(&actual);
        std::fs::rename(partial, &dest).map_err(|e| FetchError::io("moving the download into the store", e))?;
        let _ = std::fs::remove_file(Self::validator_path(partial));
        if pkg.sha256.is_none() {
            crate::util::write_atomic(&self.record_path(pkg), actual.as_bytes())
                .map_err(|e| FetchError::local("checking the download", &e))?;
        }
        Ok(dest)
    }

    /// Every verified package: (sha256, bytes, last use).
    pub fn list(&self) -> Vec<(String, u64, std::time::SystemTime)> {
        list_dir(&self.dir.join("sha256"), |name| name.len() == 64)
    }

    /// Every partial download left on disk: (name, bytes, last write).
    pub fn partials(&self) -> Vec<(String, u64, std::time::SystemTime)> {
        list_dir(&self.dir.join("partial"), |name| !name.ends_with(".validator"))
    }

    /// Remove a verified package (eviction).
    pub fn remove(&self, sha: &str) -> Result<()> {
        crate::files::remove_file_if_exists(&self.path_for_sha(sha))
    }

    /// Remove a partial download and its validator (eviction).
    pub fn remove_partial(&self, name: &str) -> Result<()> {
        let path = self.dir.join("partial").join(name);
        crate::files::remove_file_if_exists(&Self::validator_path(&path))?;
        crate::files::remove_file_if_exists(&path)
    }
}

fn list_dir(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<(String, u64, std::time::SystemTime)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let meta = e.metadata().ok().filter(|m| m.is_file())?;
            let name = e.file_name().to_string_lossy().into_owned();
            keep(&name).then(|| (name, meta.len(), meta.modified().unwrap_or(std::time::UNIX_EPOCH)))
        })
        .collect()
}
