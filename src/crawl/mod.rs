//! The crawler: discover kernel header packages in distribution
//! repositories, write kernel-packer-style package lists and the manifest.
//!
//! - Sources come from `kernel-package-lists/sources.yml` ([`sources`]).
//! - apt and yum repositories are read with signature and checksum checks
//!   ([`apt`], [`yum`]); index fetches are conditional and cached ([`http`]).
//! - A source that fails keeps its previous list; the others go on, and the
//!   crawl reports every failure.
//! - Lists and manifest are written atomically. Bundles that disappear
//!   upstream stay: mirrors drop old kernels, built bundles stay useful.
//!
//! See docs/crawl.md.

pub mod apt;
pub mod flatcar;
pub mod freshness;
pub mod garden;
pub mod gcs;
pub mod http;
pub mod kernelorg;
pub mod minikube;
pub mod report;
pub mod sources;
pub mod state;
pub mod yum;

use crate::fetch::FetchConfig;
use crate::manifest::{BundleSpec, Manifest, Package};
use anyhow::{anyhow, Context, Result};
pub use report::{Outcome, Report, SourceReport};
use sources::{Kind, Source};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// What one source yielded: root packages seen, and bundles (package sets).
#[derive(Debug, Default)]
pub struct Found {
    pub bundles: Vec<Vec<Package>>,
    /// The kernel release of a bundle, by its first package's URL, where
    /// the index says it (Flatcar's package lists).
    pub unames: std::collections::BTreeMap<String, String>,
}

impl Found {
    /// Distinct package files in the bundles: the length of the source's list.
    fn package_count(&self) -> usize {
        self.bundles.iter().flatten().map(|p| p.url.as_str()).collect::<std::collections::HashSet<_>>().len()
    }
}

/// Where the crawl reads and writes.
#[derive(Debug, Clone)]
pub struct Options {
    pub lists_dir: PathBuf,
    pub manifest: PathBuf,
    /// Cache of index files (conditional requests, by-hash copies).
    pub index_cache: PathBuf,
    pub fetch: FetchConfig,
    /// Sources crawled at once.
    pub parallel: usize,
    /// Each source's history ([`state`]).
    pub state: PathBuf,
    /// Skip sources that keep being unreachable until their backoff ends
    /// ([`state::due`]); off when sources are named by hand.
    pub backoff: bool,
}

/// Progress callbacks (a terminal shows bars; elsewhere, log lines).
pub trait Progress: Send + Sync {
    fn step(&self, source: &str, message: &str);
    fn done(&self, source: &str, outcome: &Outcome);
}

/// Progress as debug log lines.
pub struct LogProgress;

impl Progress for LogProgress {
    fn step(&self, source: &str, message: &str) {
        log::debug!("crawl {source}: {message}");
    }
    /// A line per source that worked; failures are told once per class
    /// after the crawl ([`log_failures`]).
    fn done(&self, source: &str, outcome: &Outcome) {
        match outcome {
            Outcome::Ok { .. } => log::info!("crawl {source}: {}", outcome.line()),
            _ => log::debug!("crawl {source}: {}", outcome.line()),
        }
    }
}

/// A source's opt-outs are said once per process, not every crawl.
fn warn_opt_outs(src: &Source) {
    static SAID: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if said.insert(src.name.clone()) {
        for opt_out in src.opt_outs() {
            log::warn!("crawl {}: {opt_out}", src.name);
        }
    }
}

/// Failures in the log: a refused source each time with its cause (it
/// needs a look); an unreachable one with its cause the first time, after
/// that only in one line for its class, so a host that never reaches a
/// source is not told so at length every crawl.
fn log_failures(report: &Report, before: &state::States) {
    for s in report.sources.iter().filter(|s| matches!(s.outcome, Outcome::Refused(_) | Outcome::AuthFailed(_))) {
        log::warn!("crawl {}: {}", s.name, s.outcome.line());
    }
    let newly = |s: &SourceReport| before.get(&s.name).is_none_or(|b| b.unreachable_runs == 0);
    for s in report.sources.iter().filter(|s| matches!(s.outcome, Outcome::Unreachable(_)) && newly(s)) {
        log::warn!("crawl {}: {}", s.name, s.outcome.line());
    }
    if let Some(line) = report.unreachable_line(|s| !newly(s)) {
        log::info!("crawl: {line}");
    }
}

async fn crawl_one(src: &Source, fetch: &http::IndexFetcher, progress: &dyn Progress) -> Result<Found> {
    warn_opt_outs(src);
    let step = |m: String| progress.step(&src.name, &m);
    match src.kind {
        Kind::Apt => apt::crawl(src, fetch, &step).await,
        Kind::Yum => yum::crawl(src, fetch, &step).await,
        Kind::Gcs => gcs::crawl(src, fetch, &step).await,
        Kind::Flatcar => flatcar::crawl(src, fetch, &step).await,
        Kind::Garden => garden::crawl(src, fetch, &step).await,
        Kind::Minikube => minikube::crawl(src, fetch, &step).await,
        Kind::KernelOrg => kernelorg::crawl(src, fetch, &step).await,
    }
}

/// Where a crawl writes by default: beside the mount's cache.
pub fn default_paths(cache_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = cache_dir.join("crawl");
    (dir.join("kernel-package-lists"), dir.join("manifest.yml"))
}

/// Where each source's crawl history is kept.
pub fn state_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("crawl").join("sources.json")
}

fn list_path(dir: &Path, source: &str) -> PathBuf {
    dir.join(format!("{source}.txt"))
}

