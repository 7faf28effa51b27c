//! Each source's crawl history (`<cache>/crawl/sources.json`): when it
//! last succeeded, its last error, and how many crawls in a row could not
//! reach it. Every crawl, by hand or in the background, updates it;
//! `kpackfs status` shows it, and a source that keeps being unreachable is
//! tried less and less often ([`due`]), up to once a day.

use super::report::{Outcome, Report};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The file is ours, but bounded anyway.
const MAX_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    /// ok, unreachable or refused: the last crawl's class.
    pub state: String,
    /// Unix seconds of the last crawl of this source, and of its last success.
    pub last_crawl: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<u64>,
    #[serde(default)]
    pub bundles: usize,
    /// Crawls in a row that could not reach it (0 after any other outcome).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unreachable_runs: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The wait after the second unreachable crawl in a row; it doubles with
/// each further one. The first is retried at the next crawl: most
/// failures are transient.
pub const BACKOFF_START: u64 = 3600;
/// The longest wait: a source this host never reaches is still tried daily.
pub const BACKOFF_MAX: u64 = 86_400;

impl SourceState {
    /// Seconds after its last crawl before an unreachable source is tried again.
    pub fn backoff(&self) -> u64 {
        match self.unreachable_runs {
            0 | 1 => 0,
            n => BACKOFF_START.saturating_mul(1u64 << (n - 2).min(16)).min(BACKOFF_MAX),
        }
    }

    /// Unix seconds of its next try (now or earlier when it is due).
    pub fn next_try(&self) -> u64 {
        self.last_crawl.saturating_add(self.backoff())
    }
}

/// Whether a crawl at `now` should try the source (one without history is).
pub fn due(states: &States, name: &str, now: u64) -> bool {
    states.get(name).is_none_or(|s| s.next_try() <= now)
}

pub type States = BTreeMap<String, SourceState>;

/// The recorded states; empty when there are none or the file is unreadable.
pub fn read(path: &Path) -> States {
    use std::io::Read;
    let mut text = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(MAX_BYTES).read_to_end(&mut text));
    match read {
        Ok(_) => serde_json::from_slice(&text).unwrap_or_default(),
        Err(_) => States::new(),
    }
}

/// Fold a crawl's report into the states and write them back.
pub fn record(path: &Path, report: &Report, now: u64) -> anyhow::Result<()> {
    let mut states = read(path);
    for s in &report.sources {
        let st = states.entry(s.name.clone()).or_default();
        st.state = s.outcome.class().to_string();
        st.last_crawl = now;
        st.unreachable_runs = match s.outcome {
            Outcome::Unreachable(_) => st.unreachable_runs.saturating_add(1),
            _ => 0,
        };
        match &s.outcome {
            Outcome::Ok { bundles, .. } => {
                st.last_success = Some(now);
                st.bundles = *bundles;
            }
            failed => {
                st.last_error = failed.cause().map(str::to_string);
                st.last_error_at = Some(now);
            }
        }
    }
    crate::util::write_atomic(path, &serde_json::to_vec_pretty(&states)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crawl::report::SourceReport;

    #[test]
    fn a_failure_keeps_the_last_success() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sources.json");
        let mut report = Report {
            sources: vec![SourceReport { name: "a".into(), outcome: Outcome::Ok { packages: 3, bundles: 1, new: 1 } }],
            bundles_new: 1,
            bundles_total: 1,
            merged: 0,
            backing_off: Vec::new(),
            requests: 0,
            not_modified: 0,
            bytes: 0,
            elapsed: std::time::Duration::ZERO,
            manifest_changed: true,
        };
        record(&path, &report, 100).unwrap();
        report.sources[0].outcome = Outcome::Unreachable("connection refused".into());
        record(&path, &report, 200).unwrap();
        let a = &read(&path)["a"];
        assert_eq!((a.state.as_str(), a.last_crawl, a.last_success, a.bundles), ("unreachable", 200, Some(100), 1));
        assert_eq!((a.last_error.as_deref(), a.last_error_at), (Some("connection refused"), Some(200)));
        assert_eq!(a.unreachable_runs, 1);
        std::fs::write(&path, b"{not json").unwrap();
        assert!(read(&path).is_empty(), "a damaged file reads as no history");
    }

    #[test]
    fn an_unreachable_source_is_tried_less_often_up_to_once_a_day() {
        let mut st = SourceState { last_crawl: 1000, ..SourceState::default() };
        let mut waits = Vec::new();
        for runs in 0..12 {
            st.unreachable_runs = runs;
            waits.push(st.backoff());
        }
        assert_eq!(&waits[..7], &[0, 0, 3600, 7200, 14_400, 28_800, 57_600]);
        assert!(waits[7..].iter().all(|w| *w == BACKOFF_MAX), "{waits:?}");
        st.unreachable_runs = u32::MAX;
        assert_eq!(st.backoff(), BACKOFF_MAX);
        st.unreachable_runs = 3;
        let states = States::from([("a".to_string(), st)]);
        assert!(!due(&states, "a", 1000 + 7199) && due(&states, "a", 1000 + 7200));
        assert!(due(&states, "never crawled", 0));
    }
}
