//! The cache: single flight, backoff, budget and grace eviction, pins,
//! restart, integrity of cached files, CPU use, killed callers.

use super::harness::{Harness, Options, ME};
use kpackfs::cache::BundleState;
use kpackfs::fetch::source::Fault;
use kpackfs::fs::{Caller, Errno, Lookup};
use std::time::{Duration, Instant};

/// Many concurrent requests for one cold bundle: each call returns at once
/// (its answer is queued, no thread waits), the queue holds them all, one
/// download per package happens, and every caller gets the same answer.
#[test]
fn many_waiters_share_one_build_and_hold_no_thread() {
    let h = Harness::new(&["9.1.0-1-amd64"], 200_000, Options::default());
    h.source.add("linux-headers", Fault::Delay(Duration::from_millis(400)), 0, Some(1));
    let dir = h.resolve("debian/9.1.0-1-amd64").unwrap().attr.ino;
    let started = Instant::now();
    let receivers: Vec<_> = (0..64)
        .map(|i| {
            let core = h.core.clone();
            let name = if i % 2 == 0 { "usr" } else { "BUNDLE_UNAME" };
            h.start(move |done| core.lookup(dir, name.as_bytes(), Caller { pid: 5000 + i }, done))
        })
        .collect();
    assert!(started.elapsed() < Duration::from_millis(300), "issuing 64 requests took {:?}", started.elapsed());
    let id = h.bundle_id(0);
    assert_eq!(h.cache.waiting(&id), 64, "all 64 queued on the one build");
    assert!(receivers.iter().all(|r| r.try_recv().is_err()), "nobody answered before the build");
    assert!(matches!(h.cache.state_of(&id), BundleState::Building(_)));
    for r in receivers {
        assert!(matches!(r.recv_timeout(Duration::from_secs(30)).unwrap(), Ok(Lookup::Found(_))));
    }
    assert_eq!(h.source.calls_for("linux-headers"), 1);
    assert_eq!(h.source.calls_for("linux-kbuild"), 1);
    assert_eq!(h.core.waiting().len(), 0);
}

#[test]
fn a_failure_backs_off_without_traffic_then_retries() {
    let h =
        Harness::new(&["9.1.0-1-amd64"], 100, Options { backoff: Duration::from_millis(300), ..Options::default() });
    h.source.add("linux-headers", Fault::Status(500), 0, Some(2));
    assert_eq!(h.resolve("debian/9.1.0-1-amd64/usr"), Err(Errno::EIO));
    let calls = h.source.calls_for("linux-headers");
    assert_eq!(calls, 2, "one retry within the attempt");
    for _ in 0..5 {
        assert_eq!(h.resolve("debian/9.1.0-1-amd64/usr"), Err(Errno::EIO));
    }
    assert_eq!(h.source.calls_for("linux-headers"), calls, "within the backoff: EIO with no request");
    std::thread::sleep(Duration::from_millis(350));
    assert!(h.resolve("debian/9.1.0-1-amd64/usr").is_ok(), "after the backoff, retried and built");
}

#[test]
fn the_budget_evicts_the_least_recent_and_the_grace_spares_recent_use() {
    let size = 400_000;
    // About 800 KB per bundle (package and pack): the budget holds one.
    let opts = Options { budget: 1_000_000, ..Options::default() };
    let h = Harness::new(&["9.1.0-1-amd64", "9.1.0-2-amd64"], size, opts);
    for u in ["9.1.0-1-amd64", "9.1.0-2-amd64"] {
        assert!(h.read_file(&format!("debian/{u}/BUNDLE_UNAME")).is_ok());
    }
    let u = h.cache.usage();
    assert!(u.used <= 1_000_000, "{u:?}");
    assert_eq!(h.cache.state_of(&h.bundle_id(0)), BundleState::Absent, "the least recently used went");
    assert!(matches!(h.cache.state_of(&h.bundle_id(1)), BundleState::Ready { .. }));
    // Evicted bundles stay visible and come back on access with the same bytes.
    assert_eq!(h.read_file("debian/9.1.0-1-amd64/BUNDLE_UNAME").unwrap(), b"9.1.0-1-amd64");
    assert_eq!(h.cache.state_of(&h.bundle_id(1)), BundleState::Absent, "and now the other one went");

    // With a grace period, recently used bundles are spared even over budget.
    let opts = Options { budget: 1_000_000, grace: Duration::from_secs(60), ..Options::default() };
    let h = Harness::new(&["9.1.0-1-amd64", "9.1.0-2-amd64"], size, opts);
    for u in ["9.1.0-1-amd64", "9.1.0-2-amd64"] {
        h.read_file(&format!("debian/{u}/BUNDLE_UNAME")).unwrap();
    }
    assert!(matches!(h.cache.state_of(&h.bundle_id(0)), BundleState::Ready { .. }));
    assert!(matches!(h.cache.state_of(&h.bundle_id(1)), BundleState::Ready { .. }));
}

