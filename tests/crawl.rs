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
    // The index beside the manifest is the index of exactly these bytes.
    let sidecar = kpackfs::manifest::index::sidecar::adopt(&p.manifest, &work.path().join("adopted.idx"), [3; 32]);
    assert_eq!(sidecar.unwrap().expect("an index beside the crawled manifest").counts.shown, 1);
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

/// An index root bigger than 32 MiB (a real InRelease is under 300 KiB)
/// is refused once the cap is crossed, whatever the server says of its
/// length, and the source keeps its previous list.
#[test]
fn an_index_root_over_32_mib_is_refused() {
    let c = crawled_once();
    let huge = c.repo.in_release();
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len((32 << 20) + 1).unwrap();
    let err = c.crawl_fails();
    assert!(err.contains("exceeds the limit of 33554432 bytes"), "{err}");
}

/// An index dripped at a few bytes a second (1 B/s once ran past 250 s)
/// fails on the minimum rate after its grace period, as packages do.
#[test]
fn a_dripping_index_fails_on_the_minimum_rate() {
    let SignedRepo { work, key, fx: _, repo: _, server } = SignedRepo::new(["xz", "gzip", "xz"]);
    let sources = sources_file(
        work.path(),
        &[apt_source("test-debian", "debian", &url_of("/debian"), "stable", "-amd64$", Some(&key.keyring))],
    );
    server.set_fault("InRelease", Fault::Throttle(200));
    let config = work.path().join("config.yml");
    std::fs::write(&config, "rate_grace: 1s\nmin_rate: 10K\n").unwrap();
    let p = paths(work.path());
    let started = std::time::Instant::now();
    let out = crawl(&sources, &p, &server, CANONICAL, &[]).arg("--config").arg(&config).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "unreachable, retried next crawl: {stdout}");
    assert!(stdout.contains("transfer too slow"), "{stdout}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "bounded: {:?}", started.elapsed());
}

/// A yum repository whose repomd.xml signature does not hold (another
/// key's, or repomd.xml changed after signing, or none at all) is refused;
/// the crawl that checks it is the one that accepted the good signature.
#[test]
fn a_yum_index_whose_signature_fails_is_refused() {
    let work = tempdir();
    let key = TestKey::new(work.path(), "yum");
    let other = TestKey::new(work.path(), "other");
    let rhel = pkgs::synthetic_rhel(work.path(), "redhat", "w19.zstdio");
    let repo = work.path().join("www/centos/AppStream");
    yum_repo(&repo, &rhel.files, Some(&key));
    let server = Server::start();
    server.mount("/", &work.path().join("www"));
    let sources = sources_file(
        work.path(),
        &[yum_source(
            "test-centos",
            "redhat",
            &url_of("/centos"),
            "AppStream",
            "['^kernel-devel$']",
            "single",
            &key.keyring,
        )],
    );
    let repomd = repo.join("repodata/repomd.xml");
    let asc = repo.join("repodata/repomd.xml.asc");
    let good = std::fs::read(&repomd).unwrap();
    type Breakage<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Breakage)> = vec![
        ("signed by a key that is not in the keyring", Box::new(|| other.detach_sign(&repomd, &asc, true))),
        (
            "bad signature",
            Box::new(|| {
                key.detach_sign(&repomd, &asc, true);
                let changed = String::from_utf8_lossy(&good).replacen("<revision>", "<revision>1", 1);
                std::fs::write(&repomd, changed).unwrap();
            }),
        ),
        ("repomd.xml.asc", Box::new(|| std::fs::remove_file(&asc).unwrap())),
    ];
    for (i, (why, break_it)) in cases.iter().enumerate() {
        std::fs::write(&repomd, &good).unwrap();
        break_it();
        let p = paths(&work.path().join(format!("case{i}")));
        let out = crawl(&sources, &p, &server, CANONICAL, &[]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(4), "{why}: {stdout}");
        assert!(stdout.contains("test-centos") && stdout.contains(why), "{why}: {stdout}");
        assert!(!p.lists.join("test-centos.txt").exists(), "{why}: nothing listed");
    }
    std::fs::write(&repomd, &good).unwrap();
    key.detach_sign(&repomd, &asc, true);
    let p = paths(&work.path().join("good"));
    run_ok(&mut crawl(&sources, &p, &server, CANONICAL, &[]));
    assert_eq!(read(&p.lists.join("test-centos.txt")).lines().count(), 1, "the good signature is accepted");
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
        let out = crawl(&self.sources, &fresh, &self.server, CANONICAL, &[]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "refused: exit 4\n{err}");
        assert!(err.contains("refused (needs attention):"), "{err}");
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
    // Change Packages.xz after signing, keeping its size: only the sha256
    // comparison can tell (a longer file would fail the size check first).
    let xz = c.repo.packages_xz();
    let mut data = std::fs::read(&xz).unwrap();
    let at = data.len() / 2;
    data[at] ^= 0x55;
    std::fs::write(&xz, data).unwrap();
    let err = c.crawl_fails();
    assert!(err.contains("test-debian") && err.contains("sha256 mismatch with the signed index"), "{err}");
}

