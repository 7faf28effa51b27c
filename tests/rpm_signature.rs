//! RPM gpgcheck (issue 10 item 5): fixture RPMs signed with rpmsign and
//! throwaway keys, checked before anything is extracted: a good signature
//! (header-only with payload digest, and legacy header+payload), the wrong
//! key, a tampered payload, a tampered header, unsigned; then end to end:
//! a yum source whose repomd is unsigned (`signed_index: false`) is crawled,
//! and the mount builds the well-signed package and refuses the other with
//! EIO and one log line naming the package and the key.

mod common;

use common::http::Server;
use common::mirror::{errno_of, Mounted};
use common::pkgs;
use common::repo::{yum_repo, TestKey};
use common::{kpackfs, tempdir};
use kpackfs::build::assemble::{assemble, Job, PackageFile};
use kpackfs::manifest::Manifest;
use std::path::{Path, PathBuf};

fn build(rpm: &Path, key: &Path) -> Result<kpackfs::layout::LaidOut, kpackfs::error::BuildError> {
    let display = rpm.file_name().unwrap().to_string_lossy().into_owned();
    assemble(Job {
        kind: "redhat",
        id: &"0".repeat(64),
        uname: None,
        signed_by: Some(key.to_str().unwrap()),
        packages: vec![PackageFile { path: rpm.to_path_buf(), order_key: display.clone(), display }],
        limits: kpackfs::package::Limits::default(),
        threads: 1,
    })
}

fn copy(from: &Path, to: PathBuf) -> PathBuf {
    std::fs::copy(from, &to).unwrap();
    to
}

