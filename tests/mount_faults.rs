//! Mirror faults during a first access: the caller gets EIO, one log line
//! names the bundle and the cause, nothing is cached, a retry within the
//! backoff fails at once without touching the network, and the access
//! succeeds once the mirror recovers.

mod common;

use common::http::Fault;
use common::mirror::{errno_of, Fixture, Mounted};
use std::time::Duration;

fn fault_case(fault: Fault, expected_cause: &str) {
    let fx = Fixture::new(true);
    let ub = fx.bundle("ubuntu").clone();
    // The common headers package (the larger of the two).
    let (common_file, common_path) =
        ub.files.iter().find(|(f, _)| !f.to_str().unwrap().contains("-generic_")).unwrap().clone();
    fx.server.set_fault(&common_path, fault);
    let mut args = fx.mirror_args();
    args.extend(["--stall-timeout".to_string(), "1s".to_string(), "--retry-backoff".to_string(), "1s".to_string()]);
    let m = Mounted::start(&fx.manifest, None, &args);
    let label = format!("ubuntu/{}", ub.name);
    let file = m.path(&format!("{label}/Makefile"));

    assert_eq!(errno_of(std::fs::read(&file)), Some(libc::EIO));
    // Nothing partial is stored.
    let packs: Vec<_> = std::fs::read_dir(m.cache.join("bundles")).unwrap().collect();
    assert!(packs.is_empty(), "no pack after a failure");
    let sha = common::sha256_file(&common_file);
    let stored = common::stored_packages(&m.cache);
    assert!(!stored.contains(&sha), "the faulty package is not stored");
    let flavour = ub.files.iter().find(|(f, _)| f.to_str().unwrap().contains("-generic_")).unwrap();
    assert!(
        stored.iter().all(|s| *s == common::sha256_file(&flavour.0)),
        "nothing but the package that verified: {stored:?}"
    );
    // One log line naming the bundle and the cause.
    let log = m.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&format!("bundle {label}:"))).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains(expected_cause) && lines[0].contains("ERROR"), "{}", lines[0]);
    let status = m.status();
    assert_eq!(m.bundle_state(&label), "failed", "{status}");

    // Within the backoff: EIO at once, no new request.
    let requests = fx.server.count(&common_path);
    assert_eq!(errno_of(std::fs::read(&file)), Some(libc::EIO));
    assert_eq!(fx.server.count(&common_path), requests, "no hot loop");

    // The mirror recovers; after the backoff the access succeeds.
    fx.server.clear_faults();
    std::thread::sleep(Duration::from_millis(1200));
    let text = std::fs::read_to_string(&file).expect("success once the mirror recovers");
    assert!(text.contains("srctree"), "{text}");
    assert_eq!(m.bundle_state(&label), "ready");
    assert!(m.cache.join("packages/sha256").join(&sha).exists());
}

#[test]
fn http_500_is_eio_then_recovers() {
    fault_case(Fault::Status(500), "HTTP 500");
}

#[test]
fn connection_cut_mid_body_is_eio_then_recovers() {
    fault_case(Fault::CutAfter(200), "transfer");
}

#[test]
fn wrong_bytes_are_a_sha256_mismatch() {
    fault_case(Fault::Corrupt, "sha256 mismatch");
}

#[test]
fn stall_beyond_the_timeout_is_eio_then_recovers() {
    fault_case(Fault::Stall(Duration::from_secs(8)), "stalled");
}

#[test]
fn tgz_open_fails_with_eio_too() {
    let fx = Fixture::new(true);
    let rh = fx.bundle("redhat").clone();
    fx.server.set_fault(&rh.files[0].1, Fault::Status(503));
    let m = Mounted::start(&fx.manifest, None, &fx.mirror_args());
    let tgz = m.path(&format!("redhat/{}.tgz", rh.name));
    assert!(std::fs::metadata(&tgz).is_ok(), "stat works without a build");
    assert_eq!(errno_of(std::fs::read(&tgz)), Some(libc::EIO));
    assert!(std::fs::read_dir(m.cache.join("bundles")).unwrap().next().is_none());
}

