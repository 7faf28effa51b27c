//! Packages that left the archive: the mirror deleted one package of a
//! crawled kernel, and snapshot-like servers (the shape of Debian's
//! snapshot API: `/mr/binary/<package>/<version>/binfiles?fileinfo=1`, then
//! `/file/<hash>`) hold copies. The mount builds the kernel from the one
//! whose bytes match the manifest's sha256; one that serves other bytes is
//! refused and the next tried; with archives off, or only a wrong copy, the
//! failure keeps its class.

mod common;

use common::http::Server;
use common::mirror::Mounted;
use common::pkgs;
use common::repo::signed_debian_kernel;
use common::{kpackfs, read, run_ok, tempdir};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Gone {
    work: tempfile::TempDir,
    deb: pkgs::Synthetic,
    /// The canonical archive (loopback): it still holds every package.
    canon: Server,
    canonical: String,
    mirror: Server,
    /// The deleted package, kept aside.
    removed: PathBuf,
    manifest: PathBuf,
}

/// A crawled kernel whose mirror then lost one of its packages.
fn gone() -> Gone {
    let work = tempdir();
    let (key, deb, www) = signed_debian_kernel(work.path());
    let mirror = Server::start();
    mirror.mount("/", &www);
    let full = work.path().join("canonical");
    assert!(Command::new("cp").arg("-a").arg(&www).arg(&full).status().unwrap().success());
    let canon = Server::start();
    canon.mount("/", &full);
    let canonical = canon.url("");
    let sources = work.path().join("sources.yml");
    std::fs::write(
        &sources,
        format!(
            "- name: test-debian\n  type: debian\n  kind: apt\n  url: {canonical}/debian\n  suites: [testsuite]\n  components: [main]\n  architectures: [amd64]\n  grouping: depends\n  keyring: {}\n",
            key.keyring.display()
        ),
    )
    .unwrap();
    let manifest = work.path().join("manifest.yml");
    run_ok(
        kpackfs()
            .args(["crawl", "--sources"])
            .arg(&sources)
            .arg("--lists-dir")
            .arg(work.path().join("lists"))
            .arg("--manifest")
            .arg(&manifest)
            .arg("--cache-dir")
            .arg(work.path().join("crawl-cache"))
            .args(["--no-apt-mirrors", "--mirror", &format!("{canonical}={}", mirror.url(""))]),
    );
    // The mirror deletes the headers package (its signed index still lists it).
    let name = deb.files[0].file_name().unwrap().to_str().unwrap().to_string();
    let in_pool = find(&www.join("debian/pool"), &name).expect("the package in the pool");
    let removed = work.path().join("removed.deb");
    std::fs::rename(&in_pool, &removed).unwrap();
    Gone { work, deb, canon, canonical, mirror, removed, manifest }
}

fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.file_name() == name {
                return Some(e.path());
            }
        }
    }
    None
}

