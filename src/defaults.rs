//! Every default in one place, below everything that uses one (the fetcher,
//! the cache, the settings): docs/operations.md lists them.

use crate::util::FreeFloor;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Defaults {
    pub cache_size: u64,
    pub min_free: FreeFloor,
    pub evict_grace: Duration,
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    pub max_bundle_size: u64,
    /// A source bundle's sandboxed build: wall-clock deadline and memory per process.
    pub source_timeout: Duration,
    pub source_memory: u64,
    pub source_scratch: u64,
    /// The largest decompressed disk image (coreos bundles).
    pub image_max_size: u64,
    pub crawl_interval: Option<Duration>,
    pub connect_timeout: Duration,
    pub stall_timeout: Duration,
    pub min_rate: u64,
    pub rate_grace: Duration,
    pub download_deadline: Duration,
    pub retries: u32,
    pub max_package_bytes: u64,
    pub apt_dir: &'static str,
    pub yum_repos_dir: &'static str,
}

impl Defaults {
    pub fn get() -> Defaults {
        Defaults {
            cache_size: 10 << 30,
            min_free: FreeFloor::Percent(5.0),
            evict_grace: Duration::from_secs(60),
            retry_backoff: Duration::from_secs(2),
            retry_backoff_max: Duration::from_secs(300),
            max_bundle_size: 2 << 30,
            source_timeout: Duration::from_secs(30 * 60),
            source_memory: 4 << 30,
            source_scratch: 4 << 30,
            image_max_size: 16 << 30,
            crawl_interval: Some(Duration::from_secs(6 * 3600)),
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            // A header package is 2–30 MB: 20 KiB/s is ten times slower
            // than any mirror worth using, and still finishes in 25 min.
            min_rate: 20 << 10,
            rate_grace: Duration::from_secs(30),
            download_deadline: Duration::from_secs(30 * 60),
            retries: 3,
            max_package_bytes: 1 << 30,
            apt_dir: "/etc/apt",
            yum_repos_dir: "/etc/yum.repos.d",
        }
    }
}

/// The default cache directory: `/var/cache/kpackfs` for root, else
/// `$XDG_CACHE_HOME/kpackfs` or `~/.cache/kpackfs`.
pub fn cache_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/cache/kpackfs");
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("kpackfs");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache/kpackfs"),
        None => PathBuf::from("/tmp/kpackfs-cache"),
    }
}
