//! The status report behind `/.kpackfs/status` (text) and `status.json`,
//! which `kpackfs status MOUNTPOINT` prints: each known bundle's state,
//! cache use, and hit/miss counts. The daemon fills it in
//! (`daemon::status`); this is the data and its renderings.

use serde::Serialize;

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
    /// The failure's class (unreachable, not_found, refused, hostile, no_space, internal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<&'static str>,
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
    /// Failed builds per class (every class, zeros included).
    pub failures_by_class: std::collections::BTreeMap<&'static str, u64>,
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
        let classes: Vec<String> =
            self.failures_by_class.iter().filter(|(_, n)| **n > 0).map(|(c, n)| format!("{n} {c}")).collect();
        out.push_str(&format!(
            "requests: {} hits, {} misses; builds: {} done, {} failed{}; {} evictions, {} damaged files rebuilt\n",
            self.hits,
            self.misses,
            self.builds,
            self.failures,
            if classes.is_empty() { String::new() } else { format!(" ({})", classes.join(", ")) },
            self.evictions,
            self.damaged
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
                    "  failed    {}  ({}; retry allowed in {}s): {}\n",
                    printable(&b.label),
                    b.class.unwrap_or("internal"),
                    b.retry_in_secs.unwrap_or(0),
                    printable(b.cause.as_deref().unwrap_or(""))
                )),
                other => out.push_str(&format!("  {other:<9} {}\n", printable(&b.label))),
            }
        }
        out
    }
}