/// The signed text of an InRelease changed after signing (a kernel added
/// to it, say): gpgv's BADSIG, refused.
#[test]
fn an_inrelease_whose_signed_text_was_changed_is_refused() {
    let c = crawled_once();
    c.add_kernel();
    c.repo.publish(Some(&c.key));
    let path = c.repo.in_release();
    let text = read(&path).replacen("Origin: kpackfs-test", "Origin: kpackfs-evil", 1);
    std::fs::write(&path, text).unwrap();
    let err = c.crawl_fails();
    assert!(err.contains("bad signature (the signed data was changed)"), "{err}");
}

/// A Release signed twice, by the source's key and by one the keyring does
/// not hold (xenial's carries a retired DSA key's signature beside the
/// current one; gpgv exits 2 for it): accepted, as apt does.
#[test]
fn a_good_signature_beside_an_unknown_keys_is_accepted() {
    let c = crawled_once();
    c.add_kernel();
    c.repo.publish(Some(&c.key));
    let retired = TestKey::new(c.work.path(), "retired");
    let dists = c.repo.in_release().parent().unwrap().to_path_buf();
    std::fs::remove_file(c.repo.in_release()).unwrap();
    c.key.clearsign_with(&retired, &dists.join("Release"), &c.repo.in_release());
    let signed = read(&c.repo.in_release());
    assert_eq!(signed.matches("-----BEGIN PGP SIGNATURE-----").count(), 1);
    run_ok(&mut crawl(&c.sources, &c.p, &c.server, CANONICAL, &[]));
    assert_eq!(read(&c.p.lists.join("test-debian.txt")).lines().count(), 6, "both kernels");
    // Signed by the unknown key alone: refused.
    std::fs::remove_file(c.repo.in_release()).unwrap();
    retired.clearsign(&dists.join("Release"), &c.repo.in_release());
    let p = Paths { lists: c.p.lists.clone(), manifest: c.p.manifest.clone(), cache: c.work.path().join("fresh") };
    let out = crawl(&c.sources, &p, &c.server, CANONICAL, &[]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{stdout}");
    assert!(stdout.contains("not in the keyring"), "{stdout}");
}

/// Without InRelease, Release with its detached Release.gpg: accepted when
/// the signature is good, refused when Release was changed after signing.
#[test]
fn release_and_release_gpg_are_read_when_there_is_no_inrelease() {
    let c = crawled_once();
    c.add_kernel();
    c.repo.publish(Some(&c.key));
    std::fs::remove_file(c.repo.in_release()).unwrap();
    let release = c.repo.in_release().with_file_name("Release");
    let good = read(&release);
    std::fs::write(&release, good.replacen("Origin: kpackfs-test", "Origin: kpackfs-evil", 1)).unwrap();
    let err = c.crawl_fails();
    assert!(err.contains("stable/Release") && err.contains("bad signature"), "{err}");
    std::fs::write(&release, good).unwrap();
    run_ok(&mut crawl(&c.sources, &c.p, &c.server, CANONICAL, &[]));
    assert_eq!(read(&c.p.lists.join("test-debian.txt")).lines().count(), 6, "both kernels, through Release.gpg");
    assert!(c.server.count("Release.gpg") >= 1);
}

/// A key revoked by its owner (the revocation imported into the keyring
/// the source names): what it signed is refused, as apt does.
#[test]
fn a_release_signed_by_a_revoked_key_is_refused() {
    let c = crawled_once();
    c.add_kernel();
    c.repo.publish(Some(&c.key));
    let revoked = c.key.revoked_keyring(c.work.path());
    let sources = sources_file(
        c.work.path(),
        &[apt_source("test-debian", "debian", &url_of("/debian"), "stable", "-amd64$", Some(&revoked))],
    );
    let fresh = Paths { lists: c.p.lists.clone(), manifest: c.p.manifest.clone(), cache: c.work.path().join("fresh") };
    let out = crawl(&sources, &fresh, &c.server, CANONICAL, &[]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{stdout}");
    assert!(stdout.contains("signed by a revoked key"), "{stdout}");
    assert_eq!(read(&c.p.lists.join("test-debian.txt")), c.list_before, "the list is kept");
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
    assert!(stderr.contains("insecure: true (no signature is checked)"), "{stderr}");
    assert_eq!(read(&c.p.lists.join("test-debian.txt")).lines().count(), 6, "both kernels");
}

/// apt refuses a Release whose key has expired (EXPKEYSIG); so does the crawl.
#[test]
fn release_signed_by_an_expired_key_is_refused() {
    let c = crawled_once();
    c.add_kernel();
    let expired = TestKey::expired(c.work.path(), "expired");
    c.repo.publish(Some(&expired));
    let sources = sources_file(
        c.work.path(),
        &[apt_source("test-debian", "debian", &url_of("/debian"), "stable", "-amd64$", Some(&expired.keyring))],
    );
    let out = crawl(&sources, &c.p, &c.server, CANONICAL, &[]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("signed by an expired key"), "{stdout}");
    assert_eq!(read(&c.p.lists.join("test-debian.txt")), c.list_before, "the list is kept");
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
    assert_eq!(out.status.code(), Some(3), "unreachable, none refused: exit 3 ({stdout})");
    let heading = stdout.find("unreachable (tried again next crawl):").expect(&stdout);
    let failed = stdout.lines().find(|l| l.contains("test-debian")).unwrap();
    assert!(stdout.find(failed).unwrap() > heading && failed.contains("HTTP 500"), "{stdout}");
    assert!(stdout.contains("1 ok, 1 unreachable, 0 refused"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().filter(|l| l.contains("test-debian")).count(), 1, "one log line: {stderr}");
    assert_eq!(read(&c.p.lists.join("test-debian.txt")), c.list_before, "its previous list is kept");
    assert_eq!(read(&c.p.lists.join("test-ubuntu.txt")).lines().count(), 2, "the other source was crawled");
    let manifest = Manifest::load(&c.p.manifest, None).unwrap();
    assert_eq!(manifest.entries.len(), 2, "old debian bundle kept, ubuntu added");
}

/// Issue 24 item 4: a source that keeps being unreachable is told once
/// with its cause, then in one line; after two failed crawls in a row a
/// crawl of all sources skips it (exit 0) until its backoff ends; naming it
/// tries it now; a success clears the count.
#[test]
fn a_source_unreachable_crawl_after_crawl_backs_off_and_is_told_once() {
    let c = crawled_once();
    let index = "/debian/dists/stable/InRelease";
    c.server.set_fault(index, Fault::Status(500));
    let run = |selectors: &[&str]| {
        let out = crawl(&c.sources, &c.p, &c.server, CANONICAL, selectors).output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, _, first) = run(&[]);
    assert_eq!(code, Some(3));
    let told: Vec<&str> = first.lines().filter(|l| l.contains("test-debian")).collect();
    assert!(told.len() == 1 && told[0].contains("WARN") && told[0].contains("HTTP 500"), "{first}");
    let (code, _, second) = run(&[]);
    assert_eq!(code, Some(3), "tried again: the first failure does not back off");
    let told: Vec<&str> = second.lines().filter(|l| l.contains("test-debian")).collect();
    assert_eq!(told.len(), 1, "{second}");
    assert!(told[0].contains("1 still unreachable (test-debian)") && !told[0].contains("HTTP 500"), "{second}");
    assert!(!told[0].contains("WARN"), "a known failure is not a warning again: {second}");
    let requests = c.server.count(index);
    let (code, stdout, _) = run(&[]);
    assert_eq!(code, Some(0), "nothing tried failed: {stdout}");
    assert_eq!(c.server.count(index), requests, "not tried while backing off");
    let in_an_hour = stdout.contains("next try in 59m") || stdout.contains("next try in 1h");
    assert!(stdout.contains("0 refused, 1 backing off") && in_an_hour, "{stdout}");
    let (code, stdout, _) = run(&["test-debian"]);
    assert_eq!((code, c.server.count(index)), (Some(3), requests + 1), "named, it is tried now: {stdout}");
    let state_file = c.p.cache.join("crawl/sources.json");
    let states: serde_json::Value = serde_json::from_str(&read(&state_file)).unwrap();
    assert_eq!(states["test-debian"]["unreachable_runs"], 3);
    // Three in a row wait two hours: an hour and a half later it is still skipped, then tried.
    let aged = |secs: u64| {
        let mut states = states.clone();
        states["test-debian"]["last_crawl"] = (kpackfs::util::now_secs() - secs).into();
        std::fs::write(&state_file, states.to_string()).unwrap();
    };
    aged(5400);
    run(&[]);
    assert_eq!(c.server.count(index), requests + 1);
    aged(7300);
    c.server.clear_faults();
    let (code, stdout, _) = run(&[]);
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(c.server.count(index), requests + 2);
    let states: serde_json::Value = serde_json::from_str(&read(&state_file)).unwrap();
    assert!(states["test-debian"].get("unreachable_runs").is_none(), "a success clears it: {states}");
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
    assert!(out.contains("crawled 1 sources in"), "{out}");
    assert!(out.contains("1 ok, 0 unreachable, 0 refused"), "{out}");
    assert!(out.contains("3 packages, 0 bundles new, 1 entries in the crawl result"), "the summary: {out}");
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
fn planted_scratch_directories_are_never_used() {
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
    // Planted: open directories with links to the victim under every name
    // an earlier, predictable scheme used (kpackfs-gpgv.<pid>.<n>) for the
    // next pids, and under fixed names.
    let last: u32 = read(std::path::Path::new("/proc/sys/kernel/ns_last_pid")).trim().parse().unwrap();
    let planted: Vec<String> = (last + 1..last + 300)
        .flat_map(|pid| (0..3).map(move |n| format!("kpackfs-gpgv.{pid}.{n}")))
        .chain(["kpackfs-gpgv", "kpackfs-gpgv.0", "kpackfs-publish."].map(String::from))
        .collect();
    for name in &planted {
        let d = tmp.join(name);
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        for file in ["InRelease", "plain", "data", "data.sig", "keyring.gpg"] {
            std::os::unix::fs::symlink(&victim, d.join(file)).unwrap();
        }
    }
    // Watch what the crawl creates in TMPDIR: every scratch directory must
    // be new (not a planted one) and private (0700) when seen.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (tmp, stop, planted) = (tmp.clone(), stop.clone(), planted.clone());
        std::thread::spawn(move || {
            let mut seen: std::collections::BTreeMap<String, u32> = Default::default();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for e in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if planted.contains(&name) {
                        continue;
                    }
                    if let Ok(m) = e.metadata() {
                        seen.entry(name).or_insert(m.permissions().mode() & 0o777);
                    }
                }
            }
            seen
        })
    };
    let p = paths(work.path());
    run_ok(crawl(&sources, &p, &server, CANONICAL, &[]).env("TMPDIR", &tmp));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    assert_eq!(read(&victim), "precious\n", "nothing was written through a planted link");
    assert!(read(&p.manifest).contains("linux-headers"), "and the crawl worked");
    assert!(!seen.is_empty(), "the watcher saw the crawl's scratch directories");
    for (name, mode) in &seen {
        assert_eq!(*mode, 0o700, "{name} was not private when it was used");
        assert!(!tmp.join(name).exists(), "{name} was left behind");
    }
}

/// Issue 8 item 8: a signed Release that expired, that is dated in the
/// future, that is older than the last one accepted (a replay or a
/// rollback), or that has no Date after a dated one, is refused, and the
/// source keeps its previous list.
#[test]
fn a_replayed_or_expired_release_is_refused() {
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
        (String::new(), "has no Date"),
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

/// A Debian source as the shipped ones are: no package pattern (roots come
/// from relationships), the given architectures.
fn debian_source(name: &str, url: &str, suite: &str, architectures: &str, keyring: &Path) -> String {
    format!(
        "- name: {name}\n  type: debian\n  kind: apt\n  url: {url}\n  suites: [{suite}]\n  components: [main]\n  architectures: [{architectures}]\n  grouping: depends\n  keyring: {}\n",
        keyring.display()
    )
}

fn file_names(spec: &kpackfs::manifest::BundleSpec) -> Vec<String> {
    let mut names: Vec<String> = spec.packages.iter().map(|p| p.file_name().to_string()).collect();
    names.sort();
    names
}

/// Issue 10 items 1 and 3: an amd64 and an arm64 kernel of one ABI in one
/// suite (the kbuild package has one name and a build per architecture),
/// and metapackages beside them; no pattern in the source.
#[test]
fn arm64_kernels_are_crawled_beside_amd64_with_their_own_packages() {
    let work = tempdir();
    let key = TestKey::new(work.path(), "archive");
    let amd64 = pkgs::synthetic_debian_arch(work.path(), "9.9.0-1", "amd64", ["xz", "xz", "xz"]);
    let arm_dir = work.path().join("arm64");
    std::fs::create_dir_all(&arm_dir).unwrap();
    let arm64 = pkgs::synthetic_debian_arch(&arm_dir, "9.9.0-1", "arm64", ["xz", "xz", "xz"]);
    let repo = AptRepo::with_architectures(&work.path().join("www/debian"), "stable", &["amd64", "arm64"]);
    repo.add(&amd64.files);
    // The arm64 flavour and kbuild; the _all common package is the same file.
    repo.add(&[arm64.files[0].clone(), arm64.files[2].clone()]);
    let meta = |arch: &str, target: &str| {
        pkgs::dpkg_deb_depends(
            &work.path().join(format!("meta-{arch}")),
            &format!("linux-headers-{arch}"),
            "9.9.0-1.1",
            arch,
            "xz",
            &format!("linux-headers-{target} (= 9.9.0-1.1)"),
            &[(&format!("usr/share/doc/linux-headers-{arch}/x"), pkgs::Node::File("x"))],
        )
    };
    for (arch, target) in [("amd64", "9.9.0-1-amd64"), ("arm64", "9.9.0-1-arm64")] {
        std::fs::create_dir_all(work.path().join(format!("meta-{arch}"))).unwrap();
        repo.add(&[meta(arch, target)]);
    }
    repo.publish(Some(&key));
    let server = Server::start();
    server.mount("/", &work.path().join("www"));
    let sources =
        sources_file(work.path(), &[debian_source("test", &url_of("/debian"), "stable", "amd64, arm64", &key.keyring)]);
    let p = paths(work.path());
    run_ok(&mut crawl(&sources, &p, &server, CANONICAL, &[]));
    let manifest = Manifest::load(&p.manifest, None).unwrap();
    let mut names: Vec<&str> = manifest.entries.values().filter_map(|e| e.name.as_deref()).collect();
    names.sort();
    assert_eq!(names, ["9.9.0-1-amd64", "9.9.0-1-arm64"], "one bundle per flavour; metapackages are not bundles");
    for (fx, arch) in [(&amd64, "amd64"), (&arm64, "arm64")] {
        let entry = manifest.entries.values().find(|e| e.name.as_deref() == Some(fx.name.as_str())).unwrap();
        assert_eq!(entry.uname.as_deref(), Some(fx.uname.as_str()));
        let mut want = vec![
            "linux-headers-9.9.0-1-common_9.9.0-1.1_all.deb".to_string(),
            format!("linux-headers-9.9.0-1-{arch}_9.9.0-1.1_{arch}.deb"),
            format!("linux-kbuild-9.9_9.9.0-1.1_{arch}.deb"),
        ];
        want.sort();
        assert_eq!(file_names(entry), want, "the {arch} bundle takes the {arch} kbuild");
    }
}

/// Issue 10 item 7: the same files through the main and the security
/// archive are one entry; the other archive's URLs are fallbacks the
/// fetcher uses when the first location fails.
#[test]
fn the_same_packages_through_two_archives_are_one_entry_with_fallbacks() {
    let work = tempdir();
    let key = TestKey::new(work.path(), "archive");
    let fx = pkgs::synthetic_debian(work.path(), ["xz", "xz", "xz"]);
    let main = AptRepo::new(&work.path().join("www/debian"), "stable");
    let security = AptRepo::new(&work.path().join("www/debian-security"), "stable-security");
    for repo in [&main, &security] {
        repo.add(&fx.files);
        repo.publish(Some(&key));
    }
    let server = Server::start();
    server.mount("/", &work.path().join("www"));
    let sources = sources_file(
        work.path(),
        &[
            debian_source("test-main", &url_of("/debian"), "stable", "amd64", &key.keyring),
            debian_source("test-security", &url_of("/debian-security"), "stable-security", "amd64", &key.keyring),
        ],
    );
    let p = paths(work.path());
    let out = run_ok(&mut crawl(&sources, &p, &server, CANONICAL, &[]));
    let manifest = Manifest::load(&p.manifest, None).unwrap();
    assert_eq!(manifest.entries.len(), 1, "one entry per kernel: {out}");
    assert!(out.contains("1 bundles new, 1 entries in the crawl result (1 merged as other locations)"), "{out}");
    // Issue 24 item 5: an unchanged crawl has nothing new, merged or not.
    let again = run_ok(&mut crawl(&sources, &p, &server, CANONICAL, &[]));
    assert!(again.contains("0 bundles new, 1 entries in the crawl result;"), "{again}");
    assert_eq!(again.matches("(0 new)").count(), 2, "neither source has anything new: {again}");
    let (id, entry) = manifest.entries.iter().next().unwrap();
    assert_eq!(&entry.compute_id(), id, "the id is kernel-packer's over the first location");
    for pkg in &entry.packages {
        assert_eq!(pkg.also.len(), 1, "{pkg:?}");
        assert_ne!(pkg.url.contains("/debian-security/"), pkg.also[0].contains("/debian-security/"), "{pkg:?}");
    }
    for f in ["test-main.txt", "test-security.txt"] {
        assert_eq!(read(&p.lists.join(f)).lines().count(), 3, "each list keeps its own URLs");
    }
    // A re-crawl of one archive keeps the other's locations.
    run_ok(&mut crawl(&sources, &p, &server, CANONICAL, &["test-main"]));
    run_ok(&mut crawl(&sources, &p, &server, CANONICAL, &["test-security"]));
    assert_eq!(Manifest::load(&p.manifest, None).unwrap().entries, manifest.entries);

    // The first location is gone: the build comes from the other archive.
    let primary_root = if entry.packages[0].url.contains("/debian-security/") { &security.root } else { &main.root };
    std::fs::remove_dir_all(primary_root.join("pool")).unwrap();
    let tgz = work.path().join("b.tgz");
    let out = kpackfs()
        .args(["bundle", &fx.name, "--manifest"])
        .arg(&p.manifest)
        .arg("--cache-dir")
        .arg(work.path().join("bundle-cache"))
        .args(["--no-apt-mirrors", "--retries", "0", "--mirror", &format!("{CANONICAL}={}", server.url(""))])
        .arg("-o")
        .arg(&tgz)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(tgz.exists());
}

/// One page of a bucket's XML listing, as GCS writes it.
fn listing_page(keys: &[&str], next: Option<&str>) -> String {
    let contents: String = keys
        .iter()
        .map(|k| {
            format!("<Contents><Key>{k}</Key><Generation>1</Generation><Size>10</Size><ETag>\"x\"</ETag></Contents>")
        })
        .collect();
    let (truncated, marker) = match next {
        Some(n) => ("true", format!("<NextMarker>{n}</NextMarker>")),
        None => ("false", String::new()),
    };
    format!("<?xml version='1.0' encoding='UTF-8'?><ListBucketResult xmlns='http://doc.s3.amazonaws.com/2006-03-01'><Name>cos-tools</Name><Prefix></Prefix><Marker></Marker>{marker}<IsTruncated>{truncated}</IsTruncated>{contents}</ListBucketResult>")
}

#[test]
fn a_paged_cos_bucket_listing_gives_one_bundle_per_build_and_a_recrawl_adds_new_ones() {
    let work = tempdir();
    let bucket = work.path().join("www/cos-tools");
    std::fs::create_dir_all(&bucket).unwrap();
    // Two pages; the marker of the second is the last key of the first.
    let page = |marker: &str, body: String| std::fs::write(bucket.join(format!("?marker={marker}")), body).unwrap();
    page(
        "",
        listing_page(
            &["10527.0.0/kernel-src.tar.gz", "12739.68.0/kernel-headers.tgz", "12739.68.0/kernel-src.tar.gz"],
            Some("12739.68.0/kernel-src.tar.gz"),
        ),
    );
    page(
        "12739.68.0%2Fkernel-src.tar.gz",
        listing_page(
            &["12739.68.0/kernel-src.tar.gz.md5", "16919.235.36/kernel-src.tar.gz", "16919.235.36/kernel-headers.tgz"],
            None,
        ),
    );
    let server = Server::start();
    server.mount("/", &work.path().join("www"));
    let source = format!("- name: cos\n  type: cos\n  kind: gcs\n  url: {}\n  grouping: build\n", url_of("/cos-tools"));
    let sources = sources_file(work.path(), &[source]);
    let p = paths(work.path());
    run_ok(&mut crawl(&sources, &p, &server, CANONICAL, &["cos"]));
    let manifest = Manifest::load(&p.manifest, None).unwrap();
    let mut builds: Vec<(String, usize)> =
        manifest.entries.values().map(|e| (e.name.clone().unwrap_or_default(), e.packages.len())).collect();
    builds.sort();
    assert_eq!(
        builds,
        [("10527.0.0".to_string(), 1), ("12739.68.0".to_string(), 2), ("16919.235.36".to_string(), 2)],
        "one bundle per build with a source tarball, its headers tarball beside it"
    );
    assert!(manifest.entries.values().all(|e| e.kind == "cos"));
    // A new build on the last page appears on the next crawl.
    page(
        "12739.68.0%2Fkernel-src.tar.gz",
        listing_page(
            &["16919.235.36/kernel-src.tar.gz", "16919.235.36/kernel-headers.tgz", "17412.294.62/kernel-src.tar.gz"],
            None,
        ),
    );
    run_ok(&mut crawl(&sources, &p, &server, CANONICAL, &["cos"]));
    let manifest = Manifest::load(&p.manifest, None).unwrap();
    assert_eq!(manifest.entries.len(), 4, "the new build is added, the others stay");
}

#[test]
fn a_bucket_listing_that_does_not_advance_is_refused_and_adds_nothing() {
    let work = tempdir();
    let bucket = work.path().join("www/cos-tools");
    std::fs::create_dir_all(&bucket).unwrap();
    // A hostile listing: truncated, and its next marker is its own.
    std::fs::write(bucket.join("?marker="), listing_page(&["1.2.3/kernel-src.tar.gz"], Some("a"))).unwrap();
    std::fs::write(bucket.join("?marker=a"), listing_page(&["1.2.3/kernel-src.tar.gz"], Some("a"))).unwrap();
    let server = Server::start();
    server.mount("/", &work.path().join("www"));
    let source = format!("- name: cos\n  type: cos\n  kind: gcs\n  url: {}\n  grouping: build\n", url_of("/cos-tools"));
    let sources = sources_file(work.path(), &[source]);
    let p = paths(work.path());
    let err = run_err(&mut crawl(&sources, &p, &server, CANONICAL, &["cos"]));
    assert!(err.contains("does not advance"), "{err}");
    assert!(server.count("cos-tools") <= 3, "the loop stopped at once: {}", server.count("cos-tools"));
    let entries = Manifest::load(&p.manifest, None).map(|m| m.entries.len()).unwrap_or(0);
    assert_eq!(entries, 0, "nothing from a refused listing reaches the manifest");
}

#[test]
fn a_flatcar_channel_index_gives_one_image_bundle_per_release_with_its_kernel_release() {
    let work = tempdir();
    let board = work.path().join("www/stable/amd64-usr");
    // The directory index as Flatcar's server writes it, with a `current`
    // link and a release without a package list (skipped).
    std::fs::create_dir_all(&board).unwrap();
    std::fs::write(
        board.join("index.html"),
        "<html><head><title>Index of /amd64-usr/</title></head><body><pre><a href=\"../\">../</a>\n\
         <a href=\"3510.2.0/\">3510.2.0/</a>  25-Jul-2023 10:00 -\n<a href=\"3602.2.0/\">3602.2.0/</a>  25-Sep-2023 10:00 -\n\
         <a href=\"3760.1.0/\">3760.1.0/</a>\n<a href=\"current/\">current/</a>\n</pre></body></html>",
    )
    .unwrap();
    for (version, kernel) in [("3510.2.0", "5.15.119"), ("3602.2.0", "5.15.133-r1")] {
        std::fs::create_dir_all(board.join(version)).unwrap();
        std::fs::write(
            board.join(version).join("flatcar_production_image_packages.txt"),
            format!("app-shells/bash-5.1_p16-r2::portage-stable\nsys-kernel/coreos-firmware-20230625::coreos-overlay\nsys-kernel/coreos-kernel-{kernel}::coreos-overlay\n"),
        )
        .unwrap();
    }
    std::fs::create_dir_all(board.join("3760.1.0")).unwrap();
    let server = Server::start();
    server.mount("/", &work.path().join("www"));
    let source = format!(
        "- name: flatcar-stable\n  type: coreos\n  kind: flatcar\n  url: {}\n  grouping: single\n",
        url_of("/stable/amd64-usr")
    );
    let sources = sources_file(work.path(), &[source]);
    let p = paths(work.path());
    run_ok(&mut crawl(&sources, &p, &server, CANONICAL, &["flatcar-stable"]));
    let manifest = Manifest::load(&p.manifest, None).unwrap();
    let mut got: Vec<(String, String, String)> = manifest
        .entries
        .values()
        .map(|e| (e.name.clone().unwrap_or_default(), e.uname.clone().unwrap_or_default(), e.packages[0].url.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (
                "flatcar-3510.2.0".to_string(),
                "5.15.119-flatcar".to_string(),
                url_of("/stable/amd64-usr/3510.2.0/flatcar_developer_container.bin.bz2")
            ),
            (
                "flatcar-3602.2.0".to_string(),
                "5.15.133-flatcar".to_string(),
                url_of("/stable/amd64-usr/3602.2.0/flatcar_developer_container.bin.bz2")
            ),
        ],
        "one bundle per release with a package list, named before any image is downloaded"
    );
    assert_eq!(server.count("flatcar_developer_container"), 0, "no image is downloaded by a crawl");
}

#[test]
fn garden_releases_and_their_component_descriptors_give_kernel_packers_garden_bundles() {
    let work = tempdir();
    let api = work.path().join("www/repos/gardenlinux/gardenlinux");
    std::fs::create_dir_all(&api).unwrap();
    let release = |tag: &str, descriptor: Option<&str>| {
        let assets = match descriptor {
            Some(path) => format!(
                r#"[{{"name":"rootfs.tar.xz","browser_download_url":"{}"}},{{"name":"component-descriptor","browser_download_url":"{}"}}]"#,
                url_of("/dl/rootfs.tar.xz"),
                url_of(path)
            ),
            None => "[]".to_string(),
        };
        format!(r#"{{"tag_name":"{tag}","name":"{tag}","draft":false,"assets":{assets}}}"#)
    };
    // A full first page (30, as the API pages them), then a short one.
    let mut first: Vec<String> = (0..29).map(|i| release(&format!("0.{i}.0"), None)).collect();
    first.push(release("934.9.0", Some("/dl/934.9.0/component-descriptor")));
    std::fs::write(api.join("releases?page=1&per_page=30"), format!("[{}]", first.join(","))).unwrap();
    let second =
        [release("1312.1.0", Some("/dl/1312.1.0/component-descriptor")), release("1312.0.0", Some("/dl/missing"))];
    std::fs::write(api.join("releases?page=2&per_page=30"), format!("[{}]", second.join(","))).unwrap();
    let descriptor = |kernel: &str, version: &str| {
        format!(
            "component:\n  name: github.com/gardenlinux/gardenlinux\n  resources:\n  - name: rootfs\n    labels:\n    - name: gardener.cloud/gardenlinux/ci/build-metadata\n      value:\n        debianPackages:\n        - adduser 3.118\n        - linux-image-{kernel}-cloud-amd64 {version}\n"
        )
    };
    for (tag, kernel, version) in [
        ("934.9.0", "5.15.114-gardenlinux", "5.15.114-0gardenlinux3"),
        ("1312.1.0", "6.6.21-gardenlinux", "6.6.21-0gardenlinux1"),
    ] {
        let dir = work.path().join("www/dl").join(tag);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("component-descriptor"), descriptor(kernel, version)).unwrap();
    }
    let server = Server::start();
    server.mount("/", &work.path().join("www"));
    let source = format!(
        "- name: garden\n  type: garden\n  kind: garden\n  url: {}\n  pool_url: {}\n  grouping: depends\n",
        url_of("/repos/gardenlinux/gardenlinux/releases"),
        url_of("/gardenlinux/pool/main/l")
    );
    let sources = sources_file(work.path(), &[source]);
    let p = paths(work.path());
    run_ok(&mut crawl(&sources, &p, &server, CANONICAL, &["garden"]));
    let manifest = Manifest::load(&p.manifest, None).unwrap();
    let mut names: Vec<String> = manifest.entries.values().map(|e| e.name.clone().unwrap_or_default()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "5.15.114-gardenlinux-amd64",
            "5.15.114-gardenlinux-cloud-amd64",
            "6.6.21-gardenlinux-amd64",
            "6.6.21-gardenlinux-cloud-amd64"
        ],
        "kernel-packer's Garden naming, two flavours per kernel"
    );
    assert!(manifest.entries.values().all(|e| e.kind == "garden" && e.packages.len() == 3));
    // The same bundle as kernel-packer's manifest has for 5.15.114 cloud.
    let listed = std::fs::read_to_string(common::kernel_packer_fixtures().join("gardenlinux.txt")).unwrap();
    let cloud =
        manifest.entries.values().find(|e| e.name.as_deref() == Some("5.15.114-gardenlinux-cloud-amd64")).unwrap();
    for package in &cloud.packages {
        let file = package.url.rsplit('/').next().unwrap();
        assert!(
            listed.lines().any(|l| l.ends_with(&format!("/linux-5.15/{file}"))),
            "{file} is in kernel-packer's list"
        );
    }
}

/// The host part of kernel-packer's URLs up to (not including) `marker`,
/// read from its own list, so no host is written here.
fn prefix_before(lines: &[String], marker: &str) -> String {
    let line = lines.iter().find(|l| l.contains(marker)).unwrap_or_else(|| panic!("a line with {marker}"));
    line[..line.find(marker).unwrap()].to_string()
}

/// minikube's release list and the ISO buildroot configs at each tag (laid
/// out as minikube's repository has them: `configs/minikube_x86_64_defconfig`
/// from v1.26, `configs/minikube_defconfig` before) give the very list
/// kernel-packer crawled, defconfig URLs and kernel.org tarballs alike.
#[test]
fn a_minikube_release_list_and_its_iso_configs_give_kernel_packers_minikube_list() {
    let theirs: Vec<String> = std::fs::read_to_string(common::kernel_packer_fixtures().join("minikube.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let (their_trees, their_kernels) = (
        format!("{}/kubernetes/minikube", prefix_before(&theirs, "/kubernetes/minikube/")),
        format!("{}/pub/linux/kernel", prefix_before(&theirs, "/pub/linux/kernel/")),
    );
    let work = tempdir();
    let www = work.path().join("www");
    let mut names = vec!["v1.23.2".to_string(), "v1.34.0-beta.0".to_string(), "v1.99.0".to_string()];
    for line in theirs.iter().filter(|l| l.contains("/kubernetes/minikube/")) {
        let rest = line.strip_prefix(&format!("{their_trees}/")).unwrap();
        let (tag, rest) = rest.split_once('/').unwrap();
        let (path, kernel) = rest.split_once("?kernel=").unwrap();
        let config = path.strip_prefix("deploy/iso/minikube-iso/").unwrap();
        let minor: u32 = tag.split('.').nth(1).unwrap().parse().unwrap();
        let buildroot = if minor >= 26 { "minikube_x86_64_defconfig" } else { "minikube_defconfig" };
        let dir = www.join(format!("trees/{tag}/deploy/iso/minikube-iso/configs"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(buildroot),
            format!("BR2_LINUX_KERNEL=y\nBR2_LINUX_KERNEL_CUSTOM_VERSION=y\nBR2_LINUX_KERNEL_CUSTOM_VERSION_VALUE=\"{kernel}\"\nBR2_LINUX_KERNEL_USE_CUSTOM_CONFIG=y\nBR2_LINUX_KERNEL_CUSTOM_CONFIG_FILE=\"$(BR2_EXTERNAL_MINIKUBE_PATH)/{config}\"\n"),
        )
        .unwrap();
        names.push(tag.to_string());
    }
    // A prerelease and a release older than v1.24 are not crawled; a tag
    // without an ISO config (v1.99.0) is skipped.
    let list: Vec<String> = names.iter().map(|n| format!(r#"{{"name":"{n}","checksums":{{"linux":"00"}}}}"#)).collect();
    std::fs::write(www.join("releases.json"), format!("[{}]", list.join(","))).unwrap();
    let server = Server::start();
    server.mount("/", &www);
    let source = format!(
        "- name: minikube\n  type: minikube\n  kind: minikube\n  url: {}\n  tree_url: {}\n  kernel_url: {}\n  grouping: build\n",
        url_of("/releases.json"),
        url_of("/trees"),
        url_of("/pub/linux/kernel")
    );
    let sources = sources_file(work.path(), &[source]);
    let p = paths(work.path());
    run_ok(&mut crawl(&sources, &p, &server, CANONICAL, &["minikube"]));
    let ours: std::collections::BTreeSet<String> = read(&p.lists.join("minikube.txt"))
        .lines()
        .map(|l| l.replace(&url_of("/trees"), &their_trees).replace(&url_of("/pub/linux/kernel"), &their_kernels))
        .collect();
    let theirs: std::collections::BTreeSet<String> = theirs.into_iter().collect();
    assert_eq!(ours, theirs, "the crawled list is kernel-packer's");
    let manifest = Manifest::load(&p.manifest, None).unwrap();
    assert_eq!(manifest.entries.len(), 18, "one bundle per tag, as kernel-packer's manifest has");
    for entry in manifest.entries.values() {
        assert_eq!((entry.kind.as_str(), entry.packages.len()), ("minikube", 2));
    }
    assert_eq!(server.count(".tar.xz"), 0, "no tarball is downloaded by a crawl");
    assert!(server.count("v1.23.2") == 0 && server.count("beta") == 0, "{:?}", server.log());
}

#[test]
fn a_kernel_org_listing_gives_the_newest_releases_of_each_series_with_its_config() {
    let work = tempdir();
    let www = work.path().join("www");
    std::fs::create_dir_all(www.join("pub/linux/kernel/v6.x")).unwrap();
    let links: String = ["6.6", "6.6.1", "6.6.9", "6.6.10", "6.1.120", "6.12.3"]
        .iter()
        .map(|v| format!("<a href=\"linux-{v}.tar.xz\">linux-{v}.tar.xz</a> 01-Jan-2025 00:00 140M\n<a href=\"linux-{v}.tar.sign\">s</a>\n"))
        .collect();
    std::fs::write(
        www.join("pub/linux/kernel/v6.x/index.html"),
        format!("<html><body><pre>{links}</pre></body></html>"),
    )
    .unwrap();
    let server = Server::start();
    server.mount("/", &www);
    let source = format!(
        "- name: linuxkit\n  type: linuxkit\n  kind: kernel-org\n  url: {}\n  series: ['6.6', '6.1']\n  config_url: {}\n  newest: 2\n  grouping: build\n",
        url_of("/pub/linux/kernel"),
        url_of("/linuxkit/kernel/{series}.x/config-x86_64")
    );
    let sources = sources_file(work.path(), &[source]);
    let p = paths(work.path());
    run_ok(&mut crawl(&sources, &p, &server, CANONICAL, &["linuxkit"]));
    let manifest = Manifest::load(&p.manifest, None).unwrap();
    let mut got: Vec<(String, Vec<String>)> = manifest
        .entries
        .values()
        .map(|e| (e.name.clone().unwrap_or_default(), e.packages.iter().map(|p| p.url.clone()).collect()))
        .collect();
    got.sort();
    let entry = |v: &str, series: &str| {
        (
            v.to_string(),
            vec![
                url_of(&format!("/pub/linux/kernel/v6.x/linux-{v}.tar.xz")),
                url_of(&format!("/linuxkit/kernel/{series}.x/config-x86_64")),
            ],
        )
    };
    assert_eq!(got, [entry("6.1.120", "6.1"), entry("6.6.10", "6.6"), entry("6.6.9", "6.6")]);
    let bad = "- name: bad\n  type: linuxkit\n  kind: kernel-org\n  url: http://k.example.test\n  series: ['../6']\n  config_url: http://k.example.test/c\n  grouping: build\n";
    let err = run_err(&mut crawl(&sources_file(work.path(), &[bad.to_string()]), &p, &server, CANONICAL, &["bad"]));
    assert!(err.contains("not a kernel series"), "{err}");
}
