//! The status report behind `/.kpackfs/status` (text) and `status.json`,
//! which `kpackfs status MOUNTPOINT` prints: each known bundle's state,
//! cache use, and hit/miss counts.

use super::core::FsCore;
use super::namespace::Counts;
use crate::cache::BundleState;
use serde::Serialize;
use std::sync::atomic::Ordering;

#[derive(Debug, Serialize)]
pub struct BundleStatus {
    pub label: String,
    pub id: String,
    /// absent, fetching, extracting, compressing, ready or failed.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_secs: Option<u64>,
    /// Seconds since a reader last used it (a bundle used within the
    /// eviction grace period counts as in use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_secs: Option<f64>,
}

/// `bundle-<name>.tgz` claimed by more than one type.
#[derive(Debug, Serialize)]
pub struct FlatClash {
    pub name: String,
    pub types: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mountpoint: String,
    pub pid: u32,
    pub uptime_secs: u64,
    pub manifest: String,
    /// The `--metrics` listener's address, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_addr: Option<String>,
    pub bundles_total: usize,
    pub bundles_unnamed: usize,
    pub bundles_shadowed: usize,
    pub flat_collisions: Vec<FlatClash>,
    pub cache_dir: String,
    pub cache_used: u64,
    pub cache_budget: u64,
    /// Free bytes on the cache's filesystem, and the floor kept free.
    pub disk_free: Option<u64>,
    pub disk_floor: Option<u64>,
    pub cached_bundles: usize,
    pub cached_packages: usize,
    pub hits: u64,
    pub misses: u64,
    pub builds: u64,
    pub failures: u64,
    pub evictions: u64,
    pub damaged: u64,
    /// The remote tier, and what it did: bundles installed from it, written
    /// to it, and failures (each logged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    pub remote_hits: u64,
    pub remote_writes: u64,
    pub remote_errors: u64,
    /// Requests answered EINTR because their caller was killed while waiting.
    pub waiting: usize,
    /// FUSE requests served since mount, per operation.
    pub requests: serde_json::Value,
    /// Every bundle that is not absent.
    pub bundles: Vec<BundleStatus>,
    /// Each crawl source's last outcome, last success and last error.
    pub crawl_sources: crate::crawl::state::States,
}

impl Report {
    pub fn collect(core: &FsCore) -> Report {
        let ns = core.namespace();
        let cache = core.cache();
        let usage = cache.usage();
        let disk = crate::util::disk_space(&cache.settings().dir);
        let mut bundles = Vec::new();
        for id in cache.known_ids() {
            let label = ns.slot_of_id(&id).and_then(|s| ns.bundle(s)).map_or_else(|| id.hex(), |b| b.label());
            let mut status = BundleStatus {
                label,
                id: id.hex(),
                state: "absent",
                bytes: None,
                cause: None,
                retry_in_secs: None,
                idle_secs: None,
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
                    status.cause = Some(cause);
                    status.retry_in_secs = Some(retry_in.as_secs());
                }
            }
            bundles.push(status);
        }
        bundles.sort_by(|a, b| a.label.cmp(&b.label));
        let s = &cache.stats;
        let Counts { shown, unnamed, shadowed, .. } = ns.counts.clone();
        Report {
            mountpoint: core.mountpoint().display().to_string(),
            pid: std::process::id(),
            uptime_secs: core.uptime().as_secs(),
            manifest: core.manifest_note(),
            metrics_addr: core.metrics_addr(),
            bundles_total: shown,
            bundles_unnamed: unnamed,
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
            hits: s.hits.load(Ordering::Relaxed),
            misses: s.misses.load(Ordering::Relaxed),
            builds: s.builds.load(Ordering::Relaxed),
            failures: s.failures.load(Ordering::Relaxed),
            evictions: s.evictions.load(Ordering::Relaxed),
            damaged: s.damaged.load(Ordering::Relaxed),
            remote: cache.settings().remote.as_ref().map(|r| r.url().to_string()),
            remote_hits: s.remote_hits.load(Ordering::Relaxed),
            remote_writes: s.remote_writes.load(Ordering::Relaxed),
            remote_errors: s.remote_errors.load(Ordering::Relaxed),
            waiting: core.waiting().len(),
            requests: serde_json::to_value(&core.requests).unwrap_or_default(),
            bundles,
            crawl_sources: crate::crawl::state::read(&crate::crawl::state_path(&cache.settings().dir)),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
    }

