//! Every fault a mirror can throw answers EIO with one cause, leaves
//! nothing partial, and recovers; downloads are bounded in size, rate and
//! time; resumes never mix two versions of a file.

use super::harness::{Harness, Options};
use super::synthetic::Kernel;
use kpackfs::cache::BundleState;
use kpackfs::fetch::source::{Fault, Resume};
use kpackfs::fs::Errno;
use std::time::Duration;

const BUNDLE: &str = "debian/9.1.0-1-amd64/usr";

fn fails_then_recovers(fault: Fault, opts: Options, expect_in_cause: &str) {
    let h = Harness::new(&["9.1.0-1-amd64"], 300_000, opts);
    h.source.add("linux-headers", fault.clone(), 0, None);
    assert_eq!(h.resolve(BUNDLE), Err(Errno::EIO), "{fault:?}");
    let BundleState::Failed { cause, .. } = h.cache.state_of(&h.bundle_id(0)) else {
        panic!("{fault:?}: not failed: {:?}", h.cache.state_of(&h.bundle_id(0)))
    };
    assert!(
        cause.message().contains("linux-headers-9.1.0-1-amd64_1_amd64.deb"),
        "the cause names the package: {cause}"
    );
    assert!(cause.message().contains(expect_in_cause), "{fault:?}: {cause}");
    // Nothing partial is served or kept as a bundle or a package.
    assert!(h.files_in("bundles").is_empty(), "{:?}", h.files_in("bundles"));
    assert!(h.files_in("tmp").is_empty(), "{:?}", h.files_in("tmp"));
    let headers_sha = kpackfs::util::sha256_hex(&std::fs::read(&h.kernels[0].headers).unwrap());
    let kbuild_sha = kpackfs::util::sha256_hex(&std::fs::read(&h.kernels[0].kbuild).unwrap());
    let stored = h.stored_packages();
    assert!(stored.iter().all(|s| *s == kbuild_sha), "{fault:?}: only the package that verified: {stored:?}");
    h.source.clear();
    std::thread::sleep(h.opts.backoff + Duration::from_millis(50));
    assert!(h.resolve(BUNDLE).is_ok(), "{fault:?}: recovers");
    assert!(h.stored_packages().contains(&headers_sha));
}

#[test]
fn http_errors_are_eio_and_recover() {
    fails_then_recovers(Fault::Status(500), Options::default(), "HTTP 500 Internal Server Error (2 attempts)");
    fails_then_recovers(Fault::Status(404), Options::default(), "HTTP 404 Not Found (1 attempt)");
}

#[test]
fn a_server_that_never_answers_is_a_stall() {
    fails_then_recovers(Fault::Hang, Options::default(), "stalled");
}

#[test]
fn a_body_that_stops_is_a_stall() {
    fails_then_recovers(Fault::StallAfter(1000), Options::default(), "transfer stalled for 500ms after");
}

#[test]
fn a_cut_body_is_eio() {
    fails_then_recovers(Fault::CutAfter(5000), Options::default(), "transfer cut after");
}

#[test]
fn corrupted_bytes_are_a_sha256_mismatch() {
    fails_then_recovers(Fault::Corrupt(100), Options::default(), "sha256 mismatch");
}

/// Issue 8 item 4: a mirror dripping bytes is dropped at the minimum rate
/// or the deadline, never waited for forever.
#[test]
fn a_dripping_mirror_hits_the_minimum_rate() {
    let mut opts = Options::default();
    opts.fetch.rate_grace = Duration::from_millis(300);
    opts.fetch.min_rate = 10_000;
    opts.fetch.retry.retries = 0;
    fails_then_recovers(Fault::Drip(Duration::from_millis(5)), opts, "transfer too slow");
}

#[test]
fn every_attempt_ends_by_the_deadline() {
    let mut opts = Options::default();
    opts.fetch.deadline = Duration::from_millis(700);
    opts.fetch.stall_timeout = Duration::from_secs(30);
    opts.fetch.min_rate = 0;
    let started = std::time::Instant::now();
    fails_then_recovers(Fault::Drip(Duration::from_millis(50)), opts, "deadline");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Issue 8 item 5: without a size in the manifest, a body is still capped,
/// and bytes in progress count against the cache budget.
#[test]
fn bodies_without_a_size_are_bounded() {
    let mut opts = Options { with_sums: false, ..Options::default() };
    opts.fetch.max_package_bytes = 100_000;
    let h = Harness::new(&["9.1.0-1-amd64"], 300_000, opts);
    assert_eq!(h.resolve(BUNDLE), Err(Errno::EIO));
    let BundleState::Failed { cause, .. } = h.cache.state_of(&h.bundle_id(0)) else { panic!() };
    assert!(cause.message().contains("body exceeds the limit of 100000 bytes"), "{cause}");
    assert!(h.files_in("packages/partial").is_empty(), "{:?}", h.files_in("packages/partial"));

    let opts = Options { with_sums: false, budget: 200_000, ..Options::default() };
    let h = Harness::new(&["9.1.0-1-amd64"], 300_000, opts);
    // A full cache is the reader's ENOSPC, not an EIO like a broken mirror.
    assert_eq!(h.resolve(BUNDLE), Err(Errno(libc::ENOSPC)));
    let BundleState::Failed { cause, .. } = h.cache.state_of(&h.bundle_id(0)) else { panic!() };
    assert!(cause.message().contains("the cache budget has no room"), "{cause}");
    assert_eq!(cause.class, kpackfs::error::ErrorClass::NoSpace);
    let left: u64 = std::fs::read_dir(h.cache_dir().join("packages/partial"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(left <= 200_000, "partial downloads stay within the budget: {left}");
}

/// Issue 8 item 7: a package with a sha256 resumes with If-Range; one
/// without is only ever taken whole from one response.
#[test]
fn resumes_name_the_first_response_and_never_mix_versions() {
    let h = Harness::new(&["9.1.0-1-amd64"], 300_000, Options { with_sums: true, ..Options::default() });
    h.source.add("linux-headers", Fault::CutAfter(50_000), 0, Some(1));
    assert!(h.resolve(BUNDLE).is_ok(), "the retry resumed");
    let resumes = h.source.resumes("linux-headers");
    assert_eq!(resumes.len(), 2);
    let Some(Resume { offset, validator }) = &resumes[1] else { panic!("{resumes:?}") };
    assert_eq!(*offset, 50_000);
    assert!(validator.is_some(), "If-Range carries the first response's validator");

    let h = Harness::new(&["9.1.0-1-amd64"], 300_000, Options { with_sums: false, ..Options::default() });
    h.source.add("linux-headers", Fault::CutAfter(50_000), 0, Some(1));
    // The upstream file changes between the cut and the retry.
    Kernel::write(&h.dir.path().join("mirror"), "9.1.0-1-amd64", 300_001);
    assert!(h.resolve(BUNDLE).is_ok());
    assert_eq!(h.source.resumes("linux-headers"), vec![None, None], "no Range without a sha256");
    let served = h.read_file("debian/9.1.0-1-amd64/usr/src/linux-headers-9.1.0-1-amd64/filler.bin").unwrap();
    assert_eq!(served.len(), 300_001, "the whole new version, not a mix");
}
