//! Mounting and unmounting: SIGINT, SIGTERM, plain umount and kpackfs umount
//! all unmount and end the daemon; a busy mount needs --lazy; a stale mount
//! of a killed daemon is cleaned up by the next mount; a large log is rotated.

mod common;

use common::mirror::{errno_of, Fixture, Mounted};
use common::{kpackfs, run_err, run_ok, tempdir};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn is_mounted(path: &Path) -> bool {
    let canonical = path.canonicalize().unwrap_or(path.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(canonical.to_str().unwrap()))
}

fn wait_gone(m: &Mounted) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while (m.alive() || is_mounted(&m.mnt)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!m.alive(), "the daemon exited");
    assert!(!is_mounted(&m.mnt), "the mount is gone");
}

#[test]
fn signals_and_umounts_all_unmount_cleanly() {
    let fx = Fixture::new(true);
    let work = tempdir();
    let mnt = work.path().join("mnt");
    let cache = work.path().join("cache");
    type Unmount<'a> = &'a dyn Fn(&Mounted);
    let ways: [(&str, Unmount); 4] = [
        ("SIGTERM", &|m| unsafe {
            libc::kill(m.pid as i32, libc::SIGTERM);
        }),
        ("SIGINT", &|m| unsafe {
            libc::kill(m.pid as i32, libc::SIGINT);
        }),
        ("umount", &|m| {
            run_ok(Command::new("umount").arg(&m.mnt));
        }),
        ("kpackfs umount", &|m| {
            run_ok(kpackfs().arg("umount").arg(&m.mnt));
        }),
    ];
    for (how, unmount) in ways {
        let logged_before = std::fs::read_to_string(cache.join("kpackfs.log")).unwrap_or_default().len();
        let m = Mounted::start_at(Some(&mnt), &fx.manifest, Some(&cache), &fx.mirror_args());
        assert!(is_mounted(&mnt), "{how}");
        std::fs::read_to_string(m.path(&format!("redhat/{}/Makefile", fx.bundle("redhat").name))).unwrap();
        unmount(&m);
        wait_gone(&m);
        assert!(!is_mounted(&mnt), "{how}: unmounted");
        // Only what this round's daemon logged.
        let this_round = m.log()[logged_before..].to_string();
        let exit = if how.starts_with("SIG") { format!("{how}: unmounting") } else { "unmounted".to_string() };
        assert!(this_round.contains(&exit), "{how}: the daemon logged its exit: {this_round}");
        assert!(!this_round.contains("WARN") && !this_round.contains("ERROR"), "{how}: {this_round}");
    }
    // The index was saved: a later mount finds the bundle ready.
    let m = Mounted::start_at(Some(&mnt), &fx.manifest, Some(&cache), &fx.mirror_args());
    assert_eq!(m.bundle_state(&format!("redhat/{}", fx.bundle("redhat").name)), "ready");
}

#[test]
fn busy_mount_needs_lazy() {
    let fx = Fixture::new(true);
    let m = Mounted::start(&fx.manifest, None, &fx.mirror_args());
    let file = m.path(&format!("suse/{}/Makefile", fx.bundle("suse").name));
    let held = std::fs::File::open(&file).unwrap();
    let err = run_err(kpackfs().arg("umount").arg(&m.mnt));
    assert!(err.contains("busy"), "{err}");
    assert!(m.alive());
    run_ok(kpackfs().arg("umount").arg("--lazy").arg(&m.mnt));
    drop(held);
    wait_gone(&m);
}

