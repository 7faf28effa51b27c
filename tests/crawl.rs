//! The crawler against loopback repositories built at test time in the real
//! formats: an apt repository signed with a throwaway key, an Ubuntu-shaped
//! one, yum repositories from createrepo_c with a signed repomd.xml; and
//! tampering, unsigned repositories, failures, conditional re-crawls.

mod common;

use common::http::{Fault, Server};
use common::pkgs;
use common::repo::{yum_repo, AptRepo, SignedRepo, TestKey};
use common::{kpackfs, read, run_err, run_ok, sha256_file, tempdir};
use kpackfs::manifest::Manifest;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A sources.yml with the given entries (YAML snippets).
fn sources_file(dir: &Path, entries: &[String]) -> PathBuf {
    let path = dir.join("sources.yml");
    std::fs::write(&path, entries.join("\n")).unwrap();
    path
}

fn apt_source(name: &str, layout: &str, url: &str, suite: &str, pattern: &str, keyring: Option<&Path>) -> String {
    let key = match keyring {
        Some(k) => format!("  keyring: {}\n", k.display()),
        None => "  insecure: true\n".to_string(),
    };
    format!(
        "- name: {name}\n  type: {layout}\n  kind: apt\n  url: {url}\n  suites: [{suite}]\n  components: [main]\n  architectures: [amd64]\n  packages: ['{pattern}']\n  grouping: depends\n{key}"
    )
}

fn yum_source(
    name: &str,
    layout: &str,
    url: &str,
    repo: &str,
    patterns: &str,
    grouping: &str,
    keyring: &Path,
) -> String {
    format!(
        "- name: {name}\n  type: {layout}\n  kind: yum\n  url: {url}\n  repos: [{repo}]\n  packages: {patterns}\n  grouping: {grouping}\n  keyring: {}\n",
        keyring.display()
    )
}

struct Paths {
    lists: PathBuf,
    manifest: PathBuf,
    cache: PathBuf,
}

fn paths(dir: &Path) -> Paths {
    Paths { lists: dir.join("lists"), manifest: dir.join("manifest.yml"), cache: dir.join("cache") }
}

fn crawl(sources: &Path, p: &Paths, server: &Server, canonical: &str, selectors: &[&str]) -> Command {
    let mut cmd = kpackfs();
    cmd.arg("crawl").args(selectors).arg("--sources").arg(sources);
    cmd.arg("--lists-dir").arg(&p.lists).arg("--manifest").arg(&p.manifest).arg("--cache-dir").arg(&p.cache);
    cmd.arg("--no-apt-mirrors").arg("--mirror").arg(format!("{canonical}={}", server.url("")));
    cmd.args(["--retries", "0"]);
    cmd
}

const CANONICAL: &str = "http://archive.example.test";

fn url_of(path: &str) -> String {
    format!("{CANONICAL}{path}")
}

