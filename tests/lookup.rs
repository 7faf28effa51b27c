//! Finding the headers (issue 11): one view for list/bundle/which, every
//! name form, `which` for the identifiers users have, `which --link`, and
//! `/by-uname/`, against real mounts of the loopback mirror fixture.

mod common;

use common::http::Server;
use common::mirror::{Fixture, Mounted};
use common::repo::{AptRepo, TestKey};
use common::{kpackfs, pkgs, read, run_ok, tempdir};
use std::path::Path;
use std::process::{Command, Output};

fn out(cmd: &mut Command) -> (Option<i32>, String, String) {
    let o: Output = cmd.output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn which(m: &Mounted, args: &[&str]) -> (Option<i32>, String, String) {
    out(kpackfs().arg("which").arg("--mount").arg(&m.mnt).args(args))
}

/// Item 1: a bundle a crawl put into the cache directory is seen by list
/// and bundle (they read what a mount with the same settings serves).
#[test]
fn list_and_bundle_see_a_bundle_added_by_a_crawl() {
    let work = tempdir();
    let key = TestKey::new(work.path(), "archive");
    let fx = pkgs::synthetic_debian(work.path(), ["xz", "xz", "xz"]);
    let repo = AptRepo::new(&work.path().join("www/debian"), "stable");
    repo.add(&fx.files);
    repo.publish(Some(&key));
    let server = Server::start();
    server.mount("/", &work.path().join("www"));
    let canonical = "http://archive.example.test";
    let sources = work.path().join("sources.yml");
    std::fs::write(
        &sources,
        format!(
            "- name: t\n  type: debian\n  kind: apt\n  url: {canonical}/debian\n  suites: [stable]\n  components: [main]\n  architectures: [amd64]\n  grouping: depends\n  keyring: {}\n",
            key.keyring.display()
        ),
    )
    .unwrap();
    let cache = work.path().join("cache");
    let mirror = ["--no-apt-mirrors".to_string(), "--mirror".into(), format!("{canonical}={}", server.url(""))];
    let before = run_ok(kpackfs().args(["list", "--cache-dir"]).arg(&cache));
    assert!(!before.contains(&fx.name), "not there before the crawl");
    run_ok(kpackfs().arg("crawl").arg("--sources").arg(&sources).arg("--cache-dir").arg(&cache).args(&mirror));
    let listed = run_ok(kpackfs().args(["list", "--cache-dir"]).arg(&cache));
    let line = listed.lines().find(|l| l.starts_with(&format!("debian/{} ", fx.name))).expect(&listed);
    assert_eq!(line.split_whitespace().nth(2), Some("x86_64"), "{line}");
    assert!(listed.contains("debian/6.1.0-"), "the shipped manifest too");
    let filtered =
        run_ok(kpackfs().args(["list", "--arch", "amd64", "--type", "debian", "9.9.*", "--cache-dir"]).arg(&cache));
    assert_eq!(filtered.lines().count(), 1, "{filtered}");
    let tgz = work.path().join("b.tgz");
    run_ok(
        kpackfs()
            .args(["bundle", &format!("bundle-{}.tgz", fx.name), "-o"])
            .arg(&tgz)
            .arg("--cache-dir")
            .arg(&cache)
            .args(&mirror),
    );
    assert!(tgz.exists());
}

/// Item 1: `| head` ends list quietly, text and JSON, on kernel-packer's manifest.
#[test]
fn list_into_a_closed_pipe_exits_0() {
    let manifest = common::kernel_packer_fixtures().join("manifest.yml");
    let kp = env!("CARGO_BIN_EXE_kpackfs");
    for (args, head) in [("list", "head -1"), ("list --json", "head -c 10"), ("list --all", "head -1")] {
        let script = format!(
            "'{kp}' {args} --manifest '{}' --cache-dir /nonexistent-kpackfs | {head} >/dev/null; echo \"${{PIPESTATUS[0]}}\"",
            manifest.display()
        );
        let (_, stdout, stderr) = out(Command::new("bash").arg("-c").arg(&script));
        assert_eq!(stdout.trim(), "0", "{args} | {head}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // All of it, as JSON: every entry, named.
    let (_, json, _) = out(kpackfs()
        .args(["list", "--json", "--all", "--manifest"])
        .arg(&manifest)
        .args(["--cache-dir", "/nonexistent-kpackfs"]));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(rows.len(), 6473);
    assert!(rows.iter().all(|r| r["state"] != "unnamed"));
    let shadowed = rows.iter().filter(|r| r["state"] == "shadowed").count();
    assert!(rows
        .iter()
        .filter(|r| r["state"] == "shadowed")
        .all(|r| r["served_by"].as_str().is_some_and(|s| s.len() == 64)));
    assert!(shadowed > 0 && shadowed < 1000, "{shadowed}");
}

/// Items 2 and 3: every name form, which's identifiers, and its failures.
#[test]
fn names_and_which_resolve_what_users_have() {
    let fx = Fixture::new(true);
    let m = Mounted::start(&fx.manifest, None, &fx.mirror_args());
    let deb = fx.bundle("debian");
    let ubuntu = fx.bundle("ubuntu");
    let dir = m.path(&format!("debian/{}", deb.name)).display().to_string();
    for form in [
        deb.name.clone(),
        format!("debian/{}", deb.name),
        format!("bundle-{}.tgz", deb.name),
        deb.id.clone(),
        deb.id[..8].to_string(),
    ] {
        let (code, stdout, stderr) = which(&m, &["--dir", &form]);
        assert_eq!((code, stdout.trim()), (Some(0), dir.as_str()), "{form}: {stderr}");
    }
    // A typo: exit 3, the closest names.
    let typo = deb.name.replace("amd64", "amd46");
    let (code, _, stderr) = which(&m, &["--dir", &typo]);
    assert_eq!(code, Some(3));
    assert!(stderr.contains(&format!("closest: {}", deb.name)), "{stderr}");
    let (code, _, stderr) = out(kpackfs().args(["bundle", &typo, "-o", "/dev/null", "--manifest"]).arg(&fx.manifest));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("closest") && stderr.contains(&deb.name), "bundle says it too: {stderr}");

    // which: the release alone gives the build directory (reading BUNDLE_BUILD_DIR builds it).
    let build = m
        .path(&format!("debian/{}", deb.name))
        .join(read(&m.path(&format!("debian/{}/BUNDLE_BUILD_DIR", deb.name))).trim_start_matches("./"));
    let (code, stdout, stderr) = which(&m, &[&deb.uname]);
    assert_eq!((code, stdout.trim()), (Some(0), build.display().to_string().as_str()), "{stderr}");
    // Falco's pair: release and `uname -v` (Debian's package version in it).
    let version = deb_version(&fx.bundle("debian").files[0].0);
    let uname_v = format!("#1 SMP PREEMPT_DYNAMIC Debian {version} (2025-10-05)");
    assert_eq!(
        which(&m, &["--tgz", &deb.uname, &uname_v]).1.trim(),
        format!("{}.tgz", m.path(&format!("debian/{}", deb.name)).display())
    );
    let (code, _, stderr) = which(&m, &["--tgz", &deb.uname, "#1 SMP PREEMPT_DYNAMIC Debian 0.0.1-1 (2025)"]);
    assert_eq!(code, Some(3));
    assert!(stderr.contains("has version 0.0.1-1") && stderr.contains(&version), "{stderr}");
    // Falco's Ubuntu pair: release and kernelversion (the upload number).
    let (code, stdout, stderr) = which(&m, &["--dir", &ubuntu.uname, "111"]);
    assert_eq!(
        (code, stdout.trim()),
        (Some(0), m.path(&format!("ubuntu/{}", ubuntu.name)).display().to_string().as_str()),
        "{stderr}"
    );
    // A package file name, and collector's bundle name.
    let file = deb.files[0].0.file_name().unwrap().to_str().unwrap();
    assert_eq!(which(&m, &["--dir", file]).1.trim(), dir);
    let rpm = fx.bundle("redhat");
    let rpm_file = rpm.files[0].0.file_name().unwrap().to_str().unwrap();
    assert_eq!(which(&m, &["--dir", rpm_file]).1.trim(), m.path(&format!("redhat/{}", rpm.name)).display().to_string());
    assert_eq!(
        which(&m, &["--dir", &format!("bundle-{}.tgz", ubuntu.name)]).1.trim(),
        m.path(&format!("ubuntu/{}", ubuntu.name)).display().to_string()
    );
    // Unknown: exit 3 and the closest releases.
    let (code, _, stderr) = which(&m, &["--dir", "9.9.0-102-generic"]);
    assert_eq!(code, Some(3));
    assert!(stderr.contains("closest") && stderr.contains(&ubuntu.uname), "{stderr}");

    // The running kernel, as the host reports it (a host root seen from a container).
    let host = tempdir();
    let host_root = host.path();
    std::fs::create_dir_all(host_root.join("etc")).unwrap();
    std::fs::create_dir_all(host_root.join("proc/sys/kernel")).unwrap();
    std::fs::write(host_root.join("etc/os-release"), "ID=debian\nVERSION_ID=\"12\"\n").unwrap();
    std::fs::write(host_root.join("proc/sys/kernel/osrelease"), format!("{}\n", deb.uname)).unwrap();
    let (code, stdout, stderr) = which(&m, &["--dir", "--host-root", host_root.to_str().unwrap()]);
    assert_eq!((code, stdout.trim()), (Some(0), dir.as_str()), "{stderr}");
    // Known only for another distribution; and a distribution not crawled.
    std::fs::write(host_root.join("proc/sys/kernel/osrelease"), format!("{}\n", ubuntu.uname)).unwrap();
    let (code, _, stderr) = which(&m, &["--dir", "--host-root", host_root.to_str().unwrap()]);
    assert_eq!(code, Some(3));
    assert!(stderr.contains("known only for other distributions than debian 12"), "{stderr}");
    std::fs::write(host_root.join("etc/os-release"), "ID=\"ol\"\nID_LIKE=\"fedora\"\nVERSION_ID=\"9.4\"\n").unwrap();
    let (code, _, stderr) = which(&m, &["--dir", "--host-root", host_root.to_str().unwrap()]);
    assert_eq!(code, Some(3));
    assert!(stderr.contains("serves no oracle/redhat kernels") || stderr.contains("known only for other"), "{stderr}");
}

fn deb_version(deb: &Path) -> String {
    run_ok(Command::new("dpkg-deb").args(["-f"]).arg(deb).arg("Version")).trim().to_string()
}

/// Item 3: `which --link` makes, keeps and removes the link, and refuses
/// to replace a real directory.
#[test]
fn which_link_is_safe() {
    let fx = Fixture::new(false);
    let m = Mounted::start(&fx.manifest, None, &fx.mirror_args());
    let deb = fx.bundle("debian");
    let modules = tempdir();
    let md = modules.path().to_str().unwrap();
    let (code, stdout, stderr) = which(&m, &["--link", "--modules-dir", md, &deb.uname]);
    assert_eq!(code, Some(0), "{stderr}");
    let link = modules.path().join(&deb.uname).join("build");
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new(stdout.trim()));
    assert!(link.join("Makefile").exists(), "the link resolves into the mount");
    assert!(stderr.contains("Created"), "{stderr}");
    let (code, _, stderr) = which(&m, &["--link", "--modules-dir", md, &deb.uname]);
    assert_eq!(code, Some(0));
    assert!(stderr.contains("AlreadyThere"), "{stderr}");
    let (code, _, _) = which(&m, &["--unlink", "--modules-dir", md, &deb.uname]);
    assert_eq!(code, Some(0));
    assert!(link.symlink_metadata().is_err() && !modules.path().join(&deb.uname).exists());
    // A real directory is never replaced.
    std::fs::create_dir_all(link.join("include")).unwrap();
    let (code, _, stderr) = which(&m, &["--link", "--modules-dir", md, &deb.uname]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("real directory"), "{stderr}");
    assert!(link.join("include").is_dir());
    let (code, _, _) = which(&m, &["--unlink", "--modules-dir", md, &deb.uname]);
    assert_eq!(code, Some(1), "and not removed either");
    assert!(link.join("include").is_dir());
}

/// Item 4: `/by-uname/` lists without downloads; its links resolve to
/// trees whose BUNDLE_UNAME is the link's name.
#[test]
fn by_uname_lists_without_downloads_and_resolves() {
    let fx = Fixture::new(true);
    let m = Mounted::start(&fx.manifest, None, &fx.mirror_args());
    let names: Vec<String> = std::fs::read_dir(m.path("by-uname"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut expected: Vec<String> = fx.bundles.iter().map(|b| b.uname.clone()).collect();
    expected.sort();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    for name in &names {
        let link = m.path(&format!("by-uname/{name}"));
        assert!(std::fs::read_link(&link).unwrap().starts_with(".."), "relative: works from any mount point");
    }
    assert_eq!(m.status()["cache_used"], 0, "listing and readlink downloaded nothing");
    for name in &names {
        assert_eq!(read(&m.path(&format!("by-uname/{name}/BUNDLE_UNAME"))), *name);
    }
}

/// Without `--mount`, `which` answers from the mount that serves the
/// kernel, not the first kpackfs mount it finds (`/kernels` is tried first).
#[test]
fn which_answers_from_the_mount_that_serves_the_kernel() {
    let fx = Fixture::new(true);
    let deb = fx.bundle("debian");
    let work = tempdir();
    // A first mount that serves only the Ubuntu kernel.
    let mut small = kpackfs::manifest::Manifest::load(&fx.manifest, None).unwrap();
    small.entries.retain(|_, e| e.kind == "ubuntu");
    let small_manifest = work.path().join("small.yml");
    small.save(&small_manifest).unwrap();
    let first = Mounted::start(&small_manifest, None, &fx.mirror_args());
    let _full = Mounted::start(&fx.manifest, None, &fx.mirror_args());
    let (code, stdout, stderr) = out(kpackfs().args(["which", "--dir", &deb.uname]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!Path::new(stdout.trim()).starts_with(&first.mnt), "not the mount that lacks it: {stdout}");
    assert!(stderr.contains("from the mount at"), "it says which mount it used: {stderr}");
    // A kernel no mount serves: the preferred mount's answer, and that no other has it.
    let (code, _, stderr) = out(kpackfs().args(["which", "--dir", "9.9.9-1-nothing"]));
    assert_eq!(code, Some(3));
    assert!(stderr.contains("no other kpackfs mount here serves it either"), "{stderr}");
}

/// A bundle that failed: `which` names the cause, its class and the log.
#[test]
fn which_names_the_cause_and_the_log_of_a_bundle_that_failed() {
    let work = tempdir();
    let server = Server::start();
    let url = server.url("/pool/linux-headers-6.1.0-99-amd64_6.1.1-1_amd64.deb");
    let id = kpackfs::manifest::bundle_id([url.as_str()]);
    let manifest = work.path().join("manifest.yml");
    std::fs::write(
        &manifest,
        format!(
            "{id}:\n  type: debian\n  name: 6.1.0-99-amd64\n  uname: 6.1.0-99-amd64\n  packages:\n  - url: {url}\n"
        ),
    )
    .unwrap();
    let m = Mounted::start(&manifest, None, &["--no-apt-mirrors".to_string()]);
    let (code, _, stderr) = which(&m, &["6.1.0-99-amd64"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("debian/6.1.0-99-amd64 failed:") && stderr.contains("not_found"), "{stderr}");
    assert!(stderr.contains(&m.cache.join("kpackfs.log").display().to_string()), "{stderr}");
}

#[test]
fn list_with_no_match_says_so_suggests_and_exits_1() {
    let fx = Fixture::new(true);
    let deb = fx.bundle("debian");
    let typo = deb.name.replace("amd64", "amd46");
    let (code, stdout, stderr) = out(kpackfs().args(["list", &typo, "--manifest"]).arg(&fx.manifest));
    assert_eq!((code, stdout.as_str()), (Some(1), ""), "{stderr}");
    assert!(stderr.contains("no bundle matches") && stderr.contains(&format!("closest: {}", deb.name)), "{stderr}");
    let (code, stdout, _) = out(kpackfs().args(["list", &deb.name, "--manifest"]).arg(&fx.manifest));
    assert_eq!(code, Some(0));
    assert!(stdout.contains(&deb.name));
}

fn header_files(record: &serde_json::Value) -> std::collections::BTreeSet<String> {
    record["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().rsplit('/').next().unwrap().to_string())
        .collect()
}

/// Issue 24: `list --format kernel-crawler` gives, for kernels both know,
/// the records kernel-crawler itself published (a sample of its list in
/// tests/fixtures/kernel-crawler): same target, kernelrelease,
/// kernelversion and header files; and `which` takes driverkit's
/// (target, kernelrelease, kernelversion) for each, Debian's too.
#[test]
fn kernel_crawler_format_matches_its_published_records_and_which_takes_driverkits_triple() {
    let fixture = common::repo().join("tests/fixtures/kernel-crawler/x86_64-ubuntu-sample.json");
    let theirs: serde_json::Value = serde_json::from_str(&read(&fixture)).unwrap();
    let cache = tempdir();
    let listed = run_ok(kpackfs().args(["list", "--format", "kernel-crawler", "--cache-dir"]).arg(cache.path()));
    let ours: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let key = |r: &serde_json::Value| {
        (
            r["target"].as_str().unwrap().to_string(),
            r["kernelrelease"].as_str().unwrap().to_string(),
            r["kernelversion"].to_string(),
        )
    };
    let sample = theirs["Ubuntu"].as_array().unwrap();
    assert!(sample.len() >= 20);
    for r in sample {
        let mine = ours["Ubuntu"].as_array().unwrap().iter().find(|o| key(o) == key(r));
        let mine = mine.unwrap_or_else(|| panic!("no record for {:?}", key(r)));
        assert_eq!(header_files(mine), header_files(r), "{:?}", key(r));
    }

    let m = Mounted::start_as_shipped(cache.path());
    let json: serde_json::Value =
        serde_json::from_str(&run_ok(kpackfs().args(["list", "--json", "--mount"]).arg(&m.mnt))).unwrap();
    let files_of = |dir: &str| -> std::collections::BTreeSet<String> {
        let name = dir.rsplit('/').next().unwrap();
        let kind = dir.rsplit('/').nth(1).unwrap();
        let entry = json.as_array().unwrap().iter().find(|e| e["name"] == name && e["type"] == kind).unwrap();
        entry["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["url"].as_str().unwrap().rsplit('/').next().unwrap().to_string())
            .collect()
    };
    let debian = ours["Debian"].as_array().unwrap();
    for r in sample.iter().take(8).chain(debian.iter().take(3)) {
        let (target, release, version) =
            (r["target"].as_str().unwrap(), r["kernelrelease"].as_str().unwrap(), r["kernelversion"].as_str().unwrap());
        let (code, dir, err) =
            which(&m, &["--dir", "--target", target, "--kernelrelease", release, "--kernelversion", version]);
        assert_eq!(code, Some(0), "{target} {release} {version}: {err}");
        let files = files_of(dir.trim());
        let wanted = header_files(r);
        assert!(
            files.iter().any(|f| wanted.contains(f)),
            "{target} {release} {version} → {dir}: {files:?} vs {wanted:?}"
        );
        if target == "debian" {
            assert_eq!(files, wanted, "a Debian record is one bundle");
        }
    }
    // driverkit's plain `ubuntu` target takes the release `uname -r` gives.
    let generic = sample.iter().find(|r| r["target"] == "ubuntu-generic").unwrap();
    let release = generic["kernelrelease"].as_str().unwrap();
    let (code, dir, err) = which(
        &m,
        &[
            "--dir",
            "--target",
            "ubuntu",
            "--kernelrelease",
            release,
            "--kernelversion",
            generic["kernelversion"].as_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(dir.trim().ends_with(&format!("ubuntu/{release}")) || dir.contains(release), "{dir}");
    let (code, _, err) = which(&m, &["--dir", "--target", "debian", "--kernelrelease", "0.0.1-1-amd64"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("0.0.1-1-amd64"), "{err}");
}
