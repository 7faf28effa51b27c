//! The package tier (issue 23 item 1, issue 21's archive of record):
//! verified packages in the shared tier by sha256, with per-package
//! claims. Real mounts on a file:// tier and a loopback mirror serving the
//! packages of a synthetic Debian kernel's amd64 and arm64 flavours, which
//! share their `-common` package.

mod common;

use common::http::Fault;
use common::tier::{objects, uname, Kernels};
use common::{kpackfs, run_ok, sha256_file, tempdir};

#[test]
fn two_hosts_building_sibling_flavours_at_once_download_the_shared_package_once() {
    let k = Kernels::new();
    // The shared package drips for about two seconds, so both hosts want
    // it while the first is still downloading it.
    let common_size = std::fs::metadata(k.common()).unwrap().len() as usize;
    k.server.set_fault(&Kernels::mirror_path(k.common()), Fault::Throttle((common_size / 2).max(1)));
    let hosts = [k.mount(&[]), k.mount(&[])];
    std::thread::scope(|s| {
        for (h, flavour) in hosts.iter().zip(&k.flavours) {
            s.spawn(move || assert_eq!(uname(h, flavour), flavour.uname, "{}", h.log()));
        }
    });
    for file in k.all_files() {
        let path = Kernels::mirror_path(&file);
        assert_eq!(k.server.count(&path), 1, "{path} downloaded once fleet-wide: {:?}", k.server.log());
        let object = k.package_object(&file);
        assert_eq!(sha256_file(&object), sha256_file(&file), "the tier keeps the verified package");
    }
    let objects = objects(&k.tier);
    assert!(!objects.iter().any(|o| o.ends_with(".fetching")), "every claim released: {objects:?}");
    for h in &hosts {
        assert_eq!(h.status()["builds"], 1, "each host built its own flavour");
    }
}

#[test]
fn a_corrupted_package_object_is_refused_and_the_package_refetched_and_replaced() {
    let k = Kernels::new();
    let object = k.package_object(k.common());
    std::fs::create_dir_all(object.parent().unwrap()).unwrap();
    std::fs::write(&object, b"!<arch>\ngarbage that is not the package\n").unwrap();
    let m = k.mount(&[]);
    let amd64 = &k.flavours[0];
    assert_eq!(uname(&m, amd64), amd64.uname, "still served, from a downloaded copy");
    assert_eq!(k.server.count(&Kernels::mirror_path(k.common())), 1, "refetched from the mirror");
    let log = m.log();
    assert!(log.contains("refused") && log.contains("not the package"), "the cause is logged: {log}");
    assert_eq!(sha256_file(&object), sha256_file(k.common()), "the garbage replaced by the verified package");
    // Bad bytes in one object are not a tier outage: the tier is not skipped.
    assert!(!log.contains("the tier is skipped"), "{log}");
}

#[test]
fn published_packages_rebuild_bundles_after_the_mirror_and_the_bundle_objects_are_gone() {
    let k = Kernels::new();
    let publish = || {
        let mut c = kpackfs();
        c.args(["publish", "--packages", "--to"]).arg(k.tier_url());
        c.arg("--manifest").arg(&k.manifest).arg("--cache-dir").arg(tempdir().path());
        c.args(k.mirror_args());
        c
    };
    run_ok(&mut publish());
    let files = k.all_files();
    for file in &files {
        assert_eq!(sha256_file(&k.package_object(file)), sha256_file(file));
    }
    // Again: everything is there, nothing downloaded.
    k.server.reset_counts();
    let out = run_ok(&mut publish());
    assert!(out.contains("published 0, already there 2"), "{out}");
    assert_eq!(k.server.total_requests(), 0, "{:?}", k.server.log());
    // Upstream deletes the packages, and the bundles leave the tier.
    std::fs::remove_dir_all(k.work.path().join("www")).unwrap();
    for o in objects(&k.tier) {
        if !o.starts_with("packages/") {
            std::fs::remove_file(k.tier.join(o)).unwrap();
        }
    }
    // Without the package tier a host cannot build them.
    let off = k.mount(&["--no-package-tier", "--retries", "0"]);
    let flavour = &k.flavours[0];
    let err = std::fs::read(off.path(&format!("debian/{}/BUNDLE_UNAME", flavour.name))).unwrap_err();
    assert!(k.server.total_requests() > 0, "it asked the mirror: {err}");
    drop(off);
    // With it, a fresh host builds both from the tier's packages alone.
    k.server.reset_counts();
    let m = k.mount(&[]);
    for flavour in &k.flavours {
        assert_eq!(uname(&m, flavour), flavour.uname, "{}", m.log());
    }
    assert_eq!(m.status()["builds"], 2, "built from the tier's packages");
    assert_eq!(k.server.total_requests(), 0, "nothing asked of the mirror: {:?}", k.server.log());
}