#[test]
fn apt_repository_signed_with_a_test_key() {
    let work = tempdir();
    let key = TestKey::new(work.path(), "archive");
    let fx = pkgs::synthetic_debian(work.path(), ["xz", "xz", "xz"]);
    let repo = AptRepo::new(&work.path().join("www/debian"), "testsuite");
    repo.add(&fx.files);
    // A root for a flavour the pattern does not take.
    repo.add(&[pkgs::dpkg_deb(
        work.path(),
        "linux-headers-9.9.0-1-rt-amd64",
        "9.9.0-1.1",
        "amd64",
        "xz",
        &[("usr/src/x", pkgs::Node::File("x"))],
    )]);
    repo.publish(Some(&key));
    let server = Server::start();
    server.mount("/", &work.path().join("www"));
    let sources = sources_file(
        work.path(),
        &[apt_source(
            "test-debian",
            "debian",
            &url_of("/debian"),
            "testsuite",
            "^linux-headers-[0-9.]+-[0-9]+-amd64$",
            Some(&key.keyring),
        )],
    );
    let p = paths(work.path());
    let out = run_ok(&mut crawl(&sources, &p, &server, CANONICAL, &[]));
    assert!(out.contains("test-debian") && out.contains("1 bundles (1 new)"), "{out}");

    let list = read(&p.lists.join("test-debian.txt"));
    let urls: Vec<&str> = list.lines().collect();
    assert_eq!(urls.len(), 3, "{list}");
    assert!(
        urls.iter().all(|u| u.starts_with("http://archive.example.test/debian/pool/main/")),
        "canonical URLs: {list}"
    );
    let manifest = Manifest::load(&p.manifest, None).unwrap();
    assert_eq!(manifest.entries.len(), 1);
    let (_, entry) = manifest.entries.iter().next().unwrap();
    assert_eq!((entry.kind.as_str(), entry.name.as_deref()), ("debian", Some(fx.name.as_str())));
    for f in &fx.files {
        let name = f.file_name().unwrap().to_str().unwrap();
        let pkg = entry.packages.iter().find(|p| p.url.ends_with(name)).expect("package in the bundle");
        assert_eq!(pkg.sha256.as_deref(), Some(sha256_file(f).as_str()));
        assert_eq!(pkg.size, Some(std::fs::metadata(f).unwrap().len()));
    }
    // The crawled manifest builds.
    let tgz = work.path().join("b.tgz");
    run_ok(
        kpackfs()
            .args(["bundle", &fx.name, "--manifest"])
            .arg(&p.manifest)
            .arg("--cache-dir")
            .arg(&p.cache)
            .arg("--no-apt-mirrors")
            .arg("--mirror")
            .arg(format!("{CANONICAL}={}", server.url("")))
            .arg("-o")
            .arg(&tgz),
    );
}

#[test]
fn ubuntu_shaped_repository() {
    let work = tempdir();
    let key = TestKey::new(work.path(), "ubuntu");
    let fx = pkgs::synthetic_ubuntu(work.path(), "zstd");
    let repo = AptRepo::new(&work.path().join("www/ubuntu"), "focal-updates");
    repo.add(&fx.files);
    repo.publish(Some(&key));
    let server = Server::start();
    server.mount("/", &work.path().join("www"));
    let pattern = "^linux-headers-[0-9.]+-[0-9]+-(generic|aws|azure|gcp|gke)$";
    let sources = sources_file(
        work.path(),
        &[apt_source("test-ubuntu", "ubuntu", &url_of("/ubuntu"), "focal-updates", pattern, Some(&key.keyring))],
    );
    let p = paths(work.path());
    run_ok(&mut crawl(&sources, &p, &server, CANONICAL, &["ubuntu"]));
    let manifest = Manifest::load(&p.manifest, None).unwrap();
    let entry = manifest.entries.values().next().unwrap();
    assert_eq!(entry.packages.len(), 2, "flavour + common headers");
    assert_eq!(entry.name.as_deref(), Some(fx.name.as_str()), "the ~20.04 backport name");
    assert_eq!(entry.uname.as_deref(), Some(fx.uname.as_str()));
}

