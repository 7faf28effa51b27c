//! The shared bundle tier against a real S3-compatible server (moto, on
//! loopback, users and policies enforced), with real mounts and the
//! loopback package mirror (issue 12 item 4): two hosts sharing a bucket,
//! racing hosts, a corrupted object, the tier down or stalling, read-only
//! credentials; and `kpackfs publish`.

mod common;

use common::http::{Fault, Server};
use common::mirror::{Fixture, Mounted};
use common::moto::Moto;
use common::{kpackfs, read, tempdir};
use std::time::{Duration, Instant};

fn with_remote(fx: &Fixture, remote: &str, more: &[&str]) -> Vec<String> {
    let mut args = fx.mirror_args();
    args.extend(["--remote".to_string(), remote.to_string()]);
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "waited 30 s for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn uname_of(m: &Mounted, kind: &str, name: &str) -> String {
    read(&m.path(&format!("{kind}/{name}/BUNDLE_UNAME")))
}

/// The tier's bundle objects (its `packages/` aside).
fn bundle_objects(moto: &Moto, prefix: &str) -> Vec<String> {
    moto.list(prefix).into_iter().filter(|o| !o.contains("/packages/")).collect()
}

/// A bundle's objects in the id layout: the .tgz and its digest, then its
/// pack and the pack's digest (written last).
const ID_OBJECTS: [&str; 4] = ["tgz", "sha256", "pack", "pack.sha256"];

fn lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn two_hosts_share_one_bucket_and_the_second_downloads_no_package() {
    let fx = Fixture::new(true);
    let moto = Moto::start();
    let env = moto.env(&moto.writer);
    let remote = moto.url("shared");
    let deb = fx.bundle("debian");
    let a = Mounted::start_env(&fx.manifest, None, &with_remote(&fx, &remote, &[]), &env);
    assert_eq!(uname_of(&a, "debian", &deb.name), deb.uname);
    // Written last: the .tgz's digest (the pack goes first).
    let digest = format!("shared/by-id/{}.sha256", deb.id);
    wait_for("the write-back", || moto.list("shared/").contains(&digest));
    for ext in ID_OBJECTS {
        assert!(moto.list("shared/").contains(&format!("shared/by-id/{}.{ext}", deb.id)), "{ext}");
    }
    assert_eq!(a.status()["remote_writes"], 1, "{}", a.log());

    fx.server.reset_counts();
    let b = Mounted::start_env(&fx.manifest, None, &with_remote(&fx, &remote, &[]), &env);
    assert_eq!(uname_of(&b, "debian", &deb.name), deb.uname);
    let file =
        format!("debian/{}/{}/Makefile", deb.name, read(&a.path(&format!("debian/{}/BUNDLE_BUILD_DIR", deb.name))));
    assert_eq!(std::fs::read(a.path(&file)).unwrap(), std::fs::read(b.path(&file)).unwrap());
    assert_eq!(fx.server.total_requests(), 0, "the second host downloaded no package: {:?}", fx.server.log());
    let status = b.status();
    assert_eq!((status["remote_hits"].as_u64(), status["builds"].as_u64()), (Some(1), Some(0)), "{status}");
    // The .tgz it serves is the first host's, byte for byte.
    let tgz = |m: &Mounted| std::fs::read(m.path(&format!("debian/{}.tgz", deb.name))).unwrap();
    assert_eq!(tgz(&b), tgz(&a));
}

#[test]
fn racing_hosts_write_one_copy_and_neither_fails() {
    let fx = Fixture::new(true);
    let moto = Moto::start();
    let env = moto.env(&moto.writer);
    let remote = moto.url("race");
    let hosts: Vec<Mounted> =
        (0..3).map(|_| Mounted::start_env(&fx.manifest, None, &with_remote(&fx, &remote, &[]), &env)).collect();
    let ubuntu = fx.bundle("ubuntu").clone();
    std::thread::scope(|s| {
        for h in &hosts {
            let u = ubuntu.clone();
            s.spawn(move || assert_eq!(uname_of(h, "ubuntu", &u.name), u.uname));
        }
    });
    let digest = format!("race/by-id/{}.sha256", ubuntu.id);
    wait_for("the write-backs", || {
        moto.list("race/").contains(&digest)
            && hosts
                .iter()
                .all(|h| lines(&h.log(), "remote tier s3://") == 0 && h.status()["builds"].as_u64() <= Some(1))
    });
    std::thread::sleep(Duration::from_secs(1)); // the others' create-only writes end
    let objects = bundle_objects(&moto, "race/");
    assert_eq!(objects.len(), 4, "one .tgz, one pack and their digests: {objects:?}");
    let written: u64 = hosts.iter().map(|h| h.status()["remote_writes"].as_u64().unwrap()).sum();
    assert!(written >= 1, "someone wrote it");
    for h in &hosts {
        assert_eq!(lines(&h.log(), "not written"), 0, "a lost race is no failure: {}", h.log());
    }
}

