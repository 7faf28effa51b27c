//! Ubuntu's archive shapes on loopback, in the real formats (dpkg-deb,
//! apt-ftparchive, gpg): one release spread over the archive, security and
//! ports hosts; flavours whose headers come from another source package;
//! backports; arm64 from the ports archive; a release whose indexes carry
//! only SHA512; and the host's own Ubuntu mirror read from apt's sources.

mod common;

use common::http::Server;
use common::mirror::{errno_of, Mounted};
use common::pkgs::{synthetic_ubuntu_flavour, Synthetic, UbuntuKernel};
use common::repo::{FtpArchive, Hashes, TestKey};
use common::{kpackfs, read, run_ok, tempdir};
use kpackfs::manifest::Manifest;
use std::path::{Path, PathBuf};

const ARCHIVE: &str = "http://archive.example.test/ubuntu";
const SECURITY: &str = "http://security.example.test/ubuntu";
const PORTS: &str = "http://ports.example.test/ubuntu-ports";

/// One sources entry for release `r`, as the shipped ones are written.
fn ubuntu_source(r: &str, keyring: &Path, archive: &str, security: &str, ports: &str) -> String {
    format!(
        "- name: ubuntu-{r}\n  type: ubuntu\n  kind: apt\n  url: {archive}\n  security_url: {security}\n  ports_url: {ports}\n  suites: [{r}, {r}-updates, {r}-security]\n  components: [main, restricted, universe]\n  architectures: [amd64, arm64]\n  grouping: depends\n  keyring: {}\n",
        keyring.display()
    )
}

struct Archives {
    work: tempfile::TempDir,
    key: TestKey,
    server: Server,
    kernels: Vec<Synthetic>,
}

/// Release `testr` over three loopback "hosts": generic and a backport in
/// the release, lowlatency (its headers from linux-lowlatency) in -updates,
/// a newer generic and an aws kernel in -security on the security host, and
/// arm64 generic and generic-64k on the ports host.
fn three_hosts(hashes: Hashes) -> Archives {
    let work = tempdir();
    let key = TestKey::new(work.path(), "ubuntu");
    let w = work.path();
    let k = |abi: &str, flavour: &str, version: &str, arch: &str, common: &str| {
        synthetic_ubuntu_flavour(w, &UbuntuKernel::new(abi, flavour, version, arch, common), "xz")
    };
    let generic = k("9.8.0-10", "generic", "9.8.0-10.10", "amd64", "linux-headers-9.8.0-10");
    let backport = k("9.9.0-101", "generic", "9.9.0-101.111~20.04.1", "amd64", "linux-hwe-9.9-headers-9.9.0-101");
    let lowlatency = k("9.8.0-11", "lowlatency", "9.8.0-11.12", "amd64", "linux-lowlatency-headers-9.8.0-11");
    let newer = k("9.8.0-12", "generic", "9.8.0-12.13", "amd64", "linux-headers-9.8.0-12");
    let aws = k("9.8.0-1004", "aws", "9.8.0-1004.4", "amd64", "linux-aws-headers-9.8.0-1004");
    let arm = k("9.8.0-12", "generic", "9.8.0-12.13", "arm64", "linux-headers-9.8.0-12");
    let arm64k = k("9.8.0-12", "generic-64k", "9.8.0-12.13", "arm64", "linux-headers-9.8.0-12");

    let (release, pockets) = ("testr", ["testr", "testr-updates", "testr-security"]);
    let components = ["main", "restricted", "universe"];
    let archive = FtpArchive::new(&w.join("www/archive/ubuntu"));
    archive.add(release, "main", &generic.files);
    archive.add(release, "universe", &backport.files);
    archive.add("testr-updates", "restricted", &lowlatency.files);
    archive.publish(&key, &pockets[..2], &components, &["amd64"], hashes);
    let security = FtpArchive::new(&w.join("www/security/ubuntu"));
    security.add("testr-security", "main", &newer.files);
    security.add("testr-security", "main", &aws.files);
    security.publish(&key, &pockets[2..], &components, &["amd64"], hashes);
    let ports = FtpArchive::new(&w.join("www/ports/ubuntu-ports"));
    ports.add(release, "main", &[arm.files[0].clone(), arm.files[1].clone(), arm64k.files[0].clone()]);
    ports.publish(&key, &pockets, &components, &["arm64"], hashes);
    let server = Server::start();
    server.mount("/", &w.join("www"));
    Archives { work, key, server, kernels: vec![generic, backport, lowlatency, newer, aws, arm, arm64k] }
}

impl Archives {
    fn mirrors(&self) -> Vec<String> {
        vec![
            format!("--mirror={ARCHIVE}={}", self.server.url("/archive/ubuntu")),
            format!("--mirror={SECURITY}={}", self.server.url("/security/ubuntu")),
            format!("--mirror={PORTS}={}", self.server.url("/ports/ubuntu-ports")),
        ]
    }