#[test]
fn yum_repositories_from_createrepo_with_signed_repomd() {
    let work = tempdir();
    let key = TestKey::new(work.path(), "yum");
    let rhel = pkgs::synthetic_rhel(work.path(), "redhat", "w19.zstdio");
    let suse = pkgs::synthetic_suse(work.path(), "w9.xzdio");
    yum_repo(&work.path().join("www/centos/AppStream"), &rhel.files, Some(&key));
    yum_repo(&work.path().join("www/suse/oss"), &suse.files, Some(&key));
    let server = Server::start();
    server.mount("/", &work.path().join("www"));
    let sources = sources_file(
        work.path(),
        &[
            yum_source(
                "test-centos",
                "redhat",
                &url_of("/centos"),
                "AppStream",
                "['^kernel-devel$']",
                "single",
                &key.keyring,
            ),
            yum_source(
                "test-suse",
                "suse",
                &url_of("/suse"),
                "oss",
                "['^kernel-default-devel$', '^kernel-devel$']",
                "suse",
                &key.keyring,
            ),
        ],
    );
    let p = paths(work.path());
    run_ok(&mut crawl(&sources, &p, &server, CANONICAL, &[]));
    let manifest = Manifest::load(&p.manifest, None).unwrap();
    let by_kind = |k: &str| manifest.entries.values().filter(|e| e.kind == k).cloned().collect::<Vec<_>>();
    let rh = by_kind("redhat");
    assert_eq!(rh.len(), 1);
    assert_eq!(rh[0].uname.as_deref(), Some(rhel.uname.as_str()));
    assert_eq!(rh[0].packages[0].sha256.as_deref(), Some(sha256_file(&rhel.files[0]).as_str()));
    let su = by_kind("suse");
    assert_eq!(su.len(), 1, "one flavour paired with its base");
    assert_eq!(su[0].packages.len(), 2);
    assert_eq!(su[0].uname.as_deref(), Some(suse.uname.as_str()));
    assert_eq!(read(&p.lists.join("test-suse.txt")).lines().count(), 2);
}

/// A signed apt repository crawled once (so that a list exists), for the
/// tampering cases.
struct Crawled {
    work: tempfile::TempDir,
    key: TestKey,
    repo: AptRepo,
    server: Server,
    sources: PathBuf,
    p: Paths,
    list_before: String,
    manifest_before: String,
}

fn crawled_once() -> Crawled {
    let SignedRepo { work, key, fx: _, repo, server } = SignedRepo::new(["xz", "gzip", "xz"]);
    let sources = sources_file(
        work.path(),
        &[apt_source("test-debian", "debian", &url_of("/debian"), "stable", "-amd64$", Some(&key.keyring))],
    );
    let p = paths(work.path());
    run_ok(&mut crawl(&sources, &p, &server, CANONICAL, &[]));
    let list_before = read(&p.lists.join("test-debian.txt"));
    let manifest_before = read(&p.manifest);
    Crawled { work, key, repo, server, sources, p, list_before, manifest_before }
}

impl Crawled {
    /// Add a second kernel, so that a successful crawl would change the list.
    fn add_kernel(&self) {
        let fx = pkgs::synthetic_debian_abi(self.work.path(), "9.9.0-2", ["xz", "xz", "xz"]);
        self.repo.add(&fx.files);
    }

    /// Crawl with a fresh index cache (nothing remembered), expecting failure.
    fn crawl_fails(&self) -> String {
        let fresh = Paths {
            lists: self.p.lists.clone(),
            manifest: self.p.manifest.clone(),
            cache: self.work.path().join("fresh-cache"),
        };
        let _ = std::fs::remove_dir_all(&fresh.cache);
        let err = run_err(&mut crawl(&self.sources, &fresh, &self.server, CANONICAL, &[]));
        assert_eq!(read(&self.p.lists.join("test-debian.txt")), self.list_before, "the previous list is kept");
        assert_eq!(read(&self.p.manifest), self.manifest_before, "the manifest is unchanged");
        err
    }
}

#[test]
fn packages_whose_hash_does_not_match_release_are_refused() {
    let c = crawled_once();
    c.add_kernel();
    c.repo.publish(Some(&c.key));
    // Replace Packages.xz after signing: Release no longer describes it.
    let xz = c.repo.packages_xz();
    let mut data = std::fs::read(&xz).unwrap();
    data.extend_from_slice(b"tampered");
    std::fs::write(&xz, data).unwrap();
    let err = c.crawl_fails();
    assert!(err.contains("test-debian") && err.contains("mismatch with the signed index"), "{err}");
}

#[test]
fn inrelease_signed_by_the_wrong_key_is_refused() {
    let c = crawled_once();
    c.add_kernel();
    let other = TestKey::new(c.work.path(), "intruder");
    c.repo.publish(Some(&other));
    let err = c.crawl_fails();
    assert!(err.contains("signature check failed: signed by a key that is not in the keyring"), "{err}");
}