#[test]
fn status_shows_fetching_during_a_slow_download() {
    let fx = Fixture::new(true);
    let rh = fx.bundle("redhat").clone();
    fx.server.set_fault(&rh.files[0].1, Fault::Stall(Duration::from_secs(3)));
    let mut args = fx.mirror_args();
    args.extend(["--stall-timeout".to_string(), "10s".to_string()]);
    let m = Mounted::start(&fx.manifest, None, &args);
    let label = format!("redhat/{}", rh.name);
    let path = m.path(&format!("{label}/Makefile"));
    let reader = std::thread::spawn(move || std::fs::read(path));
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut seen = String::new();
    while std::time::Instant::now() < deadline && seen != "fetching" {
        seen = m.bundle_state(&label);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(seen, "fetching");
    let text = common::run_ok(common::kpackfs().arg("status").arg(&m.mnt));
    assert!(text.contains(&format!("fetching  {label}")), "{text}");
    // The mirror recovers: the stalled transfer is cut, retried, resumed.
    fx.server.clear_faults();
    assert!(reader.join().unwrap().is_ok());
    assert!(
        fx.server.log().iter().any(|l| l.contains(&rh.files[0].1) && l.contains("range=Some")),
        "resumed with Range"
    );
    assert_eq!(m.bundle_state(&label), "ready");
}

#[test]
fn a_full_disk_is_enospc_keeps_the_cache_then_recovers() {
    let fx = Fixture::new(true);
    let deb = fx.bundle("debian").clone();
    let ub = fx.bundle("ubuntu").clone();
    let dir = common::tempdir();
    // Room for the small Ubuntu bundle and the Debian packages (14 MB),
    // not for the Debian bundle's tree.
    let disk = common::SmallDisk::new(&dir.path().join("cache"), "24m");
    let m = Mounted::start(&fx.manifest, Some(&disk.0), &fx.mirror_args());

    // A bundle that fits is built and served.
    let ub_makefile = m.path(&format!("ubuntu/{}/Makefile", ub.name));
    let ub_text = std::fs::read(&ub_makefile).expect("the small bundle fits");
    let packs_before: Vec<_> = std::fs::read_dir(m.cache.join("bundles")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(packs_before.len(), 1);

    // The Debian tree does not fit: ENOSPC for the reader (the class no_space),
    // one line naming the bundle and the cause.
    let label = format!("debian/{}", deb.name);
    let file = m.path(&format!("{label}/BUNDLE_UNAME"));
    assert_eq!(errno_of(std::fs::read(&file)), Some(libc::ENOSPC));
    let log = m.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&format!("bundle {label}:"))).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("No space left on device") && lines[0].contains("ERROR"), "{}", lines[0]);
    assert_eq!(m.bundle_state(&label), "failed");
    let failed = m.status()["bundles"].as_array().unwrap().iter().find(|b| b["label"] == label).cloned().unwrap();
    assert_eq!(failed["class"], "no_space", "{failed}");
    // Nothing partial: no temporary file left, no pack for the failed bundle,
    // and the bundle already cached is untouched and still served.
    let tmp: Vec<_> = std::fs::read_dir(m.cache.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "temporary files removed: {tmp:?}");
    let packs: Vec<_> = std::fs::read_dir(m.cache.join("bundles")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(packs, packs_before);
    assert_eq!(std::fs::read(&ub_makefile).unwrap(), ub_text);

    // Space comes back: after the backoff the same path builds.
    disk.resize("512m");
    std::thread::sleep(Duration::from_millis(400));
    let text = std::fs::read_to_string(&file).expect("success once there is room");
    assert_eq!(text, deb.uname);
    assert_eq!(m.bundle_state(&label), "ready");
}

/// Issue 8 item 4: a reader waiting on a mirror that drips one byte at a
/// time is killable. SIGKILL used to leave it in D state for minutes (the
/// kernel waits for an answer to a request it has sent); the daemon now
/// answers EINTR for a killed caller, and the build goes on for others.
#[test]
fn a_reader_waiting_on_a_dripping_mirror_dies_at_once_on_sigkill() {
    let fx = Fixture::new(true);
    let ub = fx.bundle("ubuntu").clone();
    for (_, path) in &ub.files {
        fx.server.set_fault(path, Fault::Throttle(100));
    }
    let mut args = fx.mirror_args();
    args.extend(["--min-rate", "1", "--stall-timeout", "30s"].map(String::from));
    let m = Mounted::start(&fx.manifest, None, &args);
    let file = m.path(&format!("ubuntu/{}/Makefile", ub.name));
    let mut reader = std::process::Command::new("cat").arg(&file).stdout(std::process::Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    assert!(reader.try_wait().unwrap().is_none(), "the reader waits on the mount");
    assert_eq!(m.bundle_state(&format!("ubuntu/{}", ub.name)), "fetching");
    let killed = std::time::Instant::now();
    reader.kill().unwrap();
    // The sweep runs every 100 ms: a second is ten of them.
    while reader.try_wait().unwrap().is_none() {
        assert!(killed.elapsed() < Duration::from_secs(1), "the killed reader is still waiting: {}", m.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("the killed reader was let go after {:?}", killed.elapsed());
    assert!(m.alive());
    assert_eq!(m.bundle_state(&format!("ubuntu/{}", ub.name)), "fetching", "the build goes on");
    // The rest of the mount answers meanwhile.
    let deb = fx.bundle("debian").clone();
    assert!(std::fs::metadata(m.path(&format!("debian/{}/BUNDLE_UNAME", deb.name))).is_ok());
}
