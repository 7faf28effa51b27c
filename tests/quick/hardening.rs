//! Issue 8's red-team findings that need no network, no root and no FUSE,
//! each test named after what it checks.

use super::harness::{Harness, Options};
use super::synthetic::{tar_gz, Kernel, Member};
use kpackfs::cache::BundleState;
use kpackfs::fs::Errno;
use kpackfs::manifest::{BundleSpec, Manifest, Package, PackageLists};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::Command;
use std::time::{Duration, Instant};

fn kpackfs() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kpackfs"));
    cmd.env_remove("KPACKFS_CONFIG").env("RUST_LOG", "warn");
    cmd
}

/// A 20,000-directory-deep path in a ~400-byte tarball.
fn deep_tarball() -> Vec<u8> {
    let path = "d/".repeat(20_000) + "f";
    tar_gz(&[Member::File(&path, b"x".to_vec())])
}

/// Item 1: a tiny package with a path 20,000 directories deep once
/// overflowed the daemon's stack. Now: EIO with its cause, the daemon goes
/// on serving, and the CLI fails in well under a second.
#[test]
fn a_deeply_nested_package_is_refused_not_fatal() {
    let h = Harness::new(&["9.1.0-1-amd64"], 100, Options::default());
    let deep = deep_tarball();
    assert!(deep.len() < 2048, "a small input: {} bytes", deep.len());
    let deep_path = h.dir.path().join("mirror/deep.tar.gz");
    std::fs::write(&deep_path, &deep).unwrap();
    let mut p = Package::new(format!("{}/deep.tar.gz", super::synthetic::BASE));
    p.sha256 = Some(kpackfs::util::sha256_hex(&deep));
    p.size = Some(deep.len() as u64);
    let mut m = h.manifest.clone();
    let id = m.insert(BundleSpec {
        kind: "debian".into(),
        name: Some("deep".into()),
        uname: Some("1.0-deep".into()),
        signed_by: None,
        packages: vec![p],
    });
    h.core.update_manifest(&m);
    assert_eq!(h.resolve("debian/deep/usr"), Err(Errno::EIO));
    let BundleState::Failed { cause, .. } = h.cache.state_of(&kpackfs::ids::BundleId::parse(&id).unwrap()) else {
        panic!()
    };
    assert!(cause.message().contains("deep.tar.gz") && cause.message().contains("byte limit"), "{cause}");
    assert_eq!(h.read_file("debian/9.1.0-1-amd64/BUNDLE_UNAME").unwrap(), b"9.1.0-1-amd64", "still serving");

    let started = Instant::now();
    let out = h.dir.path().join("out.tgz");
    let result = kpackfs().args(["bundle", "--type", "debian", "-o"]).arg(&out).arg(&deep_path).output().unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("deep.tar.gz") && stderr.contains("limit"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(!out.exists());
    // A path that is long in components rather than bytes is refused too.
    let many = "a/".repeat(300) + "f";
    let many_path = h.dir.path().join("many.tar.gz");
    std::fs::write(&many_path, tar_gz(&[Member::File(&many, b"x".to_vec())])).unwrap();
    let result = kpackfs().args(["bundle", "--type", "debian", "-o"]).arg(&out).arg(&many_path).output().unwrap();
    assert!(String::from_utf8_lossy(&result.stderr).contains("directories deep"), "{result:?}");
}

fn parse(text: &str) -> String {
    format!("{:#}", Manifest::parse(text, &PackageLists::default()).unwrap_err())
}

fn entry(kind: &str, name: &str, extra: &str) -> String {
    let url = "http://x.test/linux-headers-1.0-1-amd64_1_amd64.deb";
    let id = kpackfs::manifest::bundle_id([url]);
    format!("{id}:\n  type: {kind}\n  name: {name}\n{extra}  packages:\n  - url: {url}\n")
}

/// Item 9: one rule for types and names, in manifests as in crawl results.
#[test]
fn hostile_names_are_refused_with_the_entry_and_position() {
    assert!(parse(&entry("bundles", "x", "")).contains("reserved"));
    assert!(parse(&entry(&"t".repeat(4096), "x", "")).contains("1 to 32 characters"));
    assert!(parse(&entry("debian", "\"a\\nERROR forged\"", "")).contains("may only hold"));
    assert!(parse(&entry("debian", "foo.tgz", "")).contains("collide"));
    let unknown = parse(&entry("debian", "x", "  colour: blue\n"));
    assert!(unknown.contains("colour") && unknown.contains("line 4"), "{unknown}");
    let unknown_pkg = parse(&entry("debian", "x", "").replace("  - url:", "  - sha512: abc\n    url:"));
    assert!(unknown_pkg.contains("sha512"), "{unknown_pkg}");
    // The same rule for names derived from package file names.
    let mut m = Manifest::default();
    let mut p = Package::new("http://x.test/linux-headers-1.0-1-amd64.tgz_1_amd64.deb");
    p.sha256 = None;
    let id =
        m.insert(BundleSpec { kind: "debian".into(), name: None, uname: None, signed_by: None, packages: vec![p] });
    assert!(m.unnamed[&id].contains("collide"), "{:?}", m.unnamed);
}

fn two_debs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let k = Kernel::write(dir, "9.1.0-1-amd64", 1000);
    vec![k.headers, k.kbuild]
}

