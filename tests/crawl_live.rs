//! Live: crawl the real Debian archive (through the host's apt mirror), find
//! the kernel `apt-cache depends linux-headers-amd64` names with its three
//! packages and their sha256, mount the result and build a module through it.

mod common;

use common::mirror::Mounted;
use common::pkgs::real_debian;
use common::{build_hello, kpackfs, run_ok, tempdir};
use kpackfs::manifest::Manifest;

#[test]
fn live_debian_crawl_finds_the_current_kernel_and_builds() {
    let deb = real_debian();
    let work = tempdir();
    let manifest = work.path().join("manifest.yml");
    let out = run_ok(
        kpackfs()
            .args(["crawl", "debian-bookworm", "debian-bookworm-security", "--lists-dir"])
            .arg(work.path().join("lists"))
            .arg("--manifest")
            .arg(&manifest)
            .arg("--cache-dir")
            .arg(work.path().join("cache")),
    );
    assert!(out.contains("2 ok, 0 unreachable, 0 refused"), "{out}");
    let loaded = Manifest::load(&manifest, None).unwrap();
    let entry = loaded
        .entries
        .values()
        .find(|e| e.kind == "debian" && e.name.as_deref() == Some(deb.uname.as_str()))
        .unwrap_or_else(|| panic!("{} is not in the crawled manifest", deb.uname));
    assert_eq!(entry.packages.len(), 3);
    for p in &deb.packages {
        let file = p.filename.rsplit('/').next().unwrap();
        let found = entry.packages.iter().find(|q| q.url.ends_with(file)).unwrap_or_else(|| panic!("{file} missing"));
        assert_eq!(found.sha256.as_deref(), Some(p.sha256.as_str()), "{file}");
        assert_eq!(found.size, Some(p.size));
        assert!(
            found.url.starts_with("http://security.debian.org/") || found.url.starts_with("http://ftp.debian.org/"),
            "canonical: {}",
            found.url
        );
    }
    // Mount the crawled manifest (packages through the host's apt mirror) and build.
    let m = Mounted::start(&manifest, None, &[]);
    let vermagic = build_hello(&m.path(&format!("debian/{}", deb.uname)), &work.path().join("hello"));
    assert!(vermagic.starts_with(&deb.uname), "{vermagic}");
}
