//! The one build path (`build::build`) and the tier as a lower layer, in
//! process: every failure class reaches the reader as its errno, status as
//! its class and metrics as its label; a tier that is down or serves
//! something wrong never fails a build; `kpackfs bundle` exits with the
//! class's code.

use super::harness::{Harness, Options, ME};
use super::synthetic::BASE;
use kpackfs::build::{self, Env, Inputs, Job, Origin, Outputs, TgzOut, WriteBack};
use kpackfs::cache::BundleState;
use kpackfs::error::ErrorClass;
use kpackfs::fetch::source::{DirSource, Fault, FaultySource};
use kpackfs::fetch::{Fetcher, PackageStore};
use kpackfs::fs::Errno;
use kpackfs::manifest::{BundleSpec, Package};
use kpackfs::remote::{Remote, RemoteOptions};
use std::sync::Arc;
use std::time::Duration;

const UNAME: &str = "9.1.0-1-amd64";

fn tier_at(url: &str) -> Arc<Remote> {
    let opts = RemoteOptions { stall: Duration::from_secs(2), deadline: Duration::from_secs(5), read_only: false };
    Arc::new(Remote::open(url, opts).unwrap())
}

fn file_tier(dir: &std::path::Path) -> Arc<Remote> {
    tier_at(url::Url::from_directory_path(dir).unwrap().as_ref())
}

/// The class and errno a failed bundle shows, through the core, status and metrics.
fn failure(h: &Harness, path: &str, id: &kpackfs::ids::BundleId) -> (ErrorClass, Errno) {
    let errno = h.resolve(path).expect_err("the build fails");
    let BundleState::Failed { cause, .. } = h.cache.state_of(id) else {
        panic!("not failed: {:?}", h.cache.state_of(id))
    };
    let status: serde_json::Value = serde_json::from_slice(&h.read_file(".kpackfs/status.json").unwrap()).unwrap();
    let shown = status["bundles"].as_array().unwrap().iter().find(|b| b["id"] == id.hex()).cloned().unwrap();
    assert_eq!(shown["class"], cause.class.name(), "status says the class: {shown}");
    assert_eq!(status["failures_by_class"][cause.class.name()], 1, "{status}");
    let metrics = String::from_utf8(h.read_file(".kpackfs/metrics").unwrap()).unwrap();
    let series = format!("kpackfs_build_failures_total{{class=\"{}\"}} 1", cause.class.name());
    assert!(metrics.contains(&series), "metrics count the class: {metrics}");
    (cause.class, errno)
}

/// Serve one more entry whose only package is `bytes` (named `file`).
fn with_package(h: &Harness, file: &str, bytes: &[u8], kind: &str) -> kpackfs::ids::BundleId {
    std::fs::write(h.dir.path().join("mirror").join(file), bytes).unwrap();
    let mut p = Package::new(format!("{BASE}/{file}"));
    p.sha256 = Some(kpackfs::util::sha256_hex(bytes));
    p.size = Some(bytes.len() as u64);
    let mut m = h.manifest.clone();
    let id = m.insert(BundleSpec {
        kind: kind.into(),
        name: Some("odd".into()),
        uname: Some("1.0-odd".into()),
        signed_by: None,
        packages: vec![p],
    });
    h.core.update_manifest(&m);
    kpackfs::ids::BundleId::parse(&id).unwrap()
}