/// Previous URLs of a list (kept: lists only grow, like the manifest).
fn read_list(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Crawl `sources`, then update the lists and the manifest.
pub async fn run(sources: &[&Source], opts: &Options, progress: Arc<dyn Progress>) -> Result<Report> {
    let started = Instant::now();
    // Refuse to overwrite a manifest we cannot read: it is the last good one.
    let mut manifest = if opts.manifest.exists() {
        Manifest::load(&opts.manifest, Some(&opts.lists_dir)).context("the existing manifest (left as it is)")?
    } else {
        Manifest::default()
    };
    // Outputs go only where no other user can plant links or swap directories.
    for dir in [opts.lists_dir.as_path(), crate::files::parent_dir(&opts.manifest)] {
        crate::files::create_owned_dir_all(dir)?;
    }
    let fetch = http::IndexFetcher::new(&opts.fetch, opts.index_cache.clone())?;
    let limit = Arc::new(tokio::sync::Semaphore::new(opts.parallel.max(1)));
    let history = state::read(&opts.state);
    let now = crate::util::now_secs();
    let (sources, backing_off): (Vec<&Source>, Vec<&Source>) =
        sources.iter().copied().partition(|s| !opts.backoff || state::due(&history, &s.name, now));
    let backing_off: Vec<(String, u64)> = backing_off
        .iter()
        .map(|s| (s.name.clone(), history.get(&s.name).map_or(now, state::SourceState::next_try)))
        .collect();
    let tasks: Vec<_> = sources
        .iter()
        .map(|src| {
            let (src, fetch, progress, limit) = ((*src).clone(), fetch.clone(), progress.clone(), limit.clone());
            tokio::spawn(async move {
                let _permit = limit.acquire_owned().await;
                let result = crawl_one(&src, &fetch, progress.as_ref()).await;
                (src, result)
            })
        })
        .collect();
    let mut reports = Vec::new();
    // Per source, the entries it gave that the manifest did not have: what
    // is new is known only after merging ([`crate::manifest::collapse`]).
    let mut gave: Vec<Vec<String>> = Vec::new();
    let before = manifest.clone();
    for task in tasks {
        let (src, result) = task.await.map_err(|e| anyhow!("crawl task failed: {e}"))?;
        let outcome = match result {
            Ok(found) => {
                let mut urls = read_list(&list_path(&opts.lists_dir, &src.name));
                let mut unseen = Vec::new();
                for packages in &found.bundles {
                    urls.extend(packages.iter().map(|p| p.url.clone()));
                    let entry = BundleSpec {
                        kind: src.layout.clone(),
                        name: None,
                        uname: packages.first().and_then(|p| found.unames.get(&p.url)).cloned(),
                        signed_by: src.package_key().map(|k| k.reference()),
                        packages: packages.clone(),
                    };
                    let mut entry = entry;
                    let id = entry.compute_id();
                    match manifest.entries.get(&id) {
                        Some(old) => crate::manifest::keep_locations(old, &mut entry),
                        None => unseen.push(id),
                    }
                    manifest.insert(entry);
                }
                let text: String = urls.iter().map(|u| format!("{u}\n")).collect();
                match crate::util::write_atomic(&list_path(&opts.lists_dir, &src.name), text.as_bytes()) {
                    Ok(()) => {
                        gave.push(unseen);
                        Outcome::Ok { packages: found.package_count(), bundles: found.bundles.len(), new: 0 }
                    }
                    Err(e) => Outcome::Refused(format!("writing its list: {e:#}")),
                }
            }
            Err(e) => Outcome::of_error(&e),
        };
        if !matches!(outcome, Outcome::Ok { .. }) {
            gave.push(Vec::new());
        }
        reports.push(SourceReport { name: src.name.clone(), outcome });
    }
    let existing: BTreeSet<String> = before.entries.keys().cloned().collect();
    let merged = crate::manifest::collapse(&mut manifest, &existing);
    // New: an entry the manifest did not have that is still one after
    // merging (not another location of an entry it had). Each is counted
    // for the first source that gave it.
    let mut counted = BTreeSet::new();
    let mut new_total = 0;
    for (report, ids) in reports.iter_mut().zip(&gave) {
        if let Outcome::Ok { new, .. } = &mut report.outcome {
            *new = ids.iter().filter(|id| manifest.entries.contains_key(*id) && counted.insert((*id).clone())).count();
            new_total += *new;
        }
        progress.done(&report.name, &report.outcome);
    }
    let changed = manifest.entries != before.entries;
    if changed || !opts.manifest.exists() {
        manifest.save(&opts.manifest).with_context(|| format!("writing {}", opts.manifest.display()))?;
        // The index beside it, so a mount of it maps instead of parsing.
        if let Err(e) = crate::manifest::index::sidecar::write(&opts.manifest) {
            log::warn!("crawl: no index beside {}: {e:#}", opts.manifest.display());
        }
    }
    let c = &fetch.counters;
    let report = Report {
        sources: reports,
        bundles_new: new_total,
        bundles_total: manifest.entries.len(),
        merged: merged.iter().filter(|m| m.added_locations).count(),
        backing_off,
        requests: c.requests.load(Ordering::Relaxed),
        not_modified: c.not_modified.load(Ordering::Relaxed),
        bytes: c.bytes.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        manifest_changed: changed,
    };
    if let Err(e) = state::record(&opts.state, &report, crate::util::now_secs()) {
        log::warn!("crawl: not recording the sources' state in {}: {e:#}", opts.state.display());
    }
    log_failures(&report, &history);
    Ok(report)
}
