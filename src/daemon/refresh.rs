//! Keeping a mount's manifest current without a remount.
//!
//! Three things bring new bundles: the background crawl (`--crawl-interval`),
//! a `kpackfs crawl` run by hand into the same cache directory, and an edit
//! of the `--manifest` file. The daemon polls the two files (a `stat` each,
//! every [`POLL`]) and reloads on SIGHUP. Bundles are only ever added: the
//! served manifest is the union of everything loaded, because the kernel may
//! cache any entry it has seen for as long as it likes. A file that fails to
//! load changes nothing; the daemon logs why and keeps serving. The mount
//! and `kpackfs serve` share this reload.

use crate::crawl::state::States;
use crate::namespace::served::{Inputs, Stamp};
use crate::namespace::{Changes, Current, Namespace};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// How often the manifest files are checked for changes.
pub const POLL: Duration = Duration::from_secs(2);

/// Each crawl source's last outcome, as `<cache>/crawl/sources.json` said
/// when last read: when a crawl ends (by hand or in the background), not at
/// every status rendering.
pub struct CrawlStates {
    path: PathBuf,
    states: Mutex<States>,
}

impl CrawlStates {
    pub fn open(cache_dir: &std::path::Path) -> Arc<CrawlStates> {
        let path = crate::crawl::state_path(cache_dir);
        let states = Mutex::new(crate::crawl::state::read(&path));
        Arc::new(CrawlStates { path, states })
    }

