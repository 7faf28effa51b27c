//! Refresh while mounted: with --crawl-interval, a kernel added to a
//! repository appears at its path, and builds, without a remount; even a
//! name that was looked up (and cached as missing) before.

mod common;

use common::http::{Fault, Server};
use common::mirror::{errno_of, Mounted};
use common::pkgs::{self, real_debian};
use common::repo::{AptRepo, SignedRepo, TestKey};
use common::{build_hello, kpackfs, read, run_ok};
use kpackfs::manifest::Manifest;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn wait_for(path: &Path, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// One apt source for the loopback repository, signed with `keyring`.
fn test_sources(dir: &Path, keyring: &Path) -> PathBuf {
    let sources = dir.join("sources.yml");
    std::fs::write(
        &sources,
        format!(
            "- name: test-debian\n  type: debian\n  kind: apt\n  url: http://archive.example.test/debian\n  suites: [stable]\n  components: [main]\n  architectures: [amd64]\n  packages: ['^linux-headers-.*-amd64$']\n  grouping: depends\n  keyring: {}\n",
            keyring.display()
        ),
    )
    .unwrap();
    sources
}

/// The signed loopback repository and a sources file naming it.
struct Repo {
    work: tempfile::TempDir,
    key: TestKey,
    fx: pkgs::Synthetic,
    repo: AptRepo,
    server: Server,
    sources: PathBuf,
}

impl Repo {
    fn new() -> Repo {
        let SignedRepo { work, key, fx, repo, server } = SignedRepo::new(["xz", "xz", "xz"]);
        let sources = test_sources(work.path(), &key.keyring);
        Repo { work, key, fx, repo, server, sources }
    }
}

#[test]
fn new_kernel_appears_while_mounted() {
    let Repo { work, key, fx, repo, server, sources } = Repo::new();
    let empty = work.path().join("empty.yml");
    std::fs::write(&empty, "# no bundles yet\n").unwrap();
    let args: Vec<String> = [
        "--crawl-interval",
        "1s",
        "--sources",
        sources.to_str().unwrap(),
        "--no-apt-mirrors",
        "--mirror",
        &format!("http://archive.example.test={}", server.url("")),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let m = Mounted::start(&empty, None, &args);

    let first = m.path(&format!("debian/{}", fx.name));
    assert!(wait_for(&first, Duration::from_secs(30)), "the first crawl shows {}: {}", fx.name, m.log());
    assert_eq!(read(&first.join("BUNDLE_UNAME")), fx.uname);

    // A failed crawl changes nothing that is being served.
    server.set_fault("/debian/dists/stable/InRelease", Fault::Status(500));
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed_note = |m: &Mounted| m.status()["manifest"].as_str().unwrap_or_default().contains("1 unreachable");
    while !failed_note(&m) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(failed_note(&m), "status reports the failed crawl: {}", m.status());
    // Per source: the last error, and the last success kept.
    let status = m.status();
    let source = &status["crawl_sources"]["test-debian"];
    assert_eq!(source["state"], "unreachable", "{status}");
    assert!(source["last_error"].as_str().unwrap_or_default().contains("HTTP 500"), "{status}");
    assert!(source["last_success"].as_u64().is_some(), "{status}");
    let text = std::fs::read_to_string(m.path(".kpackfs/status")).unwrap();
    let line = text.lines().find(|l| l.contains("test-debian")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("unreachable") && line.contains("--json"), "one line, the cause in --json: {text}");
    let log = m.log();
    let lines = log.lines().filter(|l| l.contains("crawl test-debian: unreachable")).count();
    assert!(lines >= 1, "{log}");
    assert_eq!(read(&first.join("BUNDLE_UNAME")), fx.uname, "still served");
    let listed = std::fs::read_dir(m.path("debian")).unwrap().count();
    assert_eq!(listed, 2, "the bundle and its .tgz are still listed");
    server.clear_faults();

    // A name looked up before it exists is cached as missing by the kernel.
    let deb = real_debian();
    let second = m.path(&format!("debian/{}", deb.uname));
    assert_eq!(errno_of(std::fs::metadata(&second)), Some(libc::ENOENT));
    repo.add(&deb.files());
    repo.publish(Some(&key));
    assert!(wait_for(&second, Duration::from_secs(30)), "the new kernel appears without a remount: {}", m.log());
    let listing: Vec<String> = std::fs::read_dir(m.path("debian"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(listing.contains(&deb.uname) && listing.contains(&format!("{}.tgz", deb.uname)), "{listing:?}");
    let vermagic = build_hello(&second, &work.path().join("hello"));
    assert!(vermagic.starts_with(&deb.uname), "{vermagic}");
}

#[test]
fn default_mount_serves_the_shipped_manifest_merged_with_the_last_crawl() {
    let Repo { work, key: _key, fx, repo: _repo, server, sources } = Repo::new();
    let mirror = format!("http://archive.example.test={}", server.url(""));
    let cache = work.path().join("cache");
    // `kpackfs crawl` without --manifest or --lists-dir writes into the cache directory.
    let crawled = run_ok(kpackfs().arg("crawl").arg("--sources").arg(&sources).arg("--cache-dir").arg(&cache).args([
        "--no-apt-mirrors",
        "--mirror",
        &mirror,
    ]));
    assert!(cache.join("crawl/kernel-package-lists/test-debian.txt").exists());
    let serves = format!("a mount of {} serves ", cache.display());
    let counted = crawled.lines().find_map(|l| l.strip_prefix(serves.as_str())).unwrap_or_else(|| panic!("{crawled}"));

    let m = Mounted::start_default(&cache, &["--no-apt-mirrors".to_string(), "--mirror".to_string(), mirror]);
    let shipped = Manifest::load(&common::repo().join("manifest.yml"), None).unwrap();
    let listed: Vec<String> = std::fs::read_dir(m.path("debian"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let shipped_debian: Vec<&str> =
        shipped.entries.values().filter(|e| e.kind == "debian").filter_map(|e| e.name.as_deref()).collect();
    assert!(!shipped_debian.is_empty());
    for name in &shipped_debian {
        assert!(listed.iter().any(|l| l == name), "shipped bundle {name} is served: {listed:?}");
    }
    assert!(listed.contains(&fx.name), "the crawled bundle is served too: {listed:?}");
    assert_eq!(read(&m.path(&format!("debian/{}/BUNDLE_UNAME", fx.name))), fx.uname);
    let note = m.status()["manifest"].as_str().unwrap_or_default().to_string();
    assert!(note.contains("shipped") && note.contains("merged with the crawl result"), "{note}");
    // Issue 24 item 5: one count of entries everywhere, the crawl's, the mount's log's and status's.
    let entries = format!(" bundles shown of {} entries", shipped.entries.len() + 1);
    assert!(counted.contains(&entries), "the shipped entries and the crawled one: {counted}");
    let status = std::fs::read_to_string(m.path(".kpackfs/status")).unwrap();
    assert!(status.contains(&format!("manifest: {counted}")), "status counts as the crawl did ({counted}): {status}");
    assert!(m.log().contains(&format!("({counted};")), "the mount's log counts so too ({counted}): {}", m.log());
}

#[test]
fn hand_crawls_manifest_edits_and_sighup_reload_while_mounted() {
    let Repo { work, key: _key, fx, repo: _repo, server, sources } = Repo::new();
    let mirror = format!("http://archive.example.test={}", server.url(""));
    let cache = work.path().join("cache");
    let manifest = work.path().join("manifest.yml");
    std::fs::write(&manifest, "# no bundles yet\n").unwrap();
    let m = Mounted::start(&manifest, Some(&cache), &["--no-apt-mirrors".into(), "--mirror".into(), mirror.clone()]);

    // `kpackfs crawl` by hand into the mount's cache directory.
    run_ok(kpackfs().arg("crawl").arg("--sources").arg(&sources).arg("--cache-dir").arg(&cache).args([
        "--no-apt-mirrors",
        "--mirror",
        &mirror,
    ]));
    let crawled = m.path(&format!("debian/{}", fx.name));
    assert!(wait_for(&crawled, Duration::from_secs(15)), "a hand crawl shows up: {}", m.log());
    assert_eq!(read(&crawled.join("BUNDLE_UNAME")), fx.uname);

    // An edit of --manifest adds its bundles.
    let mut edited = Manifest::default();
    edited.insert(ubuntu_spec(3));
    edited.save(&manifest).unwrap();
    let added = m.path("ubuntu/9.8.0-3-generic");
    let edited_at = Instant::now();
    assert!(wait_for(&added, Duration::from_secs(5)), "the edit shows up: {}", m.log());
    assert!(edited_at.elapsed() < Duration::from_secs(10), "noticed by the 2 s poll: {:?}", edited_at.elapsed());

    // A malformed edit changes nothing; the daemon says why.
    std::fs::write(&manifest, "{ this is: [not a manifest\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !m.log().contains("reload: keeping the served manifest") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(m.log().contains("reload: keeping the served manifest"), "{}", m.log());
    assert!(added.exists() && crawled.exists(), "nothing disappears");

    // SIGHUP reloads at once, even an edit the poll cannot see: the same
    // length and mtime as the malformed file it replaces.
    let third = ubuntu_spec(4);
    edited.insert(third);
    let valid = edited.to_yaml().unwrap();
    let malformed = format!("{{ this is: [not a manifest\n{}", "#".repeat(valid.len() - 27));
    assert_eq!(malformed.len(), valid.len());
    let refusals = |m: &Mounted| m.log().matches("reload: keeping the served manifest").count();
    let before = refusals(&m);
    std::fs::write(&manifest, &malformed).unwrap();
    let mtime = std::fs::metadata(&manifest).unwrap().modified().unwrap();
    // The poll has seen the malformed file when it says so again.
    let deadline = Instant::now() + Duration::from_secs(15);
    while refusals(&m) == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(refusals(&m) > before, "the poll saw the malformed file: {}", m.log());
    std::fs::write(&manifest, &valid).unwrap();
    std::fs::File::options().write(true).open(&manifest).unwrap().set_modified(mtime).unwrap();
    // Proving a miss takes time: more than one 2 s poll period.
    std::thread::sleep(Duration::from_millis(4500));
    let third_path = m.path("ubuntu/9.8.0-4-generic");
    assert!(!third_path.exists(), "the poll cannot see it");
    // SAFETY: plain kill(2) on our own child daemon.
    unsafe { libc::kill(m.pid as i32, libc::SIGHUP) };
    assert!(wait_for(&third_path, Duration::from_secs(2)), "SIGHUP reloads: {}", m.log());
    assert!(m.log().contains("SIGHUP: reloading the manifest"), "{}", m.log());
    assert!(m.alive(), "SIGHUP does not stop the daemon");
    assert!(added.exists() && crawled.exists());

    // An edit that drops an entry: the served manifest only grows (the
    // kernel may hold the dropped one's entries cached); it stays readable.
    let mut fewer = Manifest::default();
    fewer.insert(ubuntu_spec(4));
    fewer.save(&manifest).unwrap();
    // SAFETY: plain kill(2) on our own child daemon.
    unsafe { libc::kill(m.pid as i32, libc::SIGHUP) };
    let reloads = |m: &Mounted| m.log().matches("SIGHUP: reloading the manifest").count();
    let deadline = Instant::now() + Duration::from_secs(15);
    while reloads(&m) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(reloads(&m), 2, "{}", m.log());
    std::thread::sleep(Duration::from_millis(500));
    assert!(added.exists(), "an entry dropped from the file is still served");
    let listing: Vec<String> = std::fs::read_dir(m.path("ubuntu"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(listing.contains(&"9.8.0-3-generic".to_string()), "and still listed: {listing:?}");
}

/// An Ubuntu entry `9.8.0-<abi>-generic` (its packages are never fetched).
fn ubuntu_spec(abi: u32) -> kpackfs::manifest::BundleSpec {
    let files = [
        format!("linux-headers-9.8.0-{abi}-generic_9.8.0-{abi}.{abi}_amd64.deb"),
        format!("linux-headers-9.8.0-{abi}_9.8.0-{abi}.{abi}_all.deb"),
    ];
    kpackfs::manifest::BundleSpec {
        kind: "ubuntu".into(),
        name: None,
        uname: None,
        signed_by: None,
        packages: files
            .iter()
            .map(|f| kpackfs::manifest::Package {
                also: Vec::new(),
                url: format!("http://archive.example.test/ubuntu/pool/main/l/linux/{f}"),
                sha256: None,
                sha512: None,
                size: None,
            })
            .collect(),
    }
}
