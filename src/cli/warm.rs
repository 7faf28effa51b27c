//! `kpackfs warm SELECTOR… [--pin | --unpin]`: build bundles into a
//! running mount's cache ahead of use. Each bundle is built by the daemon
//! itself, by reading its `BUNDLE_UNAME` through the mount, so the builds
//! share the mount's cache, CPU lease and single flight per bundle. It
//! stops rather than let the cache evict a bundle it warmed in this run;
//! `--pin` keeps the warmed bundles from eviction (`<cache>/pinned`,
//! [`crate::cache::kept`]) as long as the pins fit in the budget.

use crate::daemon::mountpoint;
use crate::ids::BundleId;
use crate::lookup::select::select;
use crate::lookup::view::View;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct WarmArgs {
    /// Bundles: NAME, TYPE/NAME, TYPE/ (every bundle of a type), or a regular expression over TYPE/NAME.
    #[arg(value_name = "SELECTOR", required = true)]
    selectors: Vec<String>,
    /// The mount (default: /kernels, else the only kpackfs mount here).
    #[arg(long, value_name = "MOUNTPOINT")]
    mount: Option<PathBuf>,
    /// Keep them from eviction (status shows the pinned bytes against the budget).
    #[arg(long)]
    pin: bool,
    /// Remove their pins; nothing is built.
    #[arg(long, conflicts_with = "pin")]
    unpin: bool,
    /// Bundles asked for at once (default: the CPUs; the daemon's CPU lease bounds the builds).
    #[arg(long)]
    parallel: Option<usize>,
}