    pub fn get(&self) -> States {
        self.states.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn reread(&self) {
        let states = crate::crawl::state::read(&self.path);
        *self.states.lock().unwrap_or_else(|e| e.into_inner()) = states;
    }
}

/// Told what a reload added.
pub type OnChange = Box<dyn Fn(&Changes) + Send + Sync>;

/// What is served, and where it came from: one reload for everything that
/// serves the namespace (the mount, `kpackfs serve`, status).
pub struct Served {
    current: Arc<Current>,
    inputs: Inputs,
    state: Mutex<State>,
    /// Told what each reload added (the filesystem invalidates the kernel's entries).
    on_change: OnceLock<OnChange>,
    crawl: Arc<CrawlStates>,
}

struct State {
    stamps: (Stamp, Stamp),
    last_crawl: Option<String>,
}

impl Served {
    /// `stamps`: the inputs' stamps from before the namespace was built.
    pub fn new(
        current: Arc<Current>,
        inputs: Inputs,
        stamps: (Stamp, Stamp),
        cache_dir: &std::path::Path,
    ) -> Arc<Self> {
        Arc::new(Served {
            current,
            inputs,
            state: Mutex::new(State { stamps, last_crawl: None }),
            on_change: OnceLock::new(),
            crawl: CrawlStates::open(cache_dir),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn current(&self) -> &Arc<Current> {
        &self.current
    }

    /// Call `f` with what each reload adds.
    pub fn on_change(&self, f: OnChange) {
        let _ = self.on_change.set(f);
    }

    /// Where the manifest comes from and the last crawl, for status.
    pub fn note(&self) -> String {
        let state = self.lock();
        let mut note = self.inputs.origin();
        if let Some(crawl) = &state.last_crawl {
            note.push_str(&format!(" (last crawl: {crawl})"));
        }
        note
    }

    pub fn set_last_crawl(&self, summary: String) {
        self.lock().last_crawl = Some(summary);
        self.crawl.reread();
    }

    pub fn crawl_states(&self) -> &Arc<CrawlStates> {
        &self.crawl
    }

    /// Reload when a manifest file changed since last seen, or always with
    /// `force`. Blocking (parses files): call it off the async workers.
    pub fn reload(&self, force: bool) {
        let mut state = self.lock();
        let stamps = self.inputs.stamps();
        if !force && stamps == state.stamps {
            return;
        }
        state.stamps = stamps;
        // A crawl by hand changes the crawl result and the sources' states.
        self.crawl.reread();
        let current = self.current.get();
        match self.inputs.index(Some(current.index()), false) {
            Ok(index) if index.counts.slots != current.index().counts.slots => {
                let changes = self.current.replace(Namespace::new(index));
                if let Some(f) = self.on_change.get() {
                    f(&changes);
                }
                log::info!(
                    "manifest reloaded: {} new bundles shown; {}",
                    changes.added_bundles,
                    self.current.get().index().counts.summary()
                );
            }
            Ok(_) => log::debug!("manifest reloaded: nothing new"),
            Err(e) => log::warn!("reload: keeping the served manifest: {e:#}"),
        }
    }

    /// Poll the manifest files until the process ends.
    pub fn watch(self: &Arc<Self>) {
        let me = self.clone();
        let spawned = std::thread::Builder::new().name("kpackfs-reload".into()).spawn(move || loop {
            std::thread::sleep(POLL);
            me.reload(false);
        });
        if let Err(e) = spawned {
            log::warn!("not watching the manifest files: {e}");
        }
    }
}

/// The background crawl: the same refresh as `kpackfs crawl`, into
/// `<cache-dir>/crawl/`; each result that changes the manifest is swapped
/// into the namespace. A failed crawl changes nothing that is being served.
pub struct Crawler {
    pub served: Arc<Served>,
    pub sources: Vec<crate::crawl::sources::Source>,
    pub cache_dir: PathBuf,
    pub fetch: crate::fetch::FetchConfig,
}

/// A stale crawl result is refreshed this soon after start (the mount
/// settles first; a short interval, as tests use, comes sooner).
const FIRST_CRAWL_DELAY: Duration = Duration::from_secs(5);

/// How long to wait before the first crawl: until the last crawl result
/// (its file's age) is older than `interval`.
pub fn first_crawl_wait(last_crawl: Option<SystemTime>, interval: Duration, now: SystemTime) -> Duration {
    let age = last_crawl.and_then(|t| now.duration_since(t).ok());
    match age {
        Some(age) if age < interval => interval - age,
        _ => FIRST_CRAWL_DELAY.min(interval),
    }
}

impl Crawler {
    pub async fn run(self, interval: Duration) {
        let (lists_dir, manifest) = crate::crawl::default_paths(&self.cache_dir);
        let last = std::fs::metadata(&manifest).and_then(|m| m.modified()).ok();
        let wait = first_crawl_wait(last, interval, SystemTime::now());
        log::info!(
            "background crawl every {}; the next in {}",
            crate::util::human_duration(interval),
            crate::util::human_duration(wait)
        );
        tokio::time::sleep(wait).await;
        let opts = crate::crawl::Options {
            lists_dir,
            manifest,
            index_cache: self.cache_dir.join("crawl/index-cache"),
            fetch: self.fetch.clone(),
            parallel: 2,
            state: crate::crawl::state_path(&self.cache_dir),
            backoff: true,
        };
        loop {
            let selected: Vec<&crate::crawl::sources::Source> = self.sources.iter().collect();
            match crate::crawl::run(&selected, &opts, Arc::new(crate::crawl::LogProgress)).await {
                Ok(report) => {
                    // Each source has had its one line (LogProgress); this is the totals.
                    log::info!("crawl: {}", report.totals());
                    self.served.set_last_crawl(format!(
                        "{} sources: {} ok, {} unreachable, {} refused, {} backing off",
                        report.sources.len() + report.backing_off.len(),
                        report.count("ok"),
                        report.count("unreachable"),
                        report.count("refused"),
                        report.backing_off.len()
                    ));
                    if report.manifest_changed {
                        let served = self.served.clone();
                        let _ = tokio::task::spawn_blocking(move || served.reload(true)).await;
                    }
                }
                Err(e) => log::warn!("crawl failed, nothing changed: {e:#}"),
            }
            tokio::time::sleep(interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_crawl_waits_for_the_last_one_to_age() {
        let now = SystemTime::now();
        let six_h = Duration::from_secs(6 * 3600);
        assert_eq!(first_crawl_wait(None, six_h, now), FIRST_CRAWL_DELAY);
        let hour_ago = now - Duration::from_secs(3600);
        assert_eq!(first_crawl_wait(Some(hour_ago), six_h, now), Duration::from_secs(5 * 3600));
        let week_ago = now - Duration::from_secs(7 * 86400);
        assert_eq!(first_crawl_wait(Some(week_ago), six_h, now), FIRST_CRAWL_DELAY);
        assert_eq!(first_crawl_wait(None, Duration::from_secs(1), now), Duration::from_secs(1));
    }
}