#[test]
fn a_corrupted_object_is_rejected_and_the_bundle_built_locally() {
    let fx = Fixture::new(true);
    let moto = Moto::start();
    let env = moto.env(&moto.writer);
    let remote = moto.url("bad");
    let rpm = fx.bundle("redhat");
    let a = Mounted::start_env(&fx.manifest, None, &with_remote(&fx, &remote, &[]), &env);
    assert_eq!(uname_of(&a, "redhat", &rpm.name), rpm.uname);
    wait_for("the write-back", || bundle_objects(&moto, "bad/").len() == 4);
    // The .tgz is the subject: its pack goes, so a mount reads the .tgz.
    for ext in ["pack.sha256", "pack"] {
        moto.delete(&format!("bad/by-id/{}.{ext}", rpm.id));
    }
    moto.put(&format!("bad/by-id/{}.tgz", rpm.id), b"\x1f\x8b garbage");
    fx.server.reset_counts();
    let b = Mounted::start_env(&fx.manifest, None, &with_remote(&fx, &remote, &["--no-package-tier"]), &env);
    assert_eq!(uname_of(&b, "redhat", &rpm.name), rpm.uname, "still served, built here");
    assert!(fx.server.total_requests() > 0, "built from packages");
    assert_eq!(b.status()["builds"], 1);
    let log = b.log();
    assert_eq!(lines(&log, "remote tier s3://"), 1, "{log}");
    assert!(log.contains("sha256"), "the cause: {log}");
    assert_eq!(b.status()["remote_errors"], 1);
}

#[test]
fn a_tier_that_is_down_or_stalls_never_fails_a_read() {
    let fx = Fixture::new(true);
    let mut moto = Moto::start();
    let env = moto.env(&moto.writer);
    let remote = moto.url("down");
    moto.stop();
    let down = Mounted::start_env(&fx.manifest, None, &with_remote(&fx, &remote, &[]), &env);
    for kind in ["debian", "ubuntu"] {
        let b = fx.bundle(kind);
        assert_eq!(uname_of(&down, kind, &b.name), b.uname);
    }
    let log = down.log();
    assert_eq!(lines(&log, "remote tier s3://"), 1, "one line, then the tier is skipped for a while: {log}");

    // A tier that answers nothing (read-only http://, its objects stall).
    let stalled = Server::start();
    let bucket = tempdir();
    std::fs::create_dir_all(bucket.path().join("by-id")).unwrap();
    stalled.mount("/", bucket.path());
    for b in &fx.bundles {
        std::fs::write(bucket.path().join(format!("by-id/{}.sha256", b.id)), format!("{}  x\n", "0".repeat(64)))
            .unwrap();
    }
    stalled.set_fault("/by-id/", Fault::Stall(Duration::from_secs(60)));
    let slow = Mounted::start(&fx.manifest, None, &with_remote(&fx, &stalled.url("/"), &["--stall-timeout", "2s"]));
    let started = Instant::now();
    let rpm = fx.bundle("redhat");
    assert_eq!(uname_of(&slow, "redhat", &rpm.name), rpm.uname);
    assert!(started.elapsed() < Duration::from_secs(20), "fell back after the stall timeout: {:?}", started.elapsed());
    assert!(slow.log().contains("stalled") || slow.log().contains("no answer"), "{}", slow.log());
}