/// The size of a built .tgz stays exact after eviction and after a restart:
/// checked in the core, where no kernel attribute cache can answer instead.
#[test]
fn tgz_size_survives_eviction_and_restart() {
    let opts = Options { budget: 1_500_000, ..Options::default() };
    let h = Harness::new(&["9.1.0-1-amd64", "9.1.0-2-amd64"], 500_000, opts);
    let tgz = h.resolve("debian/9.1.0-1-amd64.tgz").unwrap().attr.ino;
    let size = h.getattr(tgz, true).unwrap().attr.size;
    assert!(size > 400_000);
    h.read_file("debian/9.1.0-2-amd64/BUNDLE_UNAME").unwrap();
    h.read_file("debian/9.1.0-2-amd64.tgz").unwrap();
    assert_eq!(h.cache.state_of(&h.bundle_id(0)), BundleState::Absent, "evicted");
    assert_eq!(h.getattr(tgz, false).unwrap().attr.size, size);
    let h = h.restart();
    let tgz = h.resolve("debian/9.1.0-1-amd64.tgz").unwrap();
    assert_eq!(tgz.attr.size, size, "kept in the index across a restart");
    assert_eq!(h.source.calls_for("9.1.0-1"), 1, "stat after a restart downloads nothing");
}

/// Threads of this process doing CPU work now: named by kpackfs while they
/// do (the leased thread `kpackfs-cpu`, its helpers `kpackfs-extract` and
/// `kpackfs-gzip`), read from /proc/self/task/*/comm.
fn cpu_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.starts_with("kpackfs-"))
        .count()
}

/// Six cold bundles at once, from stored packages (verify, extract, lay
/// out, pack, compress): the threads doing CPU work, sampled from /proc
/// while they build, never outnumber the cores.
#[test]
fn concurrent_builds_run_at_most_one_thread_per_core() {
    let unames: Vec<String> = (1..=6).map(|i| format!("9.1.0-{i}-amd64")).collect();
    let refs: Vec<&str> = unames.iter().map(String::as_str).collect();
    let h = Harness::new(&refs, 4_000_000, Options::default());
    for u in &unames {
        h.read_file(&format!("debian/{u}/BUNDLE_UNAME")).unwrap();
    }
    let h = h.restart_after(|cache| {
        for e in std::fs::read_dir(cache.join("bundles")).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
    });
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let (mut peak, mut samples) = (0, 0);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                // One scan of /proc is not a snapshot: a lease handed from
                // one thread to another between two reads counts both. Two
                // scans in a row, the smaller: what held through both.
                peak = peak.max(cpu_threads().min(cpu_threads()));
                samples += 1;
            }
            (peak, samples)
        })
    };
    let receivers: Vec<_> = unames
        .iter()
        .map(|u| {
            let core = h.core.clone();
            let ino = h.resolve(&format!("debian/{u}.tgz")).unwrap().attr.ino;
            h.start(move |done| core.getattr(ino, true, ME, done))
        })
        .collect();
    for r in receivers {
        assert!(r.recv_timeout(Duration::from_secs(60)).unwrap().is_ok());
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (peak, samples) = sampler.join().unwrap();
    let cores = kpackfs::cpu::cores();
    assert!(samples > 100, "sampled while building ({samples})");
    assert!(peak >= 1, "saw the builds run");
    assert!(peak <= cores, "{peak} threads doing CPU work at once on {cores} cores");
}