    fn sources(&self) -> PathBuf {
        let path = self.work.path().join("sources.yml");
        std::fs::write(&path, ubuntu_source("testr", &self.key.keyring, ARCHIVE, SECURITY, PORTS)).unwrap();
        path
    }

    /// Crawl the release; returns the summary and the manifest's path.
    fn crawl(&self) -> (String, PathBuf) {
        let manifest = self.work.path().join("manifest.yml");
        let out = run_ok(
            kpackfs()
                .args(["crawl", "--sources"])
                .arg(self.sources())
                .arg("--lists-dir")
                .arg(self.work.path().join("lists"))
                .arg("--manifest")
                .arg(&manifest)
                .arg("--cache-dir")
                .arg(self.work.path().join("crawl-cache"))
                .args(["--no-apt-mirrors", "--retries", "0"])
                .args(self.mirrors()),
        );
        (out, manifest)
    }
}

fn prepared(hashes: Hashes) -> Archives {
    three_hosts(hashes)
}

#[test]
fn one_release_over_archive_security_and_ports_hosts_gives_every_flavour() {
    let a = prepared(Hashes::All);
    let (out, manifest) = a.crawl();
    assert!(out.contains("ubuntu-testr ") && out.contains("ubuntu-testr-ports "), "two sources: {out}");
    assert!(out.contains("2 ok, 0 unreachable, 0 refused"), "{out}");
    let m = Manifest::load(&manifest, None).unwrap();
    let mut names: Vec<(String, String)> = m
        .entries
        .values()
        .map(|e| {
            let mut e = e.clone();
            e.fill_names().unwrap();
            (e.name.unwrap(), e.packages.iter().map(|p| p.url.clone()).collect::<Vec<_>>().join(" "))
        })
        .collect();
    names.sort();
    let expected: Vec<String> = a.kernels.iter().map(|k| k.name.clone()).collect();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(names.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), want, "every flavour, once");
    // URLs stay canonical, each on the host of its pocket and architecture.
    for (name, urls) in &names {
        let host = if name.ends_with("-arm64") {
            PORTS
        } else if name.starts_with("9.8.0-12-") || name.contains("-aws") {
            SECURITY
        } else {
            ARCHIVE
        };
        assert!(urls.split(' ').all(|u| u.starts_with(host)), "{name}: {urls}");
    }
    assert!(names.iter().any(|(n, _)| n == "9.9.0-101-generic~20.04"), "the backport's series in its name");
    assert!(names.iter().any(|(n, _)| n == "9.8.0-12-generic-64k-arm64"), "arm64 names carry the architecture");

    // Mounted: every flavour lays out, links into its common package
    // replaced by what they point to, release and architecture right.
    let mnt = Mounted::start(&manifest, None, &a.mirrors());
    for k in &a.kernels {
        let root = mnt.path(&format!("ubuntu/{}", k.name));
        assert_eq!(read(&root.join("BUNDLE_UNAME")), k.uname, "{}", k.name);
        assert_eq!(read(&root.join("BUNDLE_BUILD_DIR")), ".");
        let makefile = std::fs::symlink_metadata(root.join("Makefile")).unwrap();
        assert!(makefile.is_file(), "{}: the flavour's link into the common package is dereferenced", k.name);
        assert!(read(&root.join("Makefile")).contains("nested"), "{}", k.name);
        assert!(root.join("include/linux/module.h").exists(), "{}", k.name);
        assert!(!root.join("scripts/dtc").exists() && !root.join("rust").exists(), "{}", k.name);
        let arch = if k.name.contains("-arm64") { "arm64" } else { "amd64" };
        assert_eq!(read(&root.join("scripts/marker")), format!("marker=ubuntu-{arch}\n"), "{}", k.name);
        // The plain make line works from the mount, nested make too.
        let made = run_ok(std::process::Command::new("make").arg("-s").arg("-C").arg(&root).arg("modules"));
        assert!(made.contains(&format!("release={}", k.uname)) && made.contains("nested=ok"), "{made}");
    }
    // One release, two architectures: `which` and /by-uname/ take this machine's.
    let by_uname = std::fs::read_link(mnt.path("by-uname/9.8.0-12-generic")).unwrap();
    assert!(by_uname.to_string_lossy().ends_with("ubuntu/9.8.0-12-generic"), "{by_uname:?}");
    let which = run_ok(kpackfs().args(["which", "9.8.0-12-generic", "--dir", "--mount"]).arg(&mnt.mnt));
    assert!(which.trim_end().ends_with("ubuntu/9.8.0-12-generic"), "{which}");
    // A backport and its original by the running kernel's version string.
    let which = run_ok(
        kpackfs().args(["which", "9.9.0-101-generic", "#111~20.04.1-Ubuntu SMP", "--dir", "--mount"]).arg(&mnt.mnt),
    );
    assert!(which.trim_end().ends_with("ubuntu/9.9.0-101-generic~20.04"), "{which}");
}