#[test]
fn each_failure_class_reaches_the_reader_status_and_metrics() {
    let path = format!("debian/{UNAME}/usr");
    let cases: Vec<(&str, Fault, ErrorClass)> = vec![
        ("a mirror answering 503", Fault::Status(503), ErrorClass::Unreachable),
        ("a package gone from the archive", Fault::Status(404), ErrorClass::NotFound),
        ("bytes that are not the manifest's", Fault::Corrupt(100), ErrorClass::Refused),
    ];
    for (what, fault, class) in cases {
        let h = Harness::new(&[UNAME], 50_000, Options::default());
        h.source.add("linux-headers", fault, 0, None);
        assert_eq!(failure(&h, &path, &h.bundle_id(0)), (class, Errno::EIO), "{what}");
    }

    // A package that is no archive, with the manifest's digest: hostile input.
    let h = Harness::new(&[UNAME], 100, Options::default());
    let id = with_package(&h, "odd.deb", b"!<arch>\nnot really", "debian");
    assert_eq!(failure(&h, "debian/odd/usr", &id), (ErrorClass::Hostile, Errno::EIO));
    // A type nothing can build: hostile too, before any download.
    let h = Harness::new(&[UNAME], 100, Options::default());
    let id = with_package(&h, "odd.deb", b"whatever", "flatcar");
    assert_eq!(failure(&h, "flatcar/odd/usr", &id), (ErrorClass::Hostile, Errno::EIO));
    assert!(h.source.calls().is_empty(), "nothing downloaded: {:?}", h.source.calls());

    // A cache too small for the download: no space, and ENOSPC for the reader.
    let h = Harness::new(&[UNAME], 300_000, Options { with_sums: false, budget: 200_000, ..Options::default() });
    assert_eq!(failure(&h, &path, &h.bundle_id(0)), (ErrorClass::NoSpace, Errno(libc::ENOSPC)));

    // The cache's own directory broken under it: internal.
    let h = Harness::new(&[UNAME], 100, Options::default());
    let tmp = h.cache_dir().join("tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"not a directory").unwrap();
    assert_eq!(failure(&h, &path, &h.bundle_id(0)), (ErrorClass::Internal, Errno::EIO));
}

#[test]
fn a_tier_that_is_down_never_fails_a_build_and_is_then_skipped() {
    // Nothing listens on port 1 (and under `unshare -n` nothing is reachable).
    let down = tier_at("http://127.0.0.1:1/bundles/");
    let h =
        Harness::new(&[UNAME, "9.2.0-1-amd64"], 20_000, Options { remote: Some(down.clone()), ..Options::default() });
    assert_eq!(h.read_file(&format!("debian/{UNAME}/BUNDLE_UNAME")).unwrap(), UNAME.as_bytes());
    assert_eq!(h.read_file("debian/9.2.0-1-amd64/BUNDLE_UNAME").unwrap(), b"9.2.0-1-amd64");
    let c = h.counters();
    let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(get(&c.remote_errors), 1, "one failure, then the tier is skipped");
    assert_eq!((get(&c.builds), get(&c.remote_hits)), (2, 0));
    assert!(!down.health().can_read(std::time::Instant::now()));
}

/// The one build function without a cache (as `kpackfs bundle` and
/// `publish` call it): a tier object that fails verification is counted and
/// the bundle built from its packages, byte-identical to the mount's.
#[test]
fn a_tier_object_that_fails_verification_is_built_around() {
    let bucket = tempfile::tempdir().unwrap();
    let first =
        Harness::new(&[UNAME], 20_000, Options { remote: Some(file_tier(bucket.path())), ..Options::default() });
    let tgz = first.read_file(&format!("debian/{UNAME}.tgz")).unwrap();
    let id = first.bundle_id(0);
    let object = bucket.path().join(kpackfs::remote::id_key(&id).as_ref());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !bucket.path().join(kpackfs::remote::digest_key(&id).as_ref()).exists()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[300] ^= 1;
    std::fs::write(&object, bytes).unwrap();

    let work = tempfile::tempdir().unwrap();
    let source = FaultySource::new(Arc::new(DirSource::new(&first.dir.path().join("mirror"))));
    let store = PackageStore::open(&work.path().join("packages")).unwrap();
    let env = Env {
        fetcher: Fetcher::new(first.opts.fetch.clone(), store, source.clone()),
        tier: Some(file_tier(bucket.path())),
        limits: Default::default(),
        sandbox: Default::default(),
        image: Default::default(),
        counters: Arc::default(),
        cache: None,
    };
    let spec = first.manifest.entries.get(&id.hex()).cloned().unwrap();
    let job = Job { id, label: format!("debian/{UNAME}"), inputs: Inputs::Entry(Arc::new(spec)) };
    let out = work.path().join("out.tgz");
    let outputs = Outputs { pack: None, tgz: Some(TgzOut::File(kpackfs::files::AtomicFile::create(&out).unwrap())) };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let built = runtime.block_on(build::build(&env, &job, outputs, WriteBack::Output)).unwrap();
    assert_eq!(built.origin, Origin::Built, "not from the damaged object");
    assert!(!source.calls().is_empty(), "built from packages");
    assert_eq!(env.counters.remote_errors.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(std::fs::read(&out).unwrap(), tgz, "the same bytes as the mount's .tgz");
    let _ = ME;
}

#[test]
fn kpackfs_bundle_exits_with_the_class_of_its_failure() {
    let work = tempfile::tempdir().unwrap();
    let bad = work.path().join("linux-headers-1.0_1_amd64.deb");
    std::fs::write(&bad, b"!<arch>\nnot a deb").unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kpackfs"))
            .args(args)
            .env_remove("KPACKFS_CONFIG")
            .env("RUST_LOG", "error")
            .env("HOME", work.path())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let out = work.path().join("out.tgz");
    let (code, err) = run(&["bundle", "--type", "debian", "-o", out.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(code, Some(65), "hostile input is EX_DATAERR: {err}");
    assert!(!out.exists(), "nothing written");
    // A manifest entry whose mirror does not answer: unreachable.
    let manifest = work.path().join("manifest.yml");
    let url = "http://127.0.0.1:1/linux-headers-1.0_1_amd64.deb";
    let id = kpackfs::manifest::bundle_id([url]);
    std::fs::write(&manifest, format!("{id}:\n  type: debian\n  name: x\n  packages:\n  - url: {url}\n")).unwrap();
    let cache = work.path().join("cache");
    let args = [
        "bundle",
        "x",
        "--manifest",
        manifest.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
        "--no-apt-mirrors",
        "--retries",
        "0",
        "-o",
        out.to_str().unwrap(),
    ];
    let (code, err) = run(&args);
    assert_eq!(code, Some(69), "an unreachable mirror is EX_UNAVAILABLE: {err}");
    // Anything else (a bad flag value) stays 1 or clap's 2.
    let (code, _) = run(&["bundle", "--type", "debian", "-o", out.to_str().unwrap(), "/nonexistent.deb"]);
    assert_eq!(code, Some(1));
}
