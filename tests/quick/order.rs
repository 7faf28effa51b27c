//! The cache's order and bindings, each with more than one candidate so a
//! wrong choice shows: least recently used first, a hit refreshes recency,
//! the order comes back at restart from the recorded last access, pinned
//! packages are never a victim, a rebuilt bundle keeps its inode numbers,
//! and a pack is bound to its bundle.

use super::harness::{Harness, Options, ME};
use kpackfs::cache::BundleState;
use kpackfs::fetch::source::Fault;
use kpackfs::fs::Lookup;
use std::time::Duration;

const U: [&str; 4] = ["9.1.0-1-amd64", "9.1.0-2-amd64", "9.1.0-3-amd64", "9.1.0-4-amd64"];
const FILLER: usize = 300_000;

fn touch(h: &Harness, i: usize) {
    h.read_file(&format!("debian/{}/BUNDLE_UNAME", U[i])).unwrap();
}

fn ready(h: &Harness, i: usize) -> bool {
    matches!(h.cache.state_of(&h.bundle_id(i)), BundleState::Ready { .. })
}

/// A harness whose budget holds `n` bundles: the packages are a few KB of
/// compressed zeros, so what counts is the packs.
fn holding(n: f64) -> Harness {
    let h = Harness::new(&U, FILLER, Options { zeros: true, ..Options::default() });
    touch(&h, 0);
    let one = h.cache.usage().used;
    let mut h = h.restart_after(|cache| {
        let _ = std::fs::remove_dir_all(cache);
    });
    h.opts.budget = (one as f64 * n) as u64;
    h.restart()
}

#[test]
fn eviction_takes_the_least_recently_used_and_a_hit_refreshes_recency() {
    let h = holding(3.5);
    touch(&h, 0);
    touch(&h, 1);
    touch(&h, 2);
    assert!((0..3).all(|i| ready(&h, i)), "three fit");
    // A hit on the oldest makes it the newest: the next eviction takes 1.
    touch(&h, 0);
    touch(&h, 3);
    assert!(ready(&h, 0), "the bundle just used stays");
    assert!(!ready(&h, 1), "the least recently used went");
    assert!(ready(&h, 2) && ready(&h, 3));
    // And again: now 2 is the oldest.
    touch(&h, 1);
    assert!(!ready(&h, 2), "then the next least recently used");
    assert!(ready(&h, 0) && ready(&h, 1) && ready(&h, 3));
}

#[test]
fn the_order_comes_back_at_restart_from_each_bundles_last_access() {
    // Two recorded orders, so that no directory order can pass by chance.
    for oldest in [2, 0] {
        let h = holding(10.0);
        for i in 0..3 {
            touch(&h, i);
        }
        let ids: Vec<_> = (0..3).map(|i| h.bundle_id(i)).collect();
        let order: Vec<usize> = std::iter::once(oldest).chain((0..3).filter(|i| *i != oldest)).collect();
        let mut h = h.restart_after(|cache| {
            let index = kpackfs::cache::index::Index::open(&cache.join("index.redb")).unwrap();
            let mut records = index.load_all().unwrap();
            for (rank, i) in order.iter().enumerate() {
                records.get_mut(&ids[*i]).unwrap().last_access = 1_000 * (rank as u64 + 1);
            }
            index.put_many(records.iter()).unwrap();
        });
        // A budget for two: the restart itself evicts the oldest by record.
        let one = h.cache.usage().used / 3;
        h.opts.budget = one * 2 + one / 2;
        let h = h.restart();
        assert!(!ready(&h, oldest), "the oldest by its recorded last access ({oldest}) went");
        assert!((0..3).filter(|i| *i != oldest).all(|i| ready(&h, i)), "the two used later stay");
    }
}

