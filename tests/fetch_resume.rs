//! Resuming a cut download against a server that honours If-Range (the
//! loopback mirror, tests/common/http.rs): an unchanged file resumes where
//! it was cut (206); a file replaced by a new version between the cut and
//! the retry is sent whole (200), the partial bytes are dropped, never
//! mixed with the new ones, and the new version is refused by the
//! manifest's sha256 without anything stored.

mod common;

use common::http::{Fault, Server};
use common::{kpackfs, pkgs, run_err, run_ok, stored_packages, tempdir};
use std::path::Path;

const CANONICAL: &str = "http://deb.example.test/debian";

/// A manifest of the synthetic kernel's three packages (with sha256),
/// served from `www/debian`.
fn setup(work: &Path) -> (pkgs::Synthetic, std::path::PathBuf, Server) {
    let fx = pkgs::synthetic_debian(work, ["none", "none", "none"]);
    let www = work.join("www/debian/pool");
    std::fs::create_dir_all(&www).unwrap();
    let mut manifest = kpackfs::manifest::Manifest::default();
    let packages = fx
        .files
        .iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_str().unwrap();
            std::fs::copy(f, www.join(name)).unwrap();
            let mut p = kpackfs::manifest::Package::new(format!("{CANONICAL}/pool/{name}"));
            p.sha256 = Some(common::sha256_file(f));
            p.size = Some(std::fs::metadata(f).unwrap().len());
            p
        })
        .collect();
    manifest.insert(kpackfs::manifest::BundleSpec {
        kind: "debian".into(),
        name: None,
        uname: None,
        signed_by: None,
        packages,
    });
    let path = work.join("manifest.yml");
    manifest.save(&path).unwrap();
    let server = Server::start();
    server.mount("/debian", &work.join("www/debian"));
    (fx, path, server)
}

fn bundle(work: &Path, fx: &pkgs::Synthetic, manifest: &Path, server: &Server) -> std::process::Command {
    let mut cmd = kpackfs();
    cmd.args(["bundle", &fx.name, "--manifest"]).arg(manifest);
    cmd.arg("--cache-dir").arg(work.join("cache")).arg("-o").arg(work.join("out.tgz"));
    cmd.args(["--no-apt-mirrors", "--retries", "2", "--mirror"]).arg(format!("{CANONICAL}={}", server.url("/debian")));
    cmd
}

/// The largest package (the one the cut falls in).
fn largest(fx: &pkgs::Synthetic) -> String {
    let f = fx.files.iter().max_by_key(|f| std::fs::metadata(f).unwrap().len()).unwrap();
    f.file_name().unwrap().to_str().unwrap().to_string()
}

#[test]
fn an_unchanged_file_resumes_where_it_was_cut() {
    let work = tempdir();
    let (fx, manifest, server) = setup(work.path());
    let name = largest(&fx);
    server.set_fault(&name, Fault::CutOnce(100, None));
    run_ok(&mut bundle(work.path(), &fx, &manifest, &server));
    let log = server.exchanges();
    let tries: Vec<&String> = log.iter().filter(|l| l.contains(&name)).collect();
    assert_eq!(tries.len(), 2, "{log:?}");
    assert!(tries[1].contains("range=Some(\"bytes=100-\")") && tries[1].contains("if-range=Some(\"\\\""), "{log:?}");
    let answer = log.iter().position(|l| l == tries[1]).map(|i| &log[i + 1]).unwrap();
    assert_eq!(answer, "  -> 206 Partial Content", "resumed, not sent whole");
}

#[test]
fn a_file_replaced_between_the_cut_and_the_resume_is_never_mixed() {
    let work = tempdir();
    let (fx, manifest, server) = setup(work.path());
    let name = largest(&fx);
    // The new version: same name and size, other bytes.
    let served = work.path().join("www/debian/pool").join(&name);
    let mut other = std::fs::read(&served).unwrap();
    let n = other.len();
    other[n - 1] ^= 0xff;
    other[n / 2] ^= 0xff;
    let replacement = work.path().join("new-version.deb");
    std::fs::write(&replacement, &other).unwrap();
    server.set_fault(&name, Fault::CutOnce(100, Some(replacement)));
    let err = run_err(&mut bundle(work.path(), &fx, &manifest, &server));
    assert!(err.contains(&name) && err.contains("sha256 mismatch"), "refused by the manifest's sha256: {err}");
    let log = server.exchanges();
    let second = log.iter().position(|l| l.contains(&name) && l.contains("bytes=100-")).expect("a resume was tried");
    assert_eq!(log[second + 1], "  -> 200 OK", "If-Range no longer holds: the whole new file: {log:?}");
    // Nothing of it stored (the other two packages verified and are).
    assert_eq!(stored_packages(&work.path().join("cache")).len(), 2);
    let partial = work.path().join("cache/packages/partial");
    let left: Vec<_> = std::fs::read_dir(&partial).unwrap().collect();
    assert!(left.is_empty(), "no partial left to resume from a mix: {left:?}");
    assert!(!work.path().join("out.tgz").exists());
}