#[test]
fn stale_mount_of_a_killed_daemon_is_cleaned_up() {
    let fx = Fixture::new(true);
    let work = tempdir();
    let mnt = work.path().join("mnt");
    let cache = work.path().join("cache");
    let m = Mounted::start_at(Some(&mnt), &fx.manifest, Some(&cache), &fx.mirror_args());
    m.kill9();
    let err = errno_of(std::fs::read_dir(m.path("debian/nosuch")));
    assert!(matches!(err, Some(libc::ENOTCONN | libc::ECONNABORTED)), "a stale mount: {err:?}");
    let again = Mounted::start_at(Some(&mnt), &fx.manifest, Some(&cache), &fx.mirror_args());
    assert!(again.mount_stderr.contains("cleaned up a stale mount"), "{}", again.mount_stderr);
    assert!(again.path("debian").is_dir());
    // Also through kpackfs umount.
    again.kill9();
    run_ok(kpackfs().arg("umount").arg(&mnt));
    assert!(!is_mounted(&mnt), "umount cleaned the stale mount");
    drop(m);
}

#[test]
fn second_daemon_on_the_same_cache_is_refused() {
    let fx = Fixture::new(true);
    let work = tempdir();
    let cache = work.path().join("cache");
    let _m = Mounted::start(&fx.manifest, Some(&cache), &fx.mirror_args());
    let other = work.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let err =
        run_err(kpackfs().arg("mount").arg(&other).arg("--manifest").arg(&fx.manifest).arg("--cache-dir").arg(&cache));
    assert!(err.contains("in use by another kpackfs"), "{err}");
}

/// The daemon holds the cache's lock and the ready pipe close-on-exec, so
/// a program it runs (a build sandbox, gpgv) cannot keep the cache locked
/// after the daemon is killed.
#[test]
fn the_daemon_hands_neither_its_cache_lock_nor_its_ready_pipe_to_programs_it_runs() {
    let fx = Fixture::new(true);
    let work = tempdir();
    let cache = work.path().join("cache");
    let m = Mounted::start(&fx.manifest, Some(&cache), &fx.mirror_args());
    let lock = cache.join("lock").canonicalize().unwrap();
    let fds = format!("/proc/{}/fd", m.pid);
    let mut inherited = Vec::new();
    let mut saw_lock = false;
    for entry in std::fs::read_dir(&fds).unwrap() {
        let entry = entry.unwrap();
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        let fd = entry.file_name().to_string_lossy().into_owned();
        // fds 3 and 4 are where `kpackfs mount` hands over the ready pipe
        // and the lock (others, like cargo's jobserver, are the test's).
        if target != lock && fd != "3" && fd != "4" {
            continue;
        }
        saw_lock |= target == lock;
        let info = std::fs::read_to_string(format!("/proc/{}/fdinfo/{fd}", m.pid)).unwrap_or_default();
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).map(str::trim).unwrap_or("0");
        let flags = u32::from_str_radix(flags, 8).unwrap();
        if flags & libc::O_CLOEXEC as u32 == 0 {
            inherited.push(format!("fd {fd} -> {}", target.display()));
        }
    }
    assert!(saw_lock, "the daemon holds {}", lock.display());
    assert!(inherited.is_empty(), "inherited by every program the daemon runs: {inherited:?}");
}

#[test]
fn bad_manifest_fails_before_mounting() {
    let work = tempdir();
    let bad = work.path().join("bad.yml");
    std::fs::write(&bad, "x: [\n").unwrap();
    let mnt = work.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let err = run_err(
        kpackfs().arg("mount").arg(&mnt).arg("--manifest").arg(&bad).arg("--cache-dir").arg(work.path().join("c")),
    );
    assert!(err.contains("malformed manifest"), "{err}");
    assert!(!is_mounted(&mnt));
}

#[test]
fn a_large_log_is_rotated_at_mount() {
    let fx = Fixture::new(false);
    let work = tempdir();
    let cache = work.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let old = "an old line\n".repeat(800_000); // 9.6 MB
    std::fs::write(cache.join("kpackfs.log"), &old).unwrap();
    let m = Mounted::start(&fx.manifest, Some(&cache), &fx.mirror_args());
    assert_eq!(std::fs::read_to_string(cache.join("kpackfs.log.1")).unwrap(), old, "the old log is kept once");
    let log = m.log();
    assert!(log.len() < 100_000 && log.contains("mounted"), "a fresh log: {log}");
}
