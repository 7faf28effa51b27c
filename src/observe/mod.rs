//! What the daemon tells about itself: counters and phase timings that the
//! cache and the build bump as things happen ([`Counters`]), the status
//! report the daemon fills in from them ([`report`]), and its renderings:
//! text and JSON (`/.kpackfs/status`, `status.json`) and Prometheus text
//! ([`prometheus`]: `/.kpackfs/metrics`, `--metrics`). Nothing here reads
//! the cache, the filesystem or a file: the daemon feeds it.

pub mod prometheus;
pub mod report;

pub use report::{BundleStatus, FlatClash, Report};

use crate::error::ErrorClass;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters for status and metrics, shared by the cache and the build.
#[derive(Debug, Default)]
pub struct Counters {
    /// Served without a build (open, or verified from disk).
    pub hits: AtomicU64,
    /// Needed a build (or the remote tier).
    pub misses: AtomicU64,
    /// Bundles built from their inputs.
    pub builds: AtomicU64,
    /// Failed builds, all classes.
    pub failures: AtomicU64,
    failures_by_class: [AtomicU64; ErrorClass::ALL.len()],
    pub evictions: AtomicU64,
    /// Cached files found damaged and removed.
    pub damaged: AtomicU64,
    /// Bundles installed from the remote tier instead of built.
    pub remote_hits: AtomicU64,
    pub remote_writes: AtomicU64,
    pub remote_errors: AtomicU64,
    /// Bytes downloaded for packages.
    pub downloaded_bytes: AtomicU64,
    /// Build phase durations (metrics only).
    pub timings: Timings,
}

/// Add one.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// A build failed with `class`.
    pub fn failed(&self, class: ErrorClass) {
        bump(&self.failures);
        bump(&self.failures_by_class[class.index()]);
    }

    pub fn failures_of(&self, class: ErrorClass) -> u64 {
        self.failures_by_class[class.index()].load(Ordering::Relaxed)
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

type Labels = Vec<(String, String)>;

/// Durations of build phases (fetch, extract, compress, remote install):
/// observed where each phase ends, kept for the daemon's life.
pub struct Timings {
    phases: Family<Labels, Histogram, fn() -> Histogram>,
}

fn phase_histogram() -> Histogram {
    // 10 ms … ~160 s: a cached verify to a large cold build on a slow mirror.
    Histogram::new(exponential_buckets(0.01, 2.0, 15))
}

impl Default for Timings {
    fn default() -> Self {
        Timings { phases: Family::new_with_constructor(phase_histogram as fn() -> Histogram) }
    }
}

impl std::fmt::Debug for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Timings")
    }
}

impl Timings {
    pub fn observe(&self, phase: &str, took: Duration) {
        self.phases.get_or_create(&vec![("phase".to_string(), phase.to_string())]).observe(took.as_secs_f64());
    }
}