#[test]
fn unsigned_repository_is_refused_unless_insecure() {
    let c = crawled_once();
    c.add_kernel();
    c.repo.publish(None);
    let err = c.crawl_fails();
    assert!(err.contains("unsigned repository"), "{err}");
    // Explicitly insecure: accepted, with a warning.
    let sources = sources_file(
        c.work.path(),
        &[apt_source("test-debian", "debian", &url_of("/debian"), "stable", "-amd64$", None)],
    );
    let out = crawl(&sources, &c.p, &c.server, CANONICAL, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("without signature checks (insecure: true)"), "{stderr}");
    assert_eq!(read(&c.p.lists.join("test-debian.txt")).lines().count(), 6, "both kernels");
}

#[test]
fn failed_source_keeps_its_list_and_the_others_go_on() {
    let c = crawled_once();
    let key2 = &c.key;
    let fx = pkgs::synthetic_ubuntu(c.work.path(), "xz");
    let ubuntu = AptRepo::new(&c.work.path().join("www/ubuntu"), "jammy");
    ubuntu.add(&fx.files);
    ubuntu.publish(Some(key2));
    let sources = sources_file(
        c.work.path(),
        &[
            apt_source("test-debian", "debian", &url_of("/debian"), "stable", "-amd64$", Some(&c.key.keyring)),
            apt_source("test-ubuntu", "ubuntu", &url_of("/ubuntu"), "jammy", "-generic$", Some(&c.key.keyring)),
        ],
    );
    c.add_kernel();
    c.repo.publish(Some(&c.key));
    c.server.set_fault("/debian/dists/stable/InRelease", Fault::Status(500));
    let out = crawl(&sources, &c.p, &c.server, CANONICAL, &[]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a failed source makes the crawl fail");
    let failed = stdout.lines().find(|l| l.contains("test-debian")).unwrap();
    assert!(failed.contains("FAILED") && failed.contains("HTTP 500"), "{stdout}");
    assert!(stdout.contains("(1 failed)"), "{stdout}");
    assert_eq!(read(&c.p.lists.join("test-debian.txt")), c.list_before, "its previous list is kept");
    assert_eq!(read(&c.p.lists.join("test-ubuntu.txt")).lines().count(), 2, "the other source was crawled");
    let manifest = Manifest::load(&c.p.manifest, None).unwrap();
    assert_eq!(manifest.entries.len(), 2, "old debian bundle kept, ubuntu added");
}

#[test]
fn unchanged_recrawl_costs_one_conditional_request_per_index() {
    let c = crawled_once();
    c.server.reset_counts();
    let out = run_ok(&mut crawl(&c.sources, &c.p, &c.server, CANONICAL, &[]));
    assert!(out.contains("0 bundles new"), "{out}");
    let log = c.server.log();
    assert_eq!(log.len(), 1, "one request: {log:?}");
    assert!(log[0].contains("/dists/stable/InRelease"), "{log:?}");
    assert_eq!(c.server.conditional_hits(), 1, "answered 304 Not Modified");
    // Bundles that disappear upstream stay in the manifest.
    std::fs::remove_dir_all(c.repo.root.join("pool")).unwrap();
    std::fs::create_dir_all(c.repo.root.join("pool/main")).unwrap();
    c.repo.publish(Some(&c.key));
    run_ok(&mut crawl(&c.sources, &c.p, &c.server, CANONICAL, &[]));
    assert_eq!(Manifest::load(&c.p.manifest, None).unwrap().entries.len(), 1);
    assert_eq!(read(&c.p.lists.join("test-debian.txt")), c.list_before);
}

#[test]
fn selectors_and_bad_input_are_clear_errors() {
    let work = tempdir();
    let err = run_err(kpackfs().args(["crawl", "nosuchsource", "--cache-dir"]).arg(work.path()));
    assert!(err.contains("no source or type named nosuchsource"), "{err}");
    let bad = work.path().join("bad.yml");
    std::fs::write(&bad, "- name: x\n  kind: apt\n").unwrap();
    let err = run_err(kpackfs().arg("crawl").arg("--sources").arg(&bad).arg("--cache-dir").arg(work.path()));
    assert!(err.contains("malformed sources"), "{err}");
}

#[test]
fn a_terminal_shows_a_bar_per_source_and_a_summary() {
    let c = crawled_once();
    let cmd = crawl(&c.sources, &c.p, &c.server, CANONICAL, &[]);
    let line = std::iter::once(cmd.get_program().to_string_lossy().into_owned())
        .chain(cmd.get_args().map(|a| format!("'{}'", a.to_string_lossy())))
        .collect::<Vec<_>>()
        .join(" ");
    // `script` runs the crawl on a pseudo-terminal.
    let out = run_ok(Command::new("script").args(["-qec", &line, "/dev/null"]).env("RUST_LOG", "warn"));
    assert!(
        out.contains("test-debian") && out.contains("ok: 3 packages, 1 bundles (0 new)"),
        "the source's bar: {out}"
    );
    assert!(out.contains("crawled 1 sources (0 failed)"), "{out}");
    assert!(out.contains("3 packages, 0 bundles new, 1 in the manifest"), "the summary: {out}");
}

#[test]
fn full_disk_fails_the_crawl_and_keeps_the_last_good_outputs() {
    let c = crawled_once();
    let disk = common::SmallDisk::new(&c.work.path().join("small"), "1m");
    let p = Paths { lists: disk.0.join("lists"), manifest: disk.0.join("manifest.yml"), cache: c.p.cache.clone() };
    run_ok(&mut crawl(&c.sources, &p, &c.server, CANONICAL, &[]));
    let (list_before, manifest_before) = (read(&p.lists.join("test-debian.txt")), read(&p.manifest));
    // Fill the disk to the last byte.
    let mut filler = std::fs::File::create(disk.0.join("filler")).unwrap();
    let block = vec![0u8; 64 * 1024];
    while std::io::Write::write_all(&mut filler, &block).is_ok() {}
    drop(filler);
    let entries_before: Vec<_> = walk(&disk.0);

    c.add_kernel();
    c.repo.publish(Some(&c.key));
    let err = run_err(&mut crawl(&c.sources, &p, &c.server, CANONICAL, &[]));
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(read(&p.lists.join("test-debian.txt")), list_before, "the previous list is kept");
    assert_eq!(read(&p.manifest), manifest_before, "the last good manifest is kept");
    assert_eq!(walk(&disk.0), entries_before, "no temporary file is left behind");

    // Room again: the same crawl succeeds.
    std::fs::remove_file(disk.0.join("filler")).unwrap();
    run_ok(&mut crawl(&c.sources, &p, &c.server, CANONICAL, &[]));
    assert_eq!(read(&p.lists.join("test-debian.txt")).lines().count(), 6, "both kernels");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out.sort();
    out
}

#[test]
fn recrawl_from_a_server_without_validators_is_a_prefix_probe() {
    let c = crawled_once();
    // A mirror that sends neither ETag nor Last-Modified (as apt's here does).
    c.server.set_validators(false);
    let p = Paths { cache: c.work.path().join("probe-cache"), ..paths(c.work.path()) };
    run_ok(&mut crawl(&c.sources, &p, &c.server, CANONICAL, &[]));
    c.server.reset_counts();
    let out = run_ok(&mut crawl(&c.sources, &p, &c.server, CANONICAL, &[]));
    let log = c.server.log();
    assert_eq!(log.len(), 1, "one request: {log:?}");
    assert!(log[0].contains("/dists/stable/InRelease") && log[0].contains("bytes=0-4095"), "{log:?}");
    assert!(out.contains("(1 not modified)") && out.contains("0 bundles new"), "{out}");

    // A new publication changes the prefix (Release's Date): fetched whole.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    c.add_kernel();
    c.repo.publish(Some(&c.key));
    c.server.reset_counts();
    let out = run_ok(&mut crawl(&c.sources, &p, &c.server, CANONICAL, &[]));
    assert!(out.contains("1 bundles new"), "{out}");
    let log = c.server.log();
    assert!(log.iter().any(|l| l.contains("/InRelease range=None")), "{log:?}");
}

/// Issue 8 item 2: root's crawl once verified signatures in a predictable
/// `/tmp/kpackfs-gpgv.<pid>.<n>/`, accepting a directory that existed. A
/// local user plants those names for the next pids, with `InRelease` (and
/// gpgv's output) as links to a file root must not write.
#[test]
fn item2_planted_scratch_directories_are_never_used() {
    use std::os::unix::fs::PermissionsExt;
    let SignedRepo { work, key, fx: _, repo: _, server } = SignedRepo::new(["xz", "gzip", "xz"]);
    let sources = sources_file(
        work.path(),
        &[apt_source("test-debian", "debian", &url_of("/debian"), "stable", "-amd64$", Some(&key.keyring))],
    );
    let victim = work.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let tmp = work.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let last: u32 = read(std::path::Path::new("/proc/sys/kernel/ns_last_pid")).trim().parse().unwrap();
    for pid in last + 1..last + 300 {
        for n in 0..3 {
            let d = tmp.join(format!("kpackfs-gpgv.{pid}.{n}"));
            std::fs::create_dir(&d).unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
            for name in ["InRelease", "plain", "data", "data.sig", "keyring.gpg"] {
                std::os::unix::fs::symlink(&victim, d.join(name)).unwrap();
            }
        }
    }
    let p = paths(work.path());
    run_ok(crawl(&sources, &p, &server, CANONICAL, &[]).env("TMPDIR", &tmp));
    assert_eq!(read(&victim), "precious\n", "nothing was written through a planted link");
    assert!(read(&p.manifest).contains("linux-headers"), "and the crawl worked");
}

/// Issue 8 item 8: a signed Release that expired, that is dated in the
/// future, or that is older than the last one accepted (a replay or a
/// rollback) is refused, and the source keeps its previous list.
#[test]
fn item8_a_replayed_or_expired_release_is_refused() {
    let SignedRepo { work, key, fx: _, repo, server } = SignedRepo::new(["xz", "gzip", "xz"]);
    let sources = sources_file(
        work.path(),
        &[apt_source("test-debian", "debian", &url_of("/debian"), "stable", "-amd64$", Some(&key.keyring))],
    );
    let p = paths(work.path());
    let now = kpackfs::util::now_secs() as i64;
    let dated = |date: i64, until: Option<i64>| {
        let mut f = format!("Date: {}\n", kpackfs::util::format_utc(date));
        if let Some(u) = until {
            f.push_str(&format!("Valid-Until: {}\n", kpackfs::util::format_utc(u)));
        }
        f
    };
    repo.publish_with(Some(&key), &dated(now - 3600, Some(now + 86400)));
    run_ok(&mut crawl(&sources, &p, &server, CANONICAL, &[]));
    let list = read(&p.lists.join("test-debian.txt"));
    let fx2 = pkgs::synthetic_debian_abi(work.path(), "9.9.0-2", ["xz", "xz", "xz"]);
    repo.add(&fx2.files);
    for (fields, why) in [
        (dated(now - 7200, Some(now + 86400)), "older than"),
        (dated(now, Some(now - 3600)), "expired"),
        (dated(now + 86400, None), "in the future"),
    ] {
        repo.publish_with(Some(&key), &fields);
        let err = run_err(&mut crawl(&sources, &p, &server, CANONICAL, &[]));
        assert!(err.contains("test-debian") && err.contains(why), "{why}: {err}");
        assert_eq!(read(&p.lists.join("test-debian.txt")), list, "the previous list is kept");
    }
    repo.publish_with(Some(&key), &dated(now, Some(now + 86400)));
    run_ok(&mut crawl(&sources, &p, &server, CANONICAL, &[]));
    assert_ne!(read(&p.lists.join("test-debian.txt")), list, "a fresh Release is accepted");
}