/// The mount to warm: `--mount`, else /kernels, else the only one.
fn the_mount(args: &WarmArgs) -> Result<PathBuf> {
    if let Some(m) = &args.mount {
        return Ok(m.clone());
    }
    let mounts = mountpoint::kpackfs_mounts();
    if let Some(k) = mounts.iter().find(|m| m.as_path() == Path::new(super::which::DEFAULT_MOUNT)) {
        return Ok(k.clone());
    }
    match mounts.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no kpackfs mount here: mount one (kpackfs mount /kernels) or give --mount"),
        several => bail!(
            "{} kpackfs mounts here and none at /kernels: give --mount ({})",
            several.len(),
            several.iter().map(|m| m.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// What the mount's status says, read as input (bounded).
struct MountStatus(serde_json::Value);

impl MountStatus {
    fn read(mount: &Path) -> Result<MountStatus> {
        let text = crate::files::read_bounded(&mount.join(".kpackfs/status.json"), 64 << 20)
            .with_context(|| format!("{} is not a kpackfs mount", mount.display()))?;
        Ok(MountStatus(serde_json::from_str(&text).context("reading the mount's status")?))
    }

    fn bundle(&self, id: &BundleId) -> Option<&serde_json::Value> {
        self.0["bundles"].as_array()?.iter().find(|b| b["id"].as_str() == Some(id.hex().as_str()))
    }

    fn ready_bytes(&self, id: &BundleId) -> Option<u64> {
        self.bundle(id).filter(|b| b["state"] == "ready").and_then(|b| b["bytes"].as_u64())
    }

    fn u64(&self, key: &str) -> u64 {
        self.0[key].as_u64().unwrap_or(0)
    }
}

struct Job {
    id: BundleId,
    label: String,
    path: PathBuf,
}

#[derive(Default)]
struct Tally {
    built: Vec<BundleId>,
    /// Built or found cached in this run: what must not be evicted by it.
    warmed: Vec<BundleId>,
    cached: usize,
    failed: Vec<String>,
    stopped: Option<String>,
}

pub fn run(args: WarmArgs) -> Result<ExitCode> {
    let mount = the_mount(&args)?;
    let view = View::of_mount(&mount)?;
    let status = MountStatus::read(&mount)?;
    let cache_dir =
        PathBuf::from(status.0["cache_dir"].as_str().context("the mount's status names no cache directory")?);
    let jobs: Vec<Job> = select(&view.index, &args.selectors)?
        .into_iter()
        .filter_map(|s| {
            let (id, spec, _) = view.index.entry(s)?;
            let name = spec.name?;
            Some(Job { id, label: format!("{}/{name}", spec.kind), path: mount.join(&spec.kind).join(&name) })
        })
        .collect();
    if args.unpin {
        let ids: Vec<BundleId> = jobs.iter().map(|j| j.id).collect();
        let left = crate::cache::kept::update(&cache_dir, &[], &ids)?;
        super::print(&format!("unpinned {} bundles; {} pinned in all\n", ids.len(), left.len()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let started = Instant::now();
    let already: BTreeSet<BundleId> =
        jobs.iter().filter(|j| status.ready_bytes(&j.id).is_some()).map(|j| j.id).collect();
    let budget = status.u64("cache_budget");
    let workers = args.parallel.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1);
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(jobs.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} bundles, ETA {eta} {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let tally = Mutex::new(Tally::default());
    let say = |line: String| match &bar {
        Some(b) => b.println(line),
        None => super::eprint(&format!("{line}\n")),
    };
    std::thread::scope(|scope| {
        for _ in 0..workers.min(jobs.len()) {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                    let took = Instant::now();
                    // Reading a file of the bundle builds it in the daemon (or finds it cached).
                    let read = std::fs::read(job.path.join("BUNDLE_UNAME"));
                    let after = MountStatus::read(&mount);
                    let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
                    match (read, after) {
                        (Err(e), _) => {
                            let why = super::which::why_failed(&mount, &job.label);
                            say(format!("failed  {}: {e} ({why})", job.label));
                            t.failed.push(job.label.clone());
                        }
                        (Ok(_), Err(e)) => {
                            t.stopped = Some(format!("the mount's status is unreadable: {e:#}"));
                            stop.store(true, Ordering::Relaxed);
                        }
                        (Ok(_), Ok(now)) => {
                            if already.contains(&job.id) {
                                t.cached += 1;
                            } else {
                                t.built.push(job.id);
                            }
                            t.warmed.push(job.id);
                            let bytes = now.ready_bytes(&job.id).unwrap_or(0);
                            say(format!(
                                "ready   {} ({}, {})",
                                job.label,
                                crate::util::human_bytes(bytes),
                                if already.contains(&job.id) {
                                    "was cached".to_string()
                                } else {
                                    format!("{:.1}s", took.elapsed().as_secs_f64())
                                }
                            ));
                            if let Some(why) = check(&args, &mount, &cache_dir, &now, &t.warmed, job, bytes, budget) {
                                t.stopped = Some(why);
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                    if let Some(b) = &bar {
                        b.inc(1);
                        b.set_message(job.label.clone());
                    }
                }
            });
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let t = tally.into_inner().unwrap_or_else(|e| e.into_inner());
    let end = MountStatus::read(&mount)?;
    let pinned = if end.u64("pinned_bundles") > 0 {
        format!(
            "; pinned {} bundles, {} of the {} budget",
            end.u64("pinned_bundles"),
            crate::util::human_bytes(end.u64("pinned_bytes")),
            crate::util::human_bytes(budget)
        )
    } else {
        String::new()
    };
    super::print(&format!(
        "warmed {} of {} bundles in {}: {} built, {} already cached, {} failed; cache {} of {}{pinned}\n",
        t.built.len() + t.cached,
        jobs.len(),
        crate::util::human_duration(Duration::from_secs(started.elapsed().as_secs())),
        t.built.len(),
        t.cached,
        t.failed.len(),
        crate::util::human_bytes(end.u64("cache_used")),
        crate::util::human_bytes(budget),
    ))?;
    if let Some(why) = &t.stopped {
        super::eprint(&format!("kpackfs: warm stopped: {why}\n"));
    }
    Ok(if t.failed.is_empty() && t.stopped.is_none() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// After `job` is ready: pin it (if asked and it fits), and say why to stop
/// if going on would evict what this run warmed.
#[allow(clippy::too_many_arguments)]
fn check(
    args: &WarmArgs,
    mount: &Path,
    cache_dir: &Path,
    now: &MountStatus,
    warmed: &[BundleId],
    job: &Job,
    bytes: u64,
    budget: u64,
) -> Option<String> {
    if args.pin {
        // Read again: another worker may have pinned one since `now`.
        let current = MountStatus::read(mount).ok();
        let now = current.as_ref().unwrap_or(now);
        let pinned_bytes = now.u64("pinned_bytes");
        let already_pinned = now.bundle(&job.id).is_some_and(|b| b["pinned"] == true);
        if !already_pinned && pinned_bytes + bytes > budget {
            return Some(format!(
                "pinning {} ({}) would pin {} of a {} budget: raise --cache-size or warm fewer",
                job.label,
                crate::util::human_bytes(bytes),
                crate::util::human_bytes(pinned_bytes + bytes),
                crate::util::human_bytes(budget)
            ));
        }
        if let Err(e) = crate::cache::kept::update(cache_dir, &[job.id], &[]) {
            return Some(format!("pinning {}: {e:#}", job.label));
        }
        return None;
    }
    let evicted = warmed.iter().filter(|id| now.ready_bytes(id).is_none()).count();
    (evicted > 0).then(|| {
        format!(
            "the cache's budget ({}) does not hold what this run warmed ({evicted} already evicted to make room): \
             raise --cache-size, warm fewer, or --pin",
            crate::util::human_bytes(budget)
        )
    })
}