#[test]
fn a_release_whose_indexes_carry_only_sha512_is_crawled_and_verified() {
    let a = prepared(Hashes::Sha512Only);
    let release = read(&a.work.path().join("www/archive/ubuntu/dists/testr/Release"));
    assert!(release.contains("SHA512:") && !release.contains("SHA256:"), "{release}");
    let (out, manifest) = a.crawl();
    assert!(out.contains("2 ok, 0 unreachable, 0 refused"), "{out}");
    let m = Manifest::load(&manifest, None).unwrap();
    assert_eq!(m.entries.len(), a.kernels.len());
    for e in m.entries.values() {
        assert!(e.packages.iter().all(|p| p.sha256.is_none() && p.sha512.as_ref().is_some_and(|s| s.len() == 128)));
    }
    // A package changed on the mirror (same size) is refused by its sha512.
    let generic = &a.kernels[0];
    let flavour_file = generic.files[0].file_name().unwrap().to_str().unwrap().to_string();
    let pool = a.work.path().join("www/archive/ubuntu/pool/main/testr").join(&flavour_file);
    let mut bytes = std::fs::read(&pool).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff;
    std::fs::write(&pool, &bytes).unwrap();
    let mnt = Mounted::start(&manifest, None, &a.mirrors());
    let err = std::fs::read_to_string(mnt.path(&format!("ubuntu/{}/BUNDLE_UNAME", generic.name)));
    assert_eq!(errno_of(err), Some(libc::EIO));
    assert!(mnt.log().contains("sha512 mismatch"), "{}", mnt.log());
    // The others build, verified by sha512.
    let aws = &a.kernels[4];
    assert_eq!(read(&mnt.path(&format!("ubuntu/{}/BUNDLE_UNAME", aws.name))), aws.uname);
}

#[test]
fn the_hosts_ubuntu_mirror_named_in_apt_sources_serves_the_canonical_urls() {
    // The canonical URLs, as the shipped sources name them.
    let canonical = kpackfs::crawl::sources::canonical_bases();
    let (archive, security) = (canonical.ubuntu_archive.unwrap(), canonical.ubuntu_security.unwrap());
    let a = prepared(Hashes::All);
    // An Ubuntu host's apt sources: its mirror serves every pocket.
    let apt = a.work.path().join("etc-apt");
    std::fs::create_dir_all(apt.join("sources.list.d")).unwrap();
    let mirror = a.server.url("/archive/ubuntu");
    std::fs::write(
        apt.join("sources.list.d/ubuntu.sources"),
        format!("Types: deb\nURIs: {mirror}\nSuites: testr testr-updates\nComponents: main\n\nTypes: deb\nURIs: {}\nSuites: testr-security\nComponents: main\n", a.server.url("/security/ubuntu")),
    )
    .unwrap();
    let config = a.work.path().join("config.yml");
    std::fs::write(&config, format!("apt_dir: {}\n", apt.display())).unwrap();
    let sources = a.work.path().join("sources.yml");
    std::fs::write(
        &sources,
        ubuntu_source("testr", &a.key.keyring, &archive, &security, PORTS)
            .replace("architectures: [amd64, arm64]", "architectures: [amd64]"),
    )
    .unwrap();
    let manifest = a.work.path().join("manifest.yml");
    let crawl = |extra: &[&str]| {
        kpackfs()
            .args(["crawl", "--config"])
            .arg(&config)
            .arg("--sources")
            .arg(&sources)
            .arg("--lists-dir")
            .arg(a.work.path().join("lists"))
            .arg("--manifest")
            .arg(&manifest)
            .arg("--cache-dir")
            .arg(a.work.path().join("crawl-cache"))
            .args(["--retries", "0"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = crawl(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 ok, 0 unreachable"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = Manifest::load(&manifest, None).unwrap();
    assert_eq!(m.entries.len(), 5, "the five amd64 kernels");
    assert!(m
        .entries
        .values()
        .flat_map(|e| &e.packages)
        .all(|p| p.url.starts_with(&archive) || p.url.starts_with(&security)));
    // The mount fetches the packages through the same mirror.
    let mnt = Mounted::start(&manifest, None, &["--config".into(), config.display().to_string()]);
    let k = &a.kernels[3];
    assert_eq!(read(&mnt.path(&format!("ubuntu/{}/BUNDLE_UNAME", k.name))), k.uname);
    assert!(a.server.log().iter().any(|l| l.contains(k.files[0].file_name().unwrap().to_str().unwrap())));
    // The off switch: apt's mirrors unused, so a dead mirror rule is all there is.
    let out = crawl(&[
        "--no-apt-mirrors",
        "--mirror",
        &format!("{archive}=http://127.0.0.1:9"),
        "--mirror",
        &format!("{security}=http://127.0.0.1:9"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 ok, 1 unreachable"), "{text}");
}
