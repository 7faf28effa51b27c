//! Each source's crawl history (`<cache>/crawl/sources.json`): when it
//! last succeeded, and its last error. Every crawl, by hand or in the
//! background, updates it; `kpackfs status` shows it.

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
        std::fs::write(&path, b"{not json").unwrap();
        assert!(read(&path).is_empty(), "a damaged file reads as no history");
    }
}
