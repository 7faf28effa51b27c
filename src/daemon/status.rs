//! The status report, collected by the daemon from what it runs (the
//! cache, the namespace, the counters, the served manifest, the crawl
//! states) and rendered by `observe`; the filesystem serves it under
//! `/.kpackfs/` through [`MetaFiles`].

use super::refresh::{CrawlStates, Served};
use crate::cache::{BundleState, Cache};
use crate::fs::{FsFacts, MetaFile, MetaFiles};
use crate::namespace::{Counts, Current};
use crate::observe::{BundleStatus, Counters, FlatClash, Report};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

pub struct Status {
    pub cache: Arc<Cache>,
    current: Arc<Current>,
    /// Where the manifest came from (a mount's; None in tests).
    served: OnceLock<Arc<Served>>,
    crawl: Arc<CrawlStates>,
    pub counters: Arc<Counters>,
    pub mountpoint: PathBuf,
    /// The remote tier's URL, when there is one.
    pub tier: Option<String>,
    started: Instant,
    /// Where `--metrics` serves, once bound (a port of 0 picks a free one).
    metrics_addr: OnceLock<String>,
}

impl Status {
    pub fn new(
        cache: Arc<Cache>,
        current: Arc<Current>,
        crawl: Arc<CrawlStates>,
        counters: Arc<Counters>,
        mountpoint: PathBuf,
        tier: Option<String>,
    ) -> Arc<Status> {
        Arc::new(Status {
            cache,
            current,
            served: OnceLock::new(),
            crawl,
            counters,
            mountpoint,
            tier,
            started: Instant::now(),
            metrics_addr: OnceLock::new(),
        })
    }

    /// The served manifest, for its note.
    pub fn set_served(&self, served: Arc<Served>) {
        let _ = self.served.set(served);
    }

    pub fn set_metrics_addr(&self, addr: String) {
        let _ = self.metrics_addr.set(addr);
    }

    pub fn report(&self, fs: &FsFacts<'_>) -> Report {
        let ns = self.current.get();
        let cache = &self.cache;
        let usage = cache.usage();
        let disk = crate::util::disk_space(&cache.settings().dir);
        let mut bundles = Vec::new();
        let pinned = cache.pinned();
        for id in cache.known_ids() {
            let label = ns.slot_of_id(&id).and_then(|s| ns.bundle(s)).map_or_else(|| id.hex(), |b| b.label());
            let mut status = BundleStatus {
                label,
                id: id.hex(),
                state: "absent",
                bytes: None,
                cause: None,
                class: None,
                retry_in_secs: None,
                idle_secs: None,
                pinned: pinned.contains(&id),
            };
            match cache.state_of(&id) {
                BundleState::Absent => continue,
                BundleState::Building(phase) => status.state = phase.name(),
                BundleState::Ready { bytes } => {
                    status.state = "ready";
                    status.bytes = Some(bytes);
                    status.idle_secs = cache.idle_for(&id).map(|d| d.as_secs_f64());
                }
                BundleState::Failed { cause, retry_in } => {
                    status.state = "failed";
                    status.cause = Some(cause.message().to_string());
                    status.class = Some(cause.class.name());
                    status.retry_in_secs = Some(retry_in.as_secs());
                }
            }
            bundles.push(status);
        }
        bundles.sort_by(|a, b| a.label.cmp(&b.label));
        let c = &self.counters;
        let get = Counters::get;
        let Counts { shown, unnamed, shadowed, .. } = ns.counts.clone();
        Report {
            mountpoint: self.mountpoint.display().to_string(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            manifest: self.served.get().map(|s| s.note()).unwrap_or_default(),
            metrics_addr: self.metrics_addr.get().cloned(),
            bundles_total: shown,
            entries: ns.index().counts.slots,
            bundles_unnamed: unnamed,
            manifest_entries_parsed: crate::manifest::index::sidecar::YAML_ENTRIES_PARSED
                .load(std::sync::atomic::Ordering::Relaxed),
            bundles_shadowed: shadowed,
            flat_collisions: ns
                .flat_clashes()
                .iter()
                .take(100)
                .map(|(name, types)| FlatClash { name: name.clone(), types: types.clone() })
                .collect(),
            cache_dir: cache.settings().dir.display().to_string(),
            cache_used: usage.used,
            cache_budget: usage.budget,
            disk_free: disk.map(|(_, avail)| avail),
            disk_floor: disk.map(|(total, _)| cache.settings().min_free.bytes(total)),
            cached_bundles: usage.bundles,
            cached_packages: usage.packages,
            pinned_bundles: usage.pinned_bundles,
            pinned_bytes: usage.pinned_bytes,
            hits: get(&c.hits),
            misses: get(&c.misses),
            builds: get(&c.builds),
            failures: get(&c.failures),
            failures_by_class: crate::error::ErrorClass::ALL.iter().map(|k| (k.name(), c.failures_of(*k))).collect(),
            evictions: get(&c.evictions),
            damaged: get(&c.damaged),
            remote: self.tier.clone(),
            remote_hits: get(&c.remote_hits),
            remote_writes: get(&c.remote_writes),
            remote_errors: get(&c.remote_errors),
            waiting: fs.waiting,
            requests: serde_json::to_value(fs.requests).unwrap_or_default(),
            bundles,
            crawl_sources: self.crawl.get(),
        }
    }
}

impl MetaFiles for Status {
    fn render(&self, file: MetaFile, fs: &FsFacts<'_>) -> Vec<u8> {
        let report = self.report(fs);
        match file {
            MetaFile::Status => report.to_text(),
            MetaFile::StatusJson => report.to_json(),
            MetaFile::Metrics => crate::observe::prometheus::render(&report, &self.counters),
        }
        .into_bytes()
    }
}
