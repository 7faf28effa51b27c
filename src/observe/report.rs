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
    /// Pinned by `kpackfs warm --pin`: never evicted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
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
    /// Every entry of the served manifest, shown or not (the crawl's and
    /// the mount's log lines count the same way).
    pub entries: usize,
    pub bundles_unnamed: usize,
    /// Manifest entries this daemon parsed from YAML (0 when every index it
    /// served was mapped: from the cache, or the index beside the manifest).
    #[serde(default)]
    pub manifest_entries_parsed: u64,
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
    /// Bundles pinned by `kpackfs warm --pin`, and the bytes of those on disk.
    pub pinned_bundles: usize,
    pub pinned_bytes: u64,
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

/// A refused source on a line of its own (it needs a look), with its cause
/// cut short; the unreachable ones in one line (the causes are in
/// `status --json`): a host that cannot reach some sources is not shown a
/// page about them.
fn crawl_failures(states: &crate::crawl::state::States) -> String {
    use crate::util::printable;
    let now = crate::util::now_secs();
    let ago = |t: Option<u64>| match t {
        Some(t) => {
            format!("{} ago", crate::util::human_duration(std::time::Duration::from_secs(now.saturating_sub(t))))
        }
        None => "never".to_string(),
    };
    let mut out = String::new();
    for (name, s) in states.iter().filter(|(_, s)| s.state == "refused") {
        let cause: String = printable(s.last_error.as_deref().unwrap_or("")).chars().take(200).collect();
        out.push_str(&format!("  refused     {}  (last success {}): {cause}\n", printable(name), ago(s.last_success)));
    }
    let unreachable: Vec<(&String, &crate::crawl::state::SourceState)> =
        states.iter().filter(|(_, s)| s.state == "unreachable").collect();
    if !unreachable.is_empty() {
        let never = unreachable.iter().filter(|(_, s)| s.last_success.is_none()).count();
        let mut names: Vec<String> = unreachable.iter().take(6).map(|(n, _)| printable(n).into_owned()).collect();
        if unreachable.len() > 6 {
            names.push(format!("and {} more", unreachable.len() - 6));
        }
        let next = unreachable.iter().map(|(_, s)| s.next_try()).min().unwrap_or(now);
        out.push_str(&format!(
            "  unreachable {} ({never} never reached from here; next try in {}; causes: kpackfs status --json)\n",
            names.join(", "),
            crate::util::human_duration(std::time::Duration::from_secs(next.saturating_sub(now)))
        ));
    }
    out
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
    }

    pub fn to_text(&self) -> String {
        use crate::util::{human_bytes, printable};
        let mut out = String::new();
        out.push_str(&format!("kpackfs at {} (pid {}, up {}s)\n", self.mountpoint, self.pid, self.uptime_secs));
        let counts = crate::manifest::index::IndexCounts {
            slots: self.entries,
            shown: self.bundles_total,
            unnamed: self.bundles_unnamed,
            shadowed: self.bundles_shadowed,
            flat_collisions: self.flat_collisions.len(),
        };
        out.push_str(&format!(
            "manifest: {}{}{}\n",
            counts.summary(),
            if self.bundles_shadowed > 0 { "; kpackfs list --all --mount names the one served" } else { "" },
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
        if self.pinned_bundles > 0 {
            out.push_str(&format!(
                "; pinned {} bundles, {} of the {} budget",
                self.pinned_bundles,
                human_bytes(self.pinned_bytes),
                human_bytes(self.cache_budget)
            ));
        }
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
            out.push_str(&crawl_failures(&self.crawl_sources));
        }
        let absent = self.bundles_total.saturating_sub(self.bundles.iter().filter(|b| b.state != "absent").count());
        out.push_str(&format!("bundles ({absent} absent):\n"));
        for b in &self.bundles {
            match b.state {
                "ready" => out.push_str(&format!(
                    "  ready     {}  {}{}\n",
                    printable(&b.label),
                    human_bytes(b.bytes.unwrap_or(0)),
                    if b.pinned { "  pinned" } else { "" }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crawl::state::{SourceState, States};

    /// Issue 24 item 4: status shows a refused source on its own line and
    /// the unreachable ones in one short line, not a long line each.
    #[test]
    fn status_gives_the_unreachable_sources_one_line() {
        let long = "fetching http://mirror.test/x/dists/y/InRelease: connection refused ".repeat(5);
        let failed = |state: &str, runs: u32| SourceState {
            state: state.into(),
            last_crawl: crate::util::now_secs(),
            last_error: Some(long.clone()),
            unreachable_runs: runs,
            ..SourceState::default()
        };
        let mut states: States = (0..10).map(|i| (format!("far-{i}"), failed("unreachable", 3))).collect();
        states.insert("bad".into(), failed("refused", 0));
        states.insert("fine".into(), SourceState { state: "ok".into(), ..SourceState::default() });
        let text = crawl_failures(&states);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("refused") && lines[0].contains("bad") && lines[0].len() < 260, "{text}");
        assert!(lines[1].contains("far-0, far-1") && lines[1].contains("and 4 more"), "{text}");
        let in_two_hours = lines[1].contains("next try in 2h") || lines[1].contains("next try in 1h 59m");
        assert!(lines[1].contains("10 never reached") && in_two_hours, "{text}");
        assert!(lines[1].len() < 200 && !lines[1].contains("connection refused"), "{text}");
    }
}