/// Issue 8 item 6: one flipped byte in a cached pack or .tgz must mean
/// "rebuild", never wrong bytes.
#[test]
fn damaged_cache_files_are_rebuilt_not_served() {
    let h = Harness::new(&["9.1.0-1-amd64"], 100_000, Options::default());
    let good_tree = h.read_file("debian/9.1.0-1-amd64/usr/src/linux-headers-9.1.0-1-amd64/filler.bin").unwrap();
    let good_tgz = h.read_file("debian/9.1.0-1-amd64.tgz").unwrap();
    let id = h.ids[0].clone();
    let flip = |path: std::path::PathBuf, at: usize| {
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
    };
    flip(h.cache_dir().join(format!("bundles/{id}.pack")), 5000);
    flip(h.cache_dir().join(format!("bundles/{id}.tgz")), 5000);
    let h = h.restart();
    let tree = h.read_file("debian/9.1.0-1-amd64/usr/src/linux-headers-9.1.0-1-amd64/filler.bin").unwrap();
    assert!(tree == good_tree, "the pack was rebuilt, not served damaged");
    assert_eq!(h.read_file("debian/9.1.0-1-amd64.tgz").unwrap(), good_tgz);
    assert!(h.counters().damaged.load(std::sync::atomic::Ordering::Relaxed) >= 1);
}

#[test]
fn a_damaged_index_is_moved_aside_and_start_up_goes_on() {
    let h = Harness::new(&["9.1.0-1-amd64"], 1000, Options::default());
    h.read_file("debian/9.1.0-1-amd64.tgz").unwrap();
    let h = h.restart_after(|cache| {
        let index = cache.join("index.redb");
        let mut bytes = std::fs::read(&index).unwrap();
        for b in bytes.iter_mut().take(4096) {
            *b = !*b;
        }
        std::fs::write(&index, bytes).unwrap();
    });
    assert!(h.cache_dir().join("index.redb.damaged").exists());
    assert_eq!(h.read_file("debian/9.1.0-1-amd64/BUNDLE_UNAME").unwrap(), b"9.1.0-1-amd64");
    assert!(!h.read_file("debian/9.1.0-1-amd64.tgz").unwrap().is_empty());
}

/// Issue 8 item 4: a caller killed while waiting is answered at once
/// (EINTR), the build goes on, and the others get the bundle.
#[test]
fn a_killed_caller_is_let_go_and_the_build_goes_on() {
    let h = Harness::new(&["9.1.0-1-amd64"], 1000, Options::default());
    h.source.add("linux-headers", Fault::Delay(Duration::from_millis(800)), 0, Some(1));
    let dir = h.resolve("debian/9.1.0-1-amd64").unwrap().attr.ino;
    let start = |pid: u32| {
        let core = h.core.clone();
        h.start(move |done| core.lookup(dir, b"usr", Caller { pid }, done))
    };
    let killed = start(7001);
    let patient = start(7002);
    h.callers.dying.lock().unwrap().insert(7001);
    let swept = Instant::now();
    assert_eq!(h.core.waiting().sweep(), 1);
    assert_eq!(killed.recv_timeout(Duration::from_secs(1)).unwrap(), Err(Errno::EINTR));
    assert!(swept.elapsed() < Duration::from_millis(200));
    assert!(matches!(patient.recv_timeout(Duration::from_secs(30)).unwrap(), Ok(Lookup::Found(_))));
    assert!(matches!(h.cache.state_of(&h.bundle_id(0)), BundleState::Ready { .. }));
}

#[test]
fn a_build_whose_every_caller_was_killed_is_told_to_stop() {
    let h = Harness::new(&["9.1.0-1-amd64"], 1000, Options::default());
    h.source.add("linux-headers", Fault::Delay(Duration::from_millis(800)), 0, Some(1));
    let dir = h.resolve("debian/9.1.0-1-amd64").unwrap().attr.ino;
    let core = h.core.clone();
    let killed = h.start(move |done| core.lookup(dir, b"usr", Caller { pid: 7001 }, done));
    let id = h.bundle_id(0);
    let told = || h.cache.cancel_token(&id).is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(h.core.sweep(), 0);
    assert!(!told(), "a waiting caller keeps its build");
    h.callers.dying.lock().unwrap().insert(7001);
    assert_eq!(h.core.sweep(), 1);
    assert_eq!(killed.recv_timeout(Duration::from_secs(1)).unwrap(), Err(Errno::EINTR));
    assert!(!told(), "a grace for readers the kernel held behind it");
    h.cache.cancel_unwanted_as_of(Instant::now() + kpackfs::cache::STOP_GRACE);
    assert!(told(), "nobody waits: the build is told to stop ({:?})", h.cache.state_of(&id));
}