#[test]
fn a_pinned_package_is_never_the_victim_even_when_it_is_the_oldest() {
    // A large shared kbuild package, listed first: the oldest package of
    // every build. Bundles are in their grace period, so only packages can
    // go. The sizes are measured on a throwaway cache with the same packages.
    let opts = || Options { grace: Duration::from_secs(60), shared_kbuild_bytes: Some(200_000), ..Options::default() };
    let probe = Harness::new(&U, FILLER, opts());
    touch(&probe, 0);
    let first = probe.cache.usage().used;
    // Room for the first bundle with its packages, and half of the second
    // one's download: something must go, and the oldest is the kbuild
    // package the second build needs.
    let h = Harness::new(&U, FILLER, Options { budget: first + FILLER as u64 / 2, ..opts() });
    touch(&h, 0);
    h.source.add("linux-headers-9.1.0-2", Fault::Delay(Duration::from_millis(300)), 0, Some(1));
    let second = {
        let core = h.core.clone();
        let dir = h.resolve(&format!("debian/{}", U[1])).unwrap().attr.ino;
        h.start(move |done| core.lookup(dir, b"usr", ME, done))
    };
    assert!(
        matches!(second.recv_timeout(Duration::from_secs(30)).unwrap(), Ok(Lookup::Found(_))),
        "the build found its pinned package"
    );
    assert_eq!(h.source.calls_for("linux-kbuild"), 1, "fetched once, never evicted mid-build");
    assert!(h.counters().evictions.load(std::sync::atomic::Ordering::Relaxed) >= 1, "eviction did run");
}

#[test]
fn a_rebuilt_bundle_keeps_its_inode_numbers() {
    let h = holding(10.0);
    let path = format!("debian/{}/usr/src/linux-headers-{}/include/linux/kpack.h", U[0], U[0]);
    let before = h.resolve(&path).unwrap().attr.ino;
    let bytes = h.read_file(&path).unwrap();
    let dir_before = h.resolve(&format!("debian/{}/usr/src", U[0])).unwrap().attr.ino;
    // The pack goes (as eviction would remove it); the next access rebuilds it.
    let id = h.ids[0].clone();
    let downloads = h.source.calls_for("linux-headers-9.1.0-1");
    let h = h.restart_after(|cache| std::fs::remove_file(cache.join(format!("bundles/{id}.pack"))).unwrap());
    assert_eq!(h.resolve(&path).unwrap().attr.ino, before, "same inode for the same path after the rebuild");
    assert_eq!(h.resolve(&format!("debian/{}/usr/src", U[0])).unwrap().attr.ino, dir_before);
    assert_eq!(h.read_file(&path).unwrap(), bytes);
    assert!(matches!(h.cache.state_of(&h.bundle_id(0)), BundleState::Ready { .. }), "rebuilt");
    assert_eq!(h.source.calls_for("linux-headers-9.1.0-1"), downloads, "from the stored package");
}

#[test]
fn a_pack_copied_over_another_bundles_is_refused_and_rebuilt() {
    let h = holding(10.0);
    touch(&h, 0);
    touch(&h, 1);
    let (a, b) = (h.ids[0].clone(), h.ids[1].clone());
    let h = h.restart_after(|cache| {
        std::fs::copy(cache.join(format!("bundles/{a}.pack")), cache.join(format!("bundles/{b}.pack"))).unwrap();
    });
    let checksum = h.read_file(&format!("debian/{}/BUNDLE_CHECKSUM", U[1])).unwrap();
    assert_eq!(String::from_utf8(checksum).unwrap(), b, "B's own tree, not A's");
    let uname = h.read_file(&format!("debian/{}/BUNDLE_UNAME", U[1])).unwrap();
    assert_eq!(uname, U[1].as_bytes());
    assert!(h.counters().damaged.load(std::sync::atomic::Ordering::Relaxed) >= 1, "counted as damaged");
}

#[test]
fn a_truncated_cached_tgz_is_counted_as_damaged_and_rebuilt() {
    let h = holding(10.0);
    let tgz = format!("debian/{}.tgz", U[0]);
    let good = h.read_file(&tgz).unwrap();
    let id = h.ids[0].clone();
    let h = h.restart_after(|cache| {
        let path = cache.join(format!("bundles/{id}.tgz"));
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(good.len() as u64 / 2).unwrap();
    });
    assert_eq!(h.counters().damaged.load(std::sync::atomic::Ordering::Relaxed), 1, "counted (and logged)");
    assert_eq!(h.read_file(&tgz).unwrap(), good, "rebuilt whole");
}
