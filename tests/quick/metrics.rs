//! Every documented metric moves when its event happens, read from the
//! mount's own `/.kpackfs/metrics` (the same text `--metrics` serves), and
//! the documentation lists exactly the series the code renders.

use super::harness::{Harness, Options};
use kpackfs::fetch::source::Fault;
use std::sync::Arc;
use std::time::Duration;

const U: [&str; 3] = ["9.1.0-1-amd64", "9.1.0-2-amd64", "9.1.0-3-amd64"];

fn metrics(h: &Harness) -> String {
    String::from_utf8(h.read_file(".kpackfs/metrics").unwrap()).unwrap()
}

/// The sum of a series' samples: `name` (every label set) or
/// `name{label="value"` (the sets that start with that label).
fn value(text: &str, prefix: &str) -> f64 {
    let matches = |series: &str| match prefix.contains('{') {
        true => series.starts_with(prefix),
        false => series == prefix || series.starts_with(&format!("{prefix}{{")),
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.rsplit_once(' ').is_some_and(|(series, _)| matches(series)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn tier(dir: &std::path::Path) -> Arc<kpackfs::remote::Remote> {
    let url = url::Url::from_directory_path(dir).unwrap().to_string();
    let opts = kpackfs::remote::RemoteOptions {
        stall: Duration::from_secs(2),
        deadline: Duration::from_secs(10),
        read_only: false,
    };
    Arc::new(kpackfs::remote::Remote::open(&url, opts).unwrap())
}

#[test]
fn every_documented_metric_moves_when_its_event_happens() {
    let bucket = tempfile::tempdir().unwrap();
    let h = Harness::new(&U, 50_000, Options { remote: Some(tier(bucket.path())), zeros: true, ..Options::default() });
    let before = metrics(&h);
    for series in ["kpackfs_hits_total", "kpackfs_misses_total", "kpackfs_evictions_total", "kpackfs_damaged_total"] {
        assert_eq!(value(&before, series), 0.0, "{series} starts at 0:\n{before}");
    }
    assert_eq!(value(&before, "kpackfs_bundles"), 3.0);

    // A build: a miss, a build, bytes downloaded, phase times, cache use, a write to the tier.
    h.read_file(&format!("debian/{}/BUNDLE_UNAME", U[0])).unwrap();
    let digest = bucket.path().join(kpackfs::remote::digest_key(&h.bundle_id(0)).as_ref());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !digest.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let built = metrics(&h);
    assert_eq!(value(&built, "kpackfs_misses_total"), 1.0);
    assert_eq!(value(&built, "kpackfs_builds_total{outcome=\"ok\""), 1.0);
    assert!(value(&built, "kpackfs_downloaded_bytes_total") > 0.0);
    assert!(value(&built, "kpackfs_phase_seconds_count{phase=\"fetch\"") >= 1.0);
    assert!(value(&built, "kpackfs_phase_seconds_count{phase=\"extract\"") >= 1.0);
    assert!(value(&built, "kpackfs_cache_bytes") > 0.0);
    assert_eq!(value(&built, "kpackfs_cache_bundles"), 1.0);
    assert!(value(&built, "kpackfs_cache_packages") >= 1.0);
    assert_eq!(value(&built, "kpackfs_remote_writes_total"), 1.0, "{built}");

    // A hit; a .tgz (compress phase).
    h.read_file(&format!("debian/{}/BUNDLE_UNAME", U[0])).unwrap();
    h.read_file(&format!("debian/{}.tgz", U[0])).unwrap();
    let hit = metrics(&h);
    assert!(value(&hit, "kpackfs_hits_total") >= 1.0);
    assert!(value(&hit, "kpackfs_phase_seconds_count{phase=\"compress\"") >= 1.0);

    // A failure.
    h.source.add("linux-headers-9.1.0-3", Fault::Status(500), 0, None);
    assert!(h.read_file(&format!("debian/{}/BUNDLE_UNAME", U[2])).is_err());
    assert_eq!(value(&metrics(&h), "kpackfs_builds_total{outcome=\"failed\""), 1.0);
    h.source.clear();

    // An eviction: a budget for one bundle.
    let mut h = h;
    h.opts.budget = h.cache.usage().used + 1000;
    let id0 = h.ids[0].clone();
    let h = h.restart_after(|cache| {
        // And a damaged pack, found at the next use.
        let pack = cache.join(format!("bundles/{id0}.pack"));
        let mut bytes = std::fs::read(&pack).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&pack, bytes).unwrap();
        // A crawl happened: one source ok, one unreachable.
        let report = kpackfs::crawl::Report {
            sources: vec![
                kpackfs::crawl::SourceReport {
                    name: "good".into(),
                    outcome: kpackfs::crawl::Outcome::Ok { packages: 1, bundles: 1, new: 1 },
                },
                kpackfs::crawl::SourceReport {
                    name: "down".into(),
                    outcome: kpackfs::crawl::Outcome::Unreachable("refused".into()),
                },
            ],
            bundles_new: 1,
            bundles_total: 1,
            backing_off: Vec::new(),
            merged: 0,
            requests: 1,
            not_modified: 0,
            bytes: 1,
            elapsed: Duration::ZERO,
            manifest_changed: true,
        };
        let state = kpackfs::crawl::state_path(cache);
        std::fs::create_dir_all(state.parent().unwrap()).unwrap();
        kpackfs::crawl::state::record(&state, &report, 1_800_000_000).unwrap();
    });
    h.read_file(&format!("debian/{}/BUNDLE_UNAME", U[0])).unwrap();
    h.read_file(&format!("debian/{}/BUNDLE_UNAME", U[1])).unwrap();
    let after = metrics(&h);
    assert_eq!(value(&after, "kpackfs_damaged_total"), 1.0, "{after}");
    assert!(value(&after, "kpackfs_evictions_total") >= 1.0, "{after}");
    assert_eq!(value(&after, "kpackfs_crawl_source_ok{source=\"good\""), 1.0);
    assert_eq!(value(&after, "kpackfs_crawl_source_ok{source=\"down\""), 0.0);
    assert!(after.contains("kpackfs_crawl_source_ok{source=\"down\"} 0"), "present, at 0");
    assert_eq!(value(&after, "kpackfs_crawl_source_last_success_seconds{source=\"good\""), 1_800_000_000.0);

    // The tier: another host installs from it; a damaged object is an error.
    let other =
        Harness::new(&U, 50_000, Options { remote: Some(tier(bucket.path())), zeros: true, ..Options::default() });
    other.read_file(&format!("debian/{}/BUNDLE_UNAME", U[0])).unwrap();
    let m = metrics(&other);
    assert_eq!(value(&m, "kpackfs_remote_hits_total"), 1.0, "{m}");
    let key = bucket.path().join(kpackfs::remote::id_key(&h.bundle_id(1)).as_ref());
    // Written last: the .tgz's digest (the pack goes first).
    let tgz_digest = bucket.path().join(kpackfs::remote::digest_key(&h.bundle_id(1)).as_ref());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !tgz_digest.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The damaged object is the .tgz: without the pack, the host reads it.
    super::remote::without_pack(bucket.path(), &h.bundle_id(1));
    let mut bytes = std::fs::read(&key).unwrap();
    bytes[200] ^= 1;
    std::fs::write(&key, bytes).unwrap();
    other.read_file(&format!("debian/{}/BUNDLE_UNAME", U[1])).unwrap();
    assert_eq!(value(&metrics(&other), "kpackfs_remote_errors_total"), 1.0);
    assert!(value(&metrics(&other), "kpackfs_fuse_requests_total") == 0.0, "the adapter counts requests, not the core");
}

/// The series operations.md lists are the ones rendered, no more, no fewer.
#[test]
fn the_documented_metrics_are_the_rendered_ones() {
    let bucket = tempfile::tempdir().unwrap();
    let h = Harness::new(&U[..1], 1000, Options { remote: Some(tier(bucket.path())), ..Options::default() });
    // Every series present: a tier, a crawl state, a build with a .tgz.
    let h = h.restart_after(|cache| {
        let report = kpackfs::crawl::Report {
            sources: vec![kpackfs::crawl::SourceReport {
                name: "good".into(),
                outcome: kpackfs::crawl::Outcome::Ok { packages: 1, bundles: 1, new: 1 },
            }],
            bundles_new: 1,
            bundles_total: 1,
            backing_off: Vec::new(),
            merged: 0,
            requests: 1,
            not_modified: 0,
            bytes: 1,
            elapsed: Duration::ZERO,
            manifest_changed: true,
        };
        let state = kpackfs::crawl::state_path(cache);
        std::fs::create_dir_all(state.parent().unwrap()).unwrap();
        kpackfs::crawl::state::record(&state, &report, 1_800_000_000).unwrap();
    });
    h.read_file(&format!("debian/{}.tgz", U[0])).unwrap();
    let text = metrics(&h);
    let mut rendered: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (name, kind) = l.split_once(' ')?;
            Some(if kind == "counter" { format!("{name}_total") } else { name.to_string() })
        })
        .collect();
    rendered.sort();
    let doc =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md")).unwrap();
    let mut documented: Vec<String> = Vec::new();
    for line in doc.lines().filter(|l| l.starts_with("| `kpackfs_")) {
        let cell = line.split('|').nth(1).unwrap_or("");
        for item in cell.split('`').filter(|p| p.starts_with("kpackfs_")) {
            let name = item.split('{').next().unwrap();
            match name.split_once("{hits,writes,errors}") {
                _ if item.contains("_{hits,writes,errors}_total") => {
                    for part in ["hits", "writes", "errors"] {
                        documented.push(format!("kpackfs_remote_{part}_total"));
                    }
                }
                _ => documented.push(name.to_string()),
            }
        }
    }
    documented.sort();
    documented.dedup();
    assert_eq!(documented, rendered, "docs/operations.md's metrics table and the rendered series differ");
}