    pub fn to_text(&self) -> String {
        use crate::util::{human_bytes, printable};
        let mut out = String::new();
        out.push_str(&format!("kpackfs at {} (pid {}, up {}s)\n", self.mountpoint, self.pid, self.uptime_secs));
        out.push_str(&format!(
            "manifest: {} bundles shown, {} unnamed, {} shadowed by a same-named entry (kpackfs list --all --mount names the one served){}\n",
            self.bundles_total,
            self.bundles_unnamed,
            self.bundles_shadowed,
            if self.manifest.is_empty() { String::new() } else { format!("; {}", self.manifest) }
        ));
        out.push_str(&format!(
            "cache: {} used of {} in {} ({} bundles, {} packages)",
            human_bytes(self.cache_used),
            human_bytes(self.cache_budget),
            self.cache_dir,
            self.cached_bundles,
            self.cached_packages
        ));
        if let (Some(free), Some(floor)) = (self.disk_free, self.disk_floor) {
            out.push_str(&format!("; disk {} free, floor {}", human_bytes(free), human_bytes(floor)));
        }
        out.push('\n');
        out.push_str(&format!(
            "requests: {} hits, {} misses; builds: {} done, {} failed; {} evictions, {} damaged files rebuilt\n",
            self.hits, self.misses, self.builds, self.failures, self.evictions, self.damaged
        ));
        if let Some(remote) = &self.remote {
            out.push_str(&format!(
                "remote tier {remote}: {} bundles from it, {} written to it, {} failures\n",
                self.remote_hits, self.remote_writes, self.remote_errors
            ));
        }
        for clash in &self.flat_collisions {
            out.push_str(&format!(
                "collision: bundles/{} is claimed by types {}; the {} one is shown\n",
                clash.name,
                clash.types.join(", "),
                clash.types.first().map_or("", String::as_str)
            ));
        }
        if !self.crawl_sources.is_empty() {
            let count = |class: &str| self.crawl_sources.values().filter(|s| s.state == class).count();
            out.push_str(&format!(
                "crawl sources: {} ok, {} unreachable, {} refused\n",
                count("ok"),
                count("unreachable"),
                count("refused")
            ));
            let ago = |t: Option<u64>| match t {
                Some(t) => format!("{}s ago", crate::util::now_secs().saturating_sub(t)),
                None => "never".to_string(),
            };
            for (name, s) in self.crawl_sources.iter().filter(|(_, s)| s.state != "ok") {
                out.push_str(&format!(
                    "  {:<11} {}  (last success {}): {}\n",
                    s.state,
                    printable(name),
                    ago(s.last_success),
                    printable(s.last_error.as_deref().unwrap_or(""))
                ));
            }
        }
        let absent = self.bundles_total.saturating_sub(self.bundles.iter().filter(|b| b.state != "absent").count());
        out.push_str(&format!("bundles ({absent} absent):\n"));
        for b in &self.bundles {
            match b.state {
                "ready" => out.push_str(&format!(
                    "  ready     {}  {}\n",
                    printable(&b.label),
                    human_bytes(b.bytes.unwrap_or(0))
                )),
                "failed" => out.push_str(&format!(
                    "  failed    {}  (retry allowed in {}s): {}\n",
                    printable(&b.label),
                    b.retry_in_secs.unwrap_or(0),
                    printable(b.cause.as_deref().unwrap_or(""))
                )),
                other => out.push_str(&format!("  {other:<9} {}\n", printable(&b.label))),
            }
        }
        out
    }
}