/// Flip one byte `from_end` bytes before the end of the file.
fn flip_near_end(path: &Path, from_end: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() - from_end;
    bytes[at] ^= 0x55;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn signatures_are_checked_before_extraction() {
    let work = tempdir();
    let rsa = TestKey::with_algorithm(work.path(), "rsa", "rsa2048");
    let ed = TestKey::new(work.path(), "ed");
    let other = TestKey::new(work.path(), "other");
    let fx = pkgs::synthetic_rhel(work.path(), "redhat", "w19.zstdio");
    let plain = &fx.files[0];
    let d = work.path();

    let header_only = copy(plain, d.join("header-only.rpm"));
    rsa.rpmsign(&header_only, false);
    let laid = build(&header_only, &rsa.keyring).expect("an RSA header signature with the payload digest");
    assert_eq!(laid.meta.uname, fx.uname, "the package was then extracted and laid out");

    let legacy = copy(plain, d.join("legacy.rpm"));
    ed.rpmsign(&legacy, true);
    build(&legacy, &ed.keyring).expect("an EdDSA header signature plus the legacy one");

    let cases: [(&str, PathBuf, &Path, &str); 4] = [
        ("wrong key", header_only.clone(), &other.keyring, "signed by a key that is not in the keyring"),
        ("unsigned", copy(plain, d.join("unsigned.rpm")), &rsa.keyring, "not signed"),
        (
            "tampered payload",
            copy(&header_only, d.join("tampered-payload.rpm")),
            &rsa.keyring,
            "payload digest mismatch",
        ),
        ("tampered header", copy(&header_only, d.join("tampered-header.rpm")), &rsa.keyring, "bad signature"),
    ];
    flip_near_end(&cases[2].1, 10);
    // A byte of the name inside the main header (the second header magic;
    // the lead also holds the name, but nothing trusts the lead).
    let mut bytes = std::fs::read(&cases[3].1).unwrap();
    let magic = [0x8e, 0xad, 0xe8, 0x01];
    let headers: Vec<usize> = bytes.windows(4).enumerate().filter(|(_, w)| *w == magic).map(|(i, _)| i).collect();
    let main = headers[1];
    let name_at = main + bytes[main..].windows(12).position(|w| w == b"kernel-devel").unwrap();
    bytes[name_at + 7] = b'D';
    std::fs::write(&cases[3].1, bytes).unwrap();

    for (what, rpm, key, cause) in &cases {
        let refused = build(rpm, key).err().unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(refused.class, kpackfs::error::ErrorClass::Refused, "{what}: a signature refusal is refused");
        let err = format!("{refused:#}");
        let file = rpm.file_name().unwrap().to_str().unwrap();
        assert!(err.contains(file), "{what}: the error names the package: {err}");
        assert!(err.contains(cause), "{what}: the error says why ({cause}): {err}");
        assert!(err.contains(&key.display().to_string()), "{what}: the error names the key: {err}");
        assert!(!err.contains('\n'), "{what}: one line: {err}");
    }
}

#[test]
fn a_yum_source_with_an_unsigned_index_is_verified_end_to_end() {
    let work = tempdir();
    let key = TestKey::with_algorithm(work.path(), "vendor", "rsa2048");
    let intruder = TestKey::new(work.path(), "intruder");
    let good = pkgs::synthetic_rhel(work.path(), "redhat", "w19.zstdio");
    key.rpmsign(&good.files[0], false);
    let bad_dir = work.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let bad = pkgs::synthetic_rhel(&bad_dir, "oracle", "w19.zstdio");
    intruder.rpmsign(&bad.files[0], false);
    // repomd.xml unsigned, as Amazon's, CentOS Stream's and Fedora's are.
    yum_repo(&work.path().join("www/el/os"), &[good.files[0].clone(), bad.files[0].clone()], None);
    let server = Server::start();
    server.mount("/", &work.path().join("www"));
    let canonical = "http://rpm.example.test";
    let sources = work.path().join("sources.yml");
    std::fs::write(
        &sources,
        format!(
            "- name: el\n  type: redhat\n  kind: yum\n  url: {canonical}/el\n  repos: [os]\n  packages: ['^kernel-devel$', '^kernel-uek-devel$']\n  grouping: single\n  keyring: {}\n  signed_index: false\n",
            key.keyring.display()
        ),
    )
    .unwrap();
    let (manifest, cache) = (work.path().join("manifest.yml"), work.path().join("cache"));
    let mirror = format!("{canonical}={}", server.url(""));
    let out = kpackfs()
        .arg("crawl")
        .arg("--sources")
        .arg(&sources)
        .arg("--lists-dir")
        .arg(work.path().join("lists"))
        .arg("--manifest")
        .arg(&manifest)
        .arg("--cache-dir")
        .arg(&cache)
        .args(["--no-apt-mirrors", "--mirror", &mirror, "--retries", "0"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("signed_index: false"), "the opt-out warns: {log}");
    let m = Manifest::load(&manifest, None).unwrap();
    assert_eq!(m.entries.len(), 2);
    for e in m.entries.values() {
        assert_eq!(e.signed_by.as_deref(), Some(key.keyring.to_str().unwrap()), "gpgcheck is on by default");
    }

    let mount = Mounted::start(&manifest, None, &["--no-apt-mirrors".into(), "--mirror".into(), mirror.clone()]);
    let good_dir = mount.path(&format!("redhat/{}", good.name));
    let uname = std::fs::read_to_string(good_dir.join("BUNDLE_UNAME")).expect("the well-signed package builds");
    assert_eq!(uname, good.uname);
    let bad_file_name = bad.files[0].file_name().unwrap().to_str().unwrap();
    let bad_entry = m.entries.values().find(|e| e.packages[0].url.ends_with(bad_file_name)).unwrap();
    let bad_name = bad_entry.name.clone().unwrap();
    let bad_file = mount.path(&format!("redhat/{bad_name}/BUNDLE_UNAME"));
    assert_eq!(errno_of(std::fs::read(&bad_file)), Some(libc::EIO), "a package signed by another key is refused");
    let log = mount.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("gpgcheck")).collect();
    assert_eq!(lines.len(), 1, "one log line: {log}");
    assert!(lines[0].contains(bad_file_name) && lines[0].contains(key.keyring.to_str().unwrap()), "{}", lines[0]);
    assert!(lines[0].contains(&bad_name), "the line names the bundle: {}", lines[0]);
}