/// Item 10: `-o` never replaces a device or a link target's type.
#[test]
fn bundle_output_streams_to_devices_and_replaces_only_files() {
    let dir = tempfile::tempdir().unwrap();
    let debs = two_debs(dir.path());
    let run = |out: &str| kpackfs().args(["bundle", "--type", "debian", "-o", out]).args(&debs).output().unwrap();
    assert!(run("/dev/null").status.success());
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device(), "/dev/null is still a device");
    let to_stdout = run("-");
    assert!(to_stdout.status.success());
    assert_eq!(&to_stdout.stdout[..2], &[0x1f, 0x8b], "the .tgz on stdout");
    let link = dir.path().join("link.tgz");
    let target = dir.path().join("target.tgz");
    std::fs::write(&target, "old").unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(run(link.to_str().unwrap()).status.success());
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link stays a link");
    assert_eq!(&std::fs::read(&target).unwrap()[..2], &[0x1f, 0x8b], "its target got the bundle");
    let missing = run(dir.path().join("nodir/x.tgz").to_str().unwrap());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("nodir") && stderr.contains("does not exist"), "{stderr}");
}

/// Item 12: whatever the umask, nothing kpackfs writes is writable by others.
#[test]
fn umask_000_writes_nothing_world_writable() {
    let dir = tempfile::tempdir().unwrap();
    let debs = two_debs(dir.path());
    let out = dir.path().join("out.tgz");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000; exec \"$0\" bundle --type debian -o {} {} {}",
            out.display(),
            debs[0].display(),
            debs[1].display()
        ))
        .arg(env!("CARGO_BIN_EXE_kpackfs"))
        .status()
        .unwrap();
    assert!(status.success());
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o022, 0, "mode {mode:o}");
}

/// Issue 8 item 3: a manifest beyond the old YAML node budget (9,259
/// entries) loads, in the daemon's streaming path and the CLI's, and its
/// 20,000 bundles are served.
#[test]
fn a_manifest_beyond_the_old_node_budget_loads_and_lists() {
    let mut m = Manifest::default();
    for i in 0..20_000u32 {
        let packages = ["headers-9.{i}.0-1-amd64", "headers-9.{i}.0-1-common", "kbuild-9.{i}"]
            .iter()
            .map(|part| {
                let part = part.replace("{i}", &i.to_string());
                let mut p = Package::new(format!("http://x.test/pool/linux-{part}_9.{i}.0-1_amd64.deb"));
                p.sha256 = Some(format!("{:064x}", i as u64 * 3 + part.len() as u64));
                p.size = Some(1000 + i as u64);
                p
            })
            .collect();
        m.insert(BundleSpec { kind: "debian".into(), name: None, uname: None, signed_by: None, packages });
    }
    let yaml = m.to_yaml().unwrap();
    let parsed = Manifest::parse(&yaml, &kpackfs::manifest::PackageLists::default()).expect("the CLI's loader");
    assert_eq!(parsed.entries.len(), 20_000);
    let mut b = kpackfs::manifest::index::IndexBuilder::new();
    let n = kpackfs::manifest::index::add_yaml(&mut b, &yaml, &kpackfs::manifest::PackageLists::default(), None)
        .expect("the daemon's loader");
    assert_eq!(n.entries, 20_000);
    let ns =
        kpackfs::namespace::Namespace::new(kpackfs::manifest::index::Index::from_bytes(b.finish([0; 32])).unwrap());
    assert_eq!(ns.counts.shown, 20_000, "{:?}", ns.counts);
    assert_eq!(ns.type_len(ns.type_by_name("debian").unwrap()), Some(40_000), "a directory and a .tgz each");
}
