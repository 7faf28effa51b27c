//! The real Debian headers of the current bookworm kernel become a bundle
//! that GNU tar extracts and that, moved elsewhere, builds a hello-world
//! module with the plain make line, vermagic starting with BUNDLE_UNAME.

mod common;

use common::http::Server;
use common::pkgs::{real_debian, RealDebian};
use common::{build_hello, gnu_tar_extract, kpackfs, read, run_err, run_ok, sha256_file, tempdir};
use std::path::Path;

#[test]
fn real_debian_bundle_builds_hello_after_a_move() {
    let deb = real_debian();
    let work = tempdir();
    let tgz = work.path().join("bundle.tgz");
    run_ok(kpackfs().args(["bundle", "--type", "debian", "-o"]).arg(&tgz).args(deb.files()));
    let first = work.path().join("first");
    gnu_tar_extract(&tgz, &first);
    let moved = work.path().join("some/other/place");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(&first, &moved).unwrap();
    assert_eq!(read(&moved.join("BUNDLE_UNAME")), deb.uname);
    assert_eq!(read(&moved.join("BUNDLE_BUILD_DIR")), format!("./usr/src/linux-headers-{}", deb.uname));
    let vermagic = build_hello(&moved, &work.path().join("hello"));
    assert!(vermagic.starts_with(&deb.uname), "vermagic {vermagic:?} does not start with {}", deb.uname);
}

#[test]
fn same_packages_give_the_same_bytes() {
    let deb = real_debian();
    let work = tempdir();
    let a = work.path().join("a.tgz");
    let b = work.path().join("b.tgz");
    let mut files = deb.files();
    run_ok(kpackfs().args(["bundle", "--type", "debian", "-o"]).arg(&a).args(&files));
    files.reverse();
    run_ok(kpackfs().args(["bundle", "--type", "debian", "-o"]).arg(&b).args(&files));
    assert_eq!(sha256_file(&a), sha256_file(&b));
}

/// A manifest for the real packages with canonical URLs, and a loopback
/// mirror serving them.
fn manifest_and_mirror(deb: &RealDebian, dir: &Path, corrupt_sha: bool) -> (std::path::PathBuf, Server) {
    let server = Server::start();
    let pool = dir.join("mirror");
    for p in &deb.packages {
        let dest = pool.join(&p.filename);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&p.path, &dest).unwrap();
    }
    server.mount("/debian-security", &pool);
    server.mount("/debian", &pool);
    let mut manifest = kpackfs::manifest::Manifest::default();
    let packages = deb
        .packages
        .iter()
        .map(|p| {
            let mut sha = p.sha256.clone();
            if corrupt_sha && p.name.ends_with("-common") {
                sha = "0".repeat(64);
            }
            kpackfs::manifest::Package {
                url: RealDebian::canonical_url(p),
                also: Vec::new(),
                sha256: Some(sha),
                sha512: None,
                size: Some(p.size),
            }
        })
        .collect();
    manifest.insert(kpackfs::manifest::BundleSpec {
        kind: "debian".into(),
        name: None,
        uname: None,
        signed_by: None,
        packages,
    });
    let path = dir.join("manifest.yml");
    manifest.save(&path).unwrap();
    (path, server)
}

/// `kpackfs bundle KEY --manifest M --cache-dir C` through the loopback mirror.
fn bundle_cmd(key: &str, manifest: &Path, cache: &Path, server: &Server, out: &Path) -> std::process::Command {
    let mut cmd = kpackfs();
    cmd.args(["bundle", key, "--manifest"]).arg(manifest).arg("--cache-dir").arg(cache).arg("--no-apt-mirrors");
    cmd.arg("--mirror").arg(format!("http://security.debian.org/debian-security={}", server.url("/debian-security")));
    cmd.arg("--mirror").arg(format!("http://ftp.debian.org/debian={}", server.url("/debian")));
    // What the loopback mirror does is under test: no archive steps in behind it.
    cmd.arg("--no-archives");
    cmd.arg("-o").arg(out);
    cmd
}

