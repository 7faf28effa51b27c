//! The remote bundle tier (issue 12 item 1), in-process over a `file://`
//! tier: a bundle one "host" built serves the next without a package
//! download; corrupted objects are rejected and the bundle built locally.

use crate::harness::{Harness, Options};
use kpackfs::remote::{digest_key, id_key, pack_digest_key, pack_key, Remote, RemoteOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const UNAME: &str = "9.1.0-1-amd64";

fn tier(dir: &Path) -> Arc<Remote> {
    let url = url::Url::from_directory_path(dir).unwrap().to_string();
    let opts = RemoteOptions { stall: Duration::from_secs(2), deadline: Duration::from_secs(10), read_only: false };
    Arc::new(Remote::open(&url, opts).unwrap())
}

fn host(remote: &Arc<Remote>) -> Harness {
    Harness::new(&[UNAME], 20_000, Options { remote: Some(remote.clone()), ..Options::default() })
}

fn object(dir: &Path, key: object_store::path::Path) -> std::path::PathBuf {
    dir.join(key.as_ref())
}

/// Wait for the first host's background write-back: its last object is
/// the .tgz's digest (the pack goes first).
fn written(dir: &Path, h: &Harness) {
    let digest = object(dir, digest_key(&h.bundle_id(0)));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !digest.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(digest.exists(), "the first host wrote the bundle back");
}

/// Remove a bundle's pack objects, so a host reads its .tgz.
pub fn without_pack(dir: &Path, id: &kpackfs::ids::BundleId) {
    for key in [pack_digest_key(id), pack_key(id)] {
        std::fs::remove_file(object(dir, key)).unwrap();
    }
}

#[test]
fn a_bundle_one_host_built_serves_the_next_without_packages() {
    let bucket = tempfile::tempdir().unwrap();
    let remote = tier(bucket.path());
    let first = host(&remote);
    let file = format!("debian/{UNAME}/usr/src/linux-headers-{UNAME}/include/linux/kpack.h");
    let content = first.read_file(&file).unwrap();
    assert!(!first.source.calls().is_empty(), "the first host built from packages");
    written(bucket.path(), &first);
    let tgz_first = first.read_file(&format!("debian/{UNAME}.tgz")).unwrap();

    let second = host(&tier(bucket.path()));
    assert_eq!(second.read_file(&file).unwrap(), content);
    assert!(second.source.calls().is_empty(), "no package download: {:?}", second.source.calls());
    assert_eq!(second.counters().remote_hits.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(second.counters().builds.load(std::sync::atomic::Ordering::Relaxed), 0);
    // The .tgz installed from the tier is the first host's, byte for byte.
    assert_eq!(second.read_file(&format!("debian/{UNAME}.tgz")).unwrap(), tgz_first);
    assert_eq!(std::fs::read(object(bucket.path(), id_key(&first.bundle_id(0)))).unwrap(), tgz_first);
}

#[test]
fn corrupted_objects_are_rejected_and_the_bundle_built_locally() {
    let bucket = tempfile::tempdir().unwrap();
    let remote = tier(bucket.path());
    let first = host(&remote);
    first.read_file(&format!("debian/{UNAME}/BUNDLE_UNAME")).unwrap();
    written(bucket.path(), &first);
    let id = first.bundle_id(0);
    // The .tgz is the subject: without the pack, hosts read it.
    without_pack(bucket.path(), &id);
    let (tgz, digest) = (object(bucket.path(), id_key(&id)), object(bucket.path(), digest_key(&id)));
    let good = std::fs::read(&tgz).unwrap();
    let cases: Vec<(&str, Vec<u8>, Option<String>)> = vec![
        // Bytes changed, digest kept: the digest check catches it.
        (
            "changed bytes",
            {
                let mut b = good.clone();
                let n = b.len() / 2;
                b[n] ^= 1;
                b
            },
            None,
        ),
        // Garbage with its own matching digest: not a bundle.
        ("garbage with its digest", b"not a tgz".to_vec(), Some(kpackfs::util::sha256_hex(b"not a tgz"))),
    ];
    // A host that builds writes its pack back even when the damaged .tgz
    // stays (create-only): gone before each host, so it reads the .tgz.
    let no_pack = || {
        for key in [pack_digest_key(&id), pack_key(&id)] {
            let _ = std::fs::remove_file(object(bucket.path(), key));
        }
    };
    for (what, bytes, new_digest) in cases {
        no_pack();
        std::fs::write(&tgz, &bytes).unwrap();
        if let Some(d) = &new_digest {
            std::fs::write(&digest, format!("{d}  {}.tgz\n", id.hex())).unwrap();
        }
        let h = host(&tier(bucket.path()));
        assert_eq!(h.read_file(&format!("debian/{UNAME}/BUNDLE_UNAME")).unwrap(), UNAME.as_bytes(), "{what}");
        assert!(!h.source.calls().is_empty(), "{what}: built from packages instead");
        assert_eq!(h.counters().remote_errors.load(std::sync::atomic::Ordering::Relaxed), 1, "{what}");
        assert_eq!(h.counters().remote_hits.load(std::sync::atomic::Ordering::Relaxed), 0, "{what}");
    }
    // A valid bundle of another id under this id: BUNDLE_CHECKSUM tells.
    let other = Harness::new(&["9.2.0-1-amd64"], 20_000, Options::default());
    let other_tgz = other.read_file("debian/9.2.0-1-amd64.tgz").unwrap();
    no_pack();
    std::fs::write(&tgz, &other_tgz).unwrap();
    std::fs::write(&digest, format!("{}  {}.tgz\n", kpackfs::util::sha256_hex(&other_tgz), id.hex())).unwrap();
    let h = host(&tier(bucket.path()));
    assert_eq!(h.read_file(&format!("debian/{UNAME}/BUNDLE_UNAME")).unwrap(), UNAME.as_bytes());
    assert_eq!(h.counters().remote_errors.load(std::sync::atomic::Ordering::Relaxed), 1, "BUNDLE_CHECKSUM mismatch");
}

/// Other bytes under one bundle's id (garbage with its own digest) fail
/// that bundle's write-back alone: the next bundle the host builds is
/// written (a write backoff, as for a failing tier, would skip it for 30 s).
#[test]
fn an_object_in_the_way_fails_its_own_write_back_and_not_the_next_ones() {
    let bucket = tempfile::tempdir().unwrap();
    let other_uname = "9.2.0-1-amd64";
    let h = Harness::new(
        &[UNAME, other_uname],
        20_000,
        Options { remote: Some(tier(bucket.path())), ..Options::default() },
    );
    let (id, next) = (h.bundle_id(0), h.bundle_id(1));
    let (tgz, digest) = (object(bucket.path(), id_key(&id)), object(bucket.path(), digest_key(&id)));
    std::fs::create_dir_all(tgz.parent().unwrap()).unwrap();
    std::fs::write(&tgz, b"not a tgz").unwrap();
    std::fs::write(&digest, format!("{}  {}.tgz\n", kpackfs::util::sha256_hex(b"not a tgz"), id.hex())).unwrap();
    assert_eq!(h.read_file(&format!("debian/{UNAME}/BUNDLE_UNAME")).unwrap(), UNAME.as_bytes());
    // Refused when read, then in the way of the write-back.
    let errors = || h.counters().remote_errors.load(std::sync::atomic::Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    while errors() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(errors(), 2, "the read and the write of the damaged id failed");
    assert_eq!(std::fs::read(&tgz).unwrap(), b"not a tgz", "left for an operator");
    assert_eq!(h.read_file(&format!("debian/{other_uname}/BUNDLE_UNAME")).unwrap(), other_uname.as_bytes());
    let next_digest = object(bucket.path(), digest_key(&next));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !next_digest.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(next_digest.exists(), "the next bundle was written back");
}

#[test]
fn a_tier_that_fails_is_skipped_for_a_while() {
    let bucket = tempfile::tempdir().unwrap();
    let remote = tier(bucket.path());
    // A digest that is not one: every read of the tier fails.
    let h =
        Harness::new(&[UNAME, "9.2.0-1-amd64"], 20_000, Options { remote: Some(remote.clone()), ..Options::default() });
    for i in 0..2 {
        let d = object(bucket.path(), digest_key(&h.bundle_id(i)));
        std::fs::create_dir_all(d.parent().unwrap()).unwrap();
        std::fs::write(&d, "nonsense").unwrap();
    }
    h.read_file(&format!("debian/{UNAME}/BUNDLE_UNAME")).unwrap();
    h.read_file("debian/9.2.0-1-amd64/BUNDLE_UNAME").unwrap();
    assert_eq!(
        h.counters().remote_errors.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the second read skipped the tier"
    );
    assert!(!remote.health().can_read(Instant::now()));
}
