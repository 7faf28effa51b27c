//! kernel-packer's own manifest (6,473 entries) loads, and every entry gets
//! a name: the package-based types from package file names (with their
//! release), the others from what their URLs hold (issue 11 item 5).

mod common;

use kpackfs::manifest::Manifest;
use std::collections::BTreeMap;

#[test]
fn kernel_packer_manifest_loads_and_names() {
    let dir = common::kernel_packer_fixtures();
    let manifest = Manifest::load(&dir.join("manifest.yml"), None).expect("kernel-packer's manifest loads");
    assert_eq!(manifest.entries.len(), 6473);

    let mut per_type: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for (id, entry) in &manifest.entries {
        let slot = per_type.entry(entry.kind.as_str()).or_default();
        slot.0 += 1;
        if manifest.unnamed.contains_key(id) {
            assert!(entry.name.is_none());
        } else {
            slot.1 += 1;
            assert!(entry.name.is_some());
            slot.2 += usize::from(entry.uname.is_some());
        }
    }
    println!("{:<10} {:>7} {:>7} {:>12}", "type", "entries", "named", "with release");
    for (kind, (n, named, released)) in &per_type {
        println!("{kind:<10} {n:>7} {named:>7} {released:>12}");
    }
    // kernel-packer's fixture as it is: every type, its entries, how many
    // are named, how many with a release known before the build.
    let expected: BTreeMap<&str, (usize, usize, usize)> = [
        ("coreos", (231, 231, 0)),
        ("cos", (1001, 1001, 0)),
        ("debian", (45, 45, 45)),
        ("garden", (36, 36, 36)),
        ("linuxkit", (4, 4, 0)),
        ("minikube", (18, 18, 0)),
        ("oracle", (302, 302, 302)),
        ("redhat", (2420, 2420, 2020)),
        ("suse", (203, 203, 203)),
        ("ubuntu", (2213, 2213, 2213)),
    ]
    .into_iter()
    .collect();
    assert_eq!(per_type, expected);
    assert!(manifest.unnamed.is_empty(), "{:?}", manifest.unnamed.values().take(3).collect::<Vec<_>>());
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for reason in manifest.unnamed.values() {
        *reasons.entry(reason.split(" (").next().unwrap_or(reason).to_string()).or_default() += 1;
    }
    for (reason, n) in &reasons {
        println!("unnamed {n:>5}: {reason}");
    }

    // Red Hat subscription-API URLs carry only a checksum, no file name:
    // those are the entries without a release.
    let (redhat, _, redhat_released) = per_type["redhat"];
    let rhsm: Vec<_> = manifest
        .entries
        .values()
        .filter(|e| e.kind == "redhat" && e.packages[0].url.starts_with("https://api.access.redhat.com/"))
        .collect();
    assert_eq!(redhat_released + rhsm.len(), redhat);
    assert!(rhsm.iter().all(|e| e.name.as_deref().is_some_and(|n| n.starts_with("rhsm-"))));
    // Spot checks against names collector looks up.
    let names: std::collections::HashSet<&str> = manifest.entries.values().filter_map(|e| e.name.as_deref()).collect();
    for expected in [
        "5.14.21-150400.24.84-default",
        "4.15.0-1129-azure~16.04",
        "6.1.0-22-cloud-amd64",
        "3.10.0-1160.80.1.el7.x86_64",
    ] {
        assert!(names.contains(expected), "{expected} missing");
    }
}

#[test]
fn malformed_manifest_is_a_clear_error() {
    let dir = common::tempdir();
    let path = dir.path().join("manifest.yml");
    std::fs::write(&path, "abc:\n  type: debian\n  packages: [\n").unwrap();
    let err =
        common::run_err(common::kpackfs().args(["bundle", "x", "--manifest"]).arg(&path).args(["-o", "/dev/null"]));
    assert!(err.contains("malformed manifest"), "{err}");
}