fn field(deb: &Path, name: &str) -> String {
    let out = Command::new("dpkg-deb").arg("-f").arg(deb).arg(name).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A snapshot-like server holding `bytes` as the copy of `deb` (its name
/// and version read by dpkg-deb), listed under the file's sha1 as the real
/// archive lists it.
fn snapshot(root: &Path, deb: &Path, file_name: &str, bytes: &[u8]) -> Server {
    let sha1 = {
        let out = Command::new("sha1sum").arg(deb).output().unwrap();
        String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
    };
    let (package, version) = (field(deb, "Package"), field(deb, "Version"));
    let api = root.join("mr/binary").join(&package).join(&version);
    std::fs::create_dir_all(&api).unwrap();
    std::fs::write(
        api.join("binfiles?fileinfo=1"),
        format!(
            r#"{{"_comment":"foo","binary":"{package}","binary_version":"{version}","result":[{{"architecture":"amd64","hash":"{sha1}"}}],
               "fileinfo":{{"{sha1}":[{{"archive_name":"debian","first_seen":"20230101T000000Z","name":"{file_name}","path":"/pool/main/l/linux","size":{}}}]}}}}"#,
            bytes.len()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("file")).unwrap();
    std::fs::write(root.join("file").join(&sha1), bytes).unwrap();
    let server = Server::start();
    server.mount("/", root);
    server
}

fn bundle(g: &Gone, extra: &[String]) -> std::process::Output {
    let d = g.work.path();
    kpackfs()
        .args(["bundle", &g.deb.name, "--manifest"])
        .arg(&g.manifest)
        .arg("--cache-dir")
        .arg(d.join(format!("cache-{}", extra.len())))
        .args(["--no-apt-mirrors", "--retries", "0", "--mirror", &format!("{}={}", g.canonical, g.mirror.url(""))])
        .args(extra)
        .arg("-o")
        .arg(d.join("out.tgz"))
        .output()
        .unwrap()
}

#[test]
fn a_kernel_whose_mirror_lost_a_package_builds_from_a_snapshot_archive_and_a_wrong_copy_is_refused() {
    let g = gone();
    let file_name = g.deb.files[0].file_name().unwrap().to_str().unwrap().to_string();
    // The canonical archive lost it too.
    g.canon.set_fault(&file_name, common::http::Fault::Status(410));
    let good = std::fs::read(&g.removed).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let wrong = snapshot(&g.work.path().join("snap-wrong"), &g.removed, &file_name, &bad);
    let right = snapshot(&g.work.path().join("snap-right"), &g.removed, &file_name, &good);
    let snap = |s: &Server| vec!["--snapshot".to_string(), format!("{}/debian={}", g.canonical, s.url(""))];

    // Archives off: not even a configured snapshot archive is asked; the
    // package is gone, and the class says so (EX_NOINPUT).
    let out = bundle(&g, &[vec!["--no-archives".to_string()], snap(&right)].concat());
    assert_eq!(out.status.code(), Some(66), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(right.total_requests(), 0, "{:?}", right.log());
    // Only a wrong copy: refused (EX_NOPERM), never admitted.
    let out = bundle(&g, &snap(&wrong));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(77), "{err}");
    assert!(err.contains("sha256 mismatch") && err.contains("/file/"), "{err}");

    // The mount: the mirror's 404, then the wrong copy (refused), then the right one.
    let mut args =
        vec!["--no-apt-mirrors".to_string(), "--mirror".into(), format!("{}={}", g.canonical, g.mirror.url(""))];
    args.extend(snap(&wrong));
    args.extend(snap(&right));
    let m = Mounted::start(&g.manifest, None, &args);
    let root = m.mnt.join("debian").join(&g.deb.name);
    assert_eq!(read(&root.join("BUNDLE_UNAME")).trim(), g.deb.uname);
    assert!(g.mirror.log().iter().any(|l| l.contains(&file_name)), "the mirror was asked first");
    assert!(wrong.count("/file/") >= 1 && right.count("/file/") == 1, "{:?} {:?}", wrong.log(), right.log());
    let log = read(&m.cache.join("kpackfs.log"));
    assert!(log.contains("found at") && log.contains(&right.url("/file/")), "{log}");
    // The package in the store is the manifest's.
    assert!(common::stored_packages(&m.cache).contains(&common::sha256_file(&g.removed)));
}

#[test]
fn a_package_its_mirror_lost_comes_from_the_canonical_archive_behind_it() {
    let g = gone();
    let file_name = g.deb.files[0].file_name().unwrap().to_str().unwrap().to_string();
    let out = bundle(&g, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mirror_asked = g.mirror.log().iter().any(|l| l.contains(&file_name));
    assert!(mirror_asked && g.canon.count(&file_name) == 1, "the mirror first, then the canonical URL");
    // Only the lost package: the others came from the mirror.
    assert_eq!(g.canon.log().iter().filter(|l| l.contains(".deb")).count(), 1, "{:?}", g.canon.log());
}
