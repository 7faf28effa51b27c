//! Pack objects in the tier (issue 23 item 2): the cache's own pack beside
//! each bundle's .tgz, so a host installs a bundle by a verified copy (no
//! gunzip, no pass over the tree), and a pack that fails its checks is
//! refused and removed, the .tgz read instead, and a good pack put by the
//! next host that builds the bundle. Real mounts on a file:// tier and a
//! loopback mirror.

mod common;

use common::mirror::Mounted;
use common::tier::{objects, uname, Kernels};
use common::{kpackfs, run_ok, sha256_file, snapshot, tempdir};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The tier's objects whose names end with `suffix`.
fn ending(k: &Kernels, suffix: &str) -> Vec<PathBuf> {
    objects(&k.tier).into_iter().filter(|o| o.ends_with(suffix)).map(|o| k.tier.join(o)).collect()
}

/// The mount writes back in the background: wait for the pack's digest
/// (written last) and the claim's release.
fn wait_for_pack(k: &Kernels, m: &Mounted) -> PathBuf {
    let started = Instant::now();
    loop {
        let digests = ending(k, ".pack.sha256");
        if digests.len() == 1 && ending(k, ".building").is_empty() {
            return ending(k, ".pack").remove(0);
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no pack written: {:?}\n{}", objects(&k.tier), m.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tree(m: &Mounted, k: &Kernels) -> std::collections::BTreeMap<String, String> {
    snapshot(&m.path(&format!("debian/{}", k.flavours[0].name)))
}

fn tgz_sha(m: &Mounted, k: &Kernels) -> String {
    sha256_file(&m.path(&format!("debian/{}.tgz", k.flavours[0].name)))
}

fn installed_lines(m: &Mounted) -> Vec<String> {
    m.log().lines().filter(|l| l.contains("installed bundle")).map(str::to_string).collect()
}

#[test]
fn a_second_host_installs_the_bundle_from_the_tiers_pack_object() {
    let k = Kernels::new();
    let amd64 = &k.flavours[0];
    let first = k.mount(&[]);
    assert_eq!(uname(&first, amd64), amd64.uname);
    let (tree_built, tgz_built) = (tree(&first, &k), tgz_sha(&first, &k));
    let pack = wait_for_pack(&k, &first);
    let digest = std::fs::read_to_string(pack.with_extension("pack.sha256")).unwrap();
    assert_eq!(digest.split_whitespace().next(), Some(sha256_file(&pack).as_str()), "{digest}");
    k.server.reset_counts();
    let second = k.mount(&[]);
    assert_eq!(uname(&second, amd64), amd64.uname, "{}", second.log());
    let status = second.status();
    assert_eq!((status["remote_hits"].as_u64(), status["builds"].as_u64()), (Some(1), Some(0)), "{status}");
    let lines = installed_lines(&second);
    assert!(lines.len() == 1 && lines[0].contains("from the remote tier's pack"), "{lines:?}");
    assert_eq!(k.server.total_requests(), 0, "nothing asked of the mirror: {:?}", k.server.log());
    assert_eq!(tree(&second, &k), tree_built, "the same tree as the host that built it");
    // The .tgz made from the installed pack is the built one, byte for byte.
    assert_eq!(tgz_sha(&second, &k), tgz_built);
}

#[test]
fn a_pack_object_that_fails_its_digest_is_refused_and_the_tgz_read_then_the_next_build_replaces_it() {
    let k = Kernels::new();
    let amd64 = &k.flavours[0];
    let first = k.mount(&[]);
    assert_eq!(uname(&first, amd64), amd64.uname);
    let tree_built = tree(&first, &k);
    let pack = wait_for_pack(&k, &first);
    drop(first);
    let good = std::fs::read(&pack).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x01;
    std::fs::write(&pack, &bad).unwrap();

    // Refused (one line, the cause), removed, and the .tgz installed instead.
    let second = k.mount(&[]);
    assert_eq!(uname(&second, amd64), amd64.uname, "{}", second.log());
    let log = second.log();
    let refused: Vec<&str> = log.lines().filter(|l| l.contains(".pack refused")).collect();
    assert_eq!(refused.len(), 1, "{log}");
    assert!(refused[0].contains("sha256") && refused[0].contains("reading the .tgz instead"), "{}", refused[0]);
    let lines = installed_lines(&second);
    assert!(lines.len() == 1 && !lines[0].contains("pack"), "installed from the .tgz: {lines:?}");
    assert_eq!(second.status()["builds"], 0);
    assert_eq!(tree(&second, &k), tree_built);
    assert!(ending(&k, ".pack").is_empty() && ending(&k, ".pack.sha256").is_empty(), "{:?}", objects(&k.tier));
    assert!(!log.contains("the tier is skipped"), "garbage is not an outage: {log}");
    drop(second);

    // The bundle leaves the tier: the next host builds it and puts both back.
    for o in objects(&k.tier) {
        if o.starts_with("by-id/") {
            std::fs::remove_file(k.tier.join(o)).unwrap();
        }
    }
    let third = k.mount(&[]);
    assert_eq!(uname(&third, amd64), amd64.uname);
    assert_eq!(third.status()["builds"], 1, "built locally");
    let pack = wait_for_pack(&k, &third);
    assert_eq!(std::fs::read(&pack).unwrap(), good, "the same pack as the first build (deterministic)");
}

/// `bundle --remote` and `publish` write the pack beside the .tgz, and a
/// mount installs from what publish wrote.
#[test]
fn publish_writes_pack_objects_a_mount_installs_from() {
    let k = Kernels::new();
    let mut publish = kpackfs();
    publish.args(["publish", "--to"]).arg(k.tier_url());
    publish.arg("--manifest").arg(&k.manifest).arg("--cache-dir").arg(tempdir().path());
    publish.args(k.mirror_args());
    run_ok(&mut publish);
    assert_eq!(ending(&k, ".pack.sha256").len(), 2, "{:?}", objects(&k.tier));
    for pack in ending(&k, ".pack") {
        let digest = std::fs::read_to_string(pack.with_extension("pack.sha256")).unwrap();
        assert_eq!(digest.split_whitespace().next(), Some(sha256_file(&pack).as_str()));
        kpackfs::pack::Pack::open_verified(&pack).unwrap();
    }
    k.server.reset_counts();
    let m = k.mount(&[]);
    for flavour in &k.flavours {
        assert_eq!(uname(&m, flavour), flavour.uname, "{}", m.log());
    }
    let lines = installed_lines(&m);
    assert!(lines.len() == 2 && lines.iter().all(|l| l.contains("from the remote tier's pack")), "{lines:?}");
    assert_eq!(k.server.total_requests(), 0);
    // The .tgz from the installed pack is the one publish wrote.
    let id_tgz: Vec<PathBuf> = ending(&k, ".tgz");
    let tgz = sha256_file(&m.path(&format!("debian/{}.tgz", k.flavours[0].name)));
    assert!(id_tgz.iter().any(|p| sha256_file(p) == tgz), "{id_tgz:?}");
}

/// The mount writes its pack back before it compresses the .tgz (hosts
/// waiting on its claim install the pack): so a .tgz that cannot be
/// written still leaves the pack, and the next host installs from it.
#[test]
fn the_pack_is_written_back_before_and_without_the_tgz() {
    let k = Kernels::new();
    let amd64 = &k.flavours[0];
    let manifest = kpackfs::manifest::Manifest::load(&k.manifest, None).unwrap();
    let spec = manifest.entries.values().find(|s| s.packages.iter().any(|p| p.url.contains("amd64"))).unwrap();
    // Something of ours where the .tgz goes: its create-only write fails.
    let blocked = k.tier.join(format!("by-id/{}.tgz", spec.compute_id()));
    std::fs::create_dir_all(&blocked).unwrap();
    let first = k.mount(&[]);
    assert_eq!(uname(&first, amd64), amd64.uname);
    let pack = wait_for_pack(&k, &first);
    assert!(first.log().contains("its pack written to the remote tier"), "{}", first.log());
    assert!(ending(&k, ".sha256").iter().all(|d| d.to_string_lossy().ends_with(".pack.sha256")), "no .tgz digest");
    let tree_built = tree(&first, &k);
    drop(first);
    k.server.reset_counts();
    let second = k.mount(&[]);
    assert_eq!(uname(&second, amd64), amd64.uname, "{}", second.log());
    let lines = installed_lines(&second);
    assert!(lines.len() == 1 && lines[0].contains("from the remote tier's pack"), "{lines:?}\n{}", second.log());
    assert_eq!(second.status()["builds"], 0);
    assert_eq!(k.server.total_requests(), 0, "{:?}", k.server.log());
    assert_eq!(tree(&second, &k), tree_built);
    assert!(pack.exists());
}
