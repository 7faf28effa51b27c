//! Live coverage (issue 10, proof): what the Debian archive holds, read by
//! apt itself (bench/archive_kernels.py: a private apt configuration per
//! suite and architecture against the host's mirror; a kernel is an image
//! package with its headers package), against what kpackfs finds:
//! - a crawl of the shipped Debian sources finds every kernel of the seven
//!   suites, amd64 and arm64, with apt's sha256 (and the checker does
//!   report a kernel that is missing);
//! - `kpackfs mount MNT` with nothing but a cache directory lists every one
//!   of them within 2 minutes, and a 6.12+deb12 kernel builds a module with
//!   the host's gcc-12 and the right vermagic.

mod common;

use common::mirror::Mounted;
use common::{build_hello, kpackfs, repo, run_ok, tempdir};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn archive_kernels(work: &Path, args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .arg(repo().join("bench/archive_kernels.py"))
        .arg("--work")
        .arg(work.join("apt"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn live_the_crawl_and_the_default_mount_have_every_kernel_the_archive_holds() {
    let work = tempdir();
    let manifest = work.path().join("manifest.yml");
    let out = run_ok(
        kpackfs()
            .args(["crawl", "debian", "--lists-dir"])
            .arg(work.path().join("lists"))
            .arg("--manifest")
            .arg(&manifest)
            .arg("--cache-dir")
            .arg(work.path().join("crawl-cache")),
    );
    assert!(out.contains("7 ok, 0 unreachable, 0 refused"), "{out}");
    let json = work.path().join("manifest.json");
    std::fs::write(&json, run_ok(kpackfs().args(["list", "--json", "--manifest"]).arg(&manifest))).unwrap();
    let report = work.path().join("report.json");
    let out =
        archive_kernels(work.path(), &["--manifest-json", json.to_str().unwrap(), "--json", report.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the crawl misses kernels the archive holds:\n{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reading: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let rows = reading["rows"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 14, "seven suites, two architectures");
    let held = |suite: &str, arch: &str| {
        rows.iter().find(|r| r["suite"] == suite && r["arch"] == arch).unwrap()["kernels"].as_array().unwrap().clone()
    };
    assert!(held("bookworm-security", "amd64").iter().any(|k| k.as_str().unwrap().contains("+deb12-amd64")), "{table}");
    assert!(!held("bookworm-security", "arm64").is_empty(), "{table}");

    // The checker can fail: a manifest without one kernel is reported.
    let mut entries: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let at = entries.iter().position(|e| e["name"].as_str().is_some_and(|n| n.ends_with("+deb12-rt-amd64"))).unwrap();
    let dropped = entries.remove(at)["name"].as_str().unwrap().to_string();
    std::fs::write(&json, serde_json::to_vec(&entries).unwrap()).unwrap();
    let out = archive_kernels(
        work.path(),
        &["--manifest-json", json.to_str().unwrap(), "--suites", "bookworm-security", "--arches", "amd64"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains(&format!("missed 1: {dropped}")), "{text}");

    // The mount as shipped: nothing but a cache directory.
    let m = Mounted::start_as_shipped(&work.path().join("cache"));
    let started = Instant::now();
    let debian_crawled = |m: &Mounted| {
        let status = m.status();
        let sources = &status["crawl_sources"];
        [
            "bookworm",
            "bookworm-updates",
            "bookworm-security",
            "trixie",
            "trixie-security",
            "bullseye",
            "bullseye-security",
        ]
        .iter()
        .all(|s| sources[format!("debian-{s}")]["state"] == "ok")
    };
    while !debian_crawled(&m) && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(debian_crawled(&m), "the background crawl ran within 2 minutes: {}\n{}", m.status(), m.log());
    let names: Vec<String> = std::fs::read_dir(m.path("debian"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let listing = work.path().join("listing.txt");
    std::fs::write(&listing, names.join("\n")).unwrap();
    let out = archive_kernels(work.path(), &["--listing", listing.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "the default mount misses kernels:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A 6.12 backport kernel builds with bookworm's gcc-12.
    let mut backports: Vec<&String> = names.iter().filter(|n| n.ends_with("+deb12-amd64")).collect();
    backports.sort_by_key(|n| n.split(['.', '+']).take(3).map(|x| x.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>());
    let newest = backports.last().expect("a 6.12+deb12 kernel");
    let vermagic = build_hello(&m.path(&format!("debian/{newest}")), &work.path().join("hello"));
    assert!(vermagic.starts_with(newest.as_str()), "{vermagic}");
}