#[test]
fn read_only_credentials_read_the_tier_and_never_fail_on_writes() {
    let fx = Fixture::new(true);
    let moto = Moto::start();
    let remote = moto.url("ro");
    let deb = fx.bundle("debian");
    let writer = Mounted::start_env(&fx.manifest, None, &with_remote(&fx, &remote, &[]), &moto.env(&moto.writer));
    assert_eq!(uname_of(&writer, "debian", &deb.name), deb.uname);
    wait_for("the write-back", || bundle_objects(&moto, "ro/").len() == 4);
    let written = moto.list("ro/");

    fx.server.reset_counts();
    let reader = Mounted::start_env(&fx.manifest, None, &with_remote(&fx, &remote, &[]), &moto.env(&moto.reader));
    assert_eq!(uname_of(&reader, "debian", &deb.name), deb.uname);
    assert_eq!(fx.server.total_requests(), 0, "read from the tier");
    // Not in the tier: built here; the write is refused, logged once, and changes nothing served.
    for kind in ["ubuntu", "suse"] {
        let b = fx.bundle(kind);
        assert_eq!(uname_of(&reader, kind, &b.name), b.uname);
    }
    // Its first refused write (a package's or the bundle's) is one line.
    wait_for("the refused write-back", || lines(&reader.log(), "not written") == 1);
    std::thread::sleep(Duration::from_secs(1));
    let log = reader.log();
    assert_eq!(lines(&log, "not written"), 1, "then writes back off: {log}");
    assert!(log.contains("403") || log.contains("Access Denied") || log.contains("AccessDenied"), "{log}");
    assert_eq!(moto.list("ro/"), written, "nothing written");
}

#[test]
fn publish_is_idempotent_and_resumes_after_kill_9() {
    let fx = Fixture::new(true);
    let moto = Moto::start();
    let cache = tempdir();
    let tmp = tempdir();
    let publish = |extra: &[&str]| {
        let mut c = kpackfs();
        c.envs(moto.env(&moto.writer)).env("TMPDIR", tmp.path()).arg("publish").args(extra);
        c.arg("--to").arg(moto.url("pub")).arg("--manifest").arg(&fx.manifest).arg("--cache-dir").arg(cache.path());
        c.args(fx.mirror_args());
        c
    };
    // Killed mid-run: the Debian bundle's packages (megabytes) drip slowly,
    // the synthetic ones (kilobytes) are published meanwhile.
    fx.server.set_fault("/debian", Fault::Throttle(300_000));
    let mut child = publish(&["--parallel", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Per bundle: four objects in the id layout and collector's one.
    let per_bundle = ID_OBJECTS.len() + 1;
    wait_for("the other bundles", || moto.list("pub/").len() >= per_bundle * (fx.bundles.len() - 1));
    let _ = child.kill();
    let _ = child.wait();
    let partial = moto.list("pub/");
    assert!(partial.len() < per_bundle * fx.bundles.len(), "killed midway: {partial:?}");
    let scratch = || -> Vec<String> {
        let names = std::fs::read_dir(tmp.path()).unwrap().flatten();
        names.map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("kpackfs-")).collect()
    };
    assert!(scratch().iter().any(|n| n.starts_with("kpackfs-publish.")), "the killed run left its scratch");
    fx.server.clear_faults();
    let out = publish(&[]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(scratch(), Vec::<String>::new(), "the next run removed what the killed one left");
    let objects = moto.list("pub/");
    for b in &fx.bundles {
        let id_layout = ID_OBJECTS.map(|ext| format!("pub/by-id/{}.{ext}", b.id));
        for key in id_layout.into_iter().chain([format!("pub/bundle-{}.tgz", b.name)]) {
            assert!(objects.contains(&key), "{key} missing: {objects:?}");
        }
    }
    assert_eq!(objects.len(), per_bundle * fx.bundles.len(), "{objects:?}");
    // Again: nothing to do, nothing built.
    fx.server.reset_counts();
    let out = publish(&[]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("published 0, already there {}", fx.bundles.len())), "{text}");
    assert_eq!(fx.server.total_requests(), 0);
    // A host reading the published bucket builds nothing.
    let m = Mounted::start_env(
        &fx.manifest,
        None,
        &with_remote(&fx, &moto.url("pub"), &["--remote-read-only"]),
        &moto.env(&moto.reader),
    );
    for b in &fx.bundles {
        assert_eq!(uname_of(&m, &b.kind, &b.name), b.uname);
    }
    assert_eq!(m.status()["builds"], 0);
    assert_eq!(fx.server.total_requests(), 0);
    // A failed bundle is named with its cause, and the exit is non-zero.
    std::fs::remove_dir_all(fx.dir.path().join("mirror")).unwrap();
    let out = kpackfs()
        .envs(moto.env(&moto.writer))
        .args(["publish", "--layout", "collector", "--to"])
        .arg(moto.url("other"))
        .arg("--manifest")
        .arg(&fx.manifest)
        .arg("--cache-dir")
        .arg(tempdir().path())
        .args(fx.mirror_args())
        .args(["--retries", "0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("failed debian/{}: package", fx.bundle("debian").name)) && text.contains("404"),
        "{text}"
    );
}