#[test]
fn manifest_entry_is_downloaded_verified_and_built() {
    let deb = real_debian();
    let work = tempdir();
    let (manifest, server) = manifest_and_mirror(&deb, work.path(), false);
    let out = work.path().join("out.tgz");
    let cache = work.path().join("cache");
    run_ok(&mut bundle_cmd(&deb.uname, &manifest, &cache, &server, &out));
    assert_eq!(server.count(".deb"), 3, "each package downloaded once");
    // Packages are stored by sha256, shared by later builds.
    for p in &deb.packages {
        assert!(cache.join("packages/sha256").join(&p.sha256).is_file());
    }
    let again = work.path().join("again.tgz");
    run_ok(&mut bundle_cmd(&format!("debian/{}", deb.uname), &manifest, &cache, &server, &again));
    assert_eq!(server.count(".deb"), 3, "the second build downloads nothing");
    assert_eq!(sha256_file(&out), sha256_file(&again));
    let root = work.path().join("x");
    gnu_tar_extract(&out, &root);
    let id = read(&root.join("BUNDLE_CHECKSUM"));
    let loaded = kpackfs::manifest::Manifest::load(&manifest, None).unwrap();
    assert!(loaded.entries.contains_key(&id), "BUNDLE_CHECKSUM is the manifest id");
}

#[test]
fn checksum_mismatch_fails_with_one_clear_line_and_writes_nothing() {
    let deb = real_debian();
    let work = tempdir();
    let (manifest, server) = manifest_and_mirror(&deb, work.path(), true);
    let out = work.path().join("out.tgz");
    let err = run_err(&mut bundle_cmd(&deb.uname, &manifest, &work.path().join("cache"), &server, &out));
    let line = err.lines().find(|l| l.starts_with("kpackfs: error:")).expect("an error line");
    assert!(line.contains("-common_") && line.contains("sha256 mismatch"), "{line}");
    assert!(!out.exists(), "no output on failure");
    assert!(std::fs::read_dir(work.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".tmp.")));
    // Only the two packages that verified are stored; the -common one is
    // nowhere in the store, under any name.
    let mut good: Vec<String> =
        deb.packages.iter().filter(|p| !p.name.ends_with("-common")).map(|p| p.sha256.clone()).collect();
    good.sort();
    assert_eq!(common::stored_packages(&work.path().join("cache")), good);
}

#[test]
fn http_failure_names_the_package_and_status() {
    let deb = real_debian();
    let work = tempdir();
    let (manifest, server) = manifest_and_mirror(&deb, work.path(), false);
    server.set_fault("kbuild", common::http::Fault::Status(404));
    let err = run_err(&mut bundle_cmd(
        &deb.uname,
        &manifest,
        &work.path().join("cache"),
        &server,
        &work.path().join("out.tgz"),
    ));
    assert!(err.contains("linux-kbuild") && err.contains("404"), "{err}");
}

#[test]
fn mirrors_can_come_from_the_config_file() {
    let deb = real_debian();
    let work = tempdir();
    let (manifest, server) = manifest_and_mirror(&deb, work.path(), false);
    let config = work.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "apt_mirrors: false\nmirrors:\n  http://security.debian.org/debian-security: {}\n  http://ftp.debian.org/debian: {}\n",
            server.url("/debian-security"),
            server.url("/debian")
        ),
    )
    .unwrap();
    let out = work.path().join("out.tgz");
    run_ok(
        kpackfs()
            .arg("--config")
            .arg(&config)
            .args(["bundle", &deb.uname, "--manifest"])
            .arg(&manifest)
            .arg("--cache-dir")
            .arg(work.path().join("cache"))
            .arg("-o")
            .arg(&out),
    );
    assert_eq!(server.count(".deb"), 3, "downloaded through the configured mirror");
    std::fs::write(&config, "mirrors: [\n").unwrap();
    let err = run_err(kpackfs().arg("--config").arg(&config).args(["list"]));
    assert!(err.contains("malformed config"), "{err}");
}

#[test]
fn full_disk_is_a_clear_error_and_leaves_no_partial_output() {
    let deb = real_debian();
    let work = tempdir();
    let disk = common::SmallDisk::new(&work.path().join("small"), "3m");
    let out = disk.0.join("bundle.tgz");
    let run =
        kpackfs().arg("bundle").arg("--type").arg("debian").arg("-o").arg(&out).args(deb.files()).output().unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(73), "a full disk exits with no_space's code: {err}");
    let line = err.lines().find(|l| l.starts_with("kpackfs: error:")).expect("an error line");
    assert!(line.contains("No space left on device"), "{line}");
    let left: Vec<_> = std::fs::read_dir(&disk.0).unwrap().collect();
    assert!(left.is_empty(), "nothing partial on the full disk: {left:?}");
}
