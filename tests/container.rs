//! Running as a container (dist/Containerfile, dist/kubernetes/kpackfs.yml):
//! the mechanism the DaemonSet relies on, tested without a container
//! engine — kpackfs in its own mount namespace, as a runtime starts it,
//! mounting onto a host directory with shared propagation (what
//! `mountPropagation: Bidirectional` sets up), the host building through
//! it, and the mount gone from the host when the namespace's kpackfs stops
//! on SIGTERM. And the manifest checked against Kubernetes' own schemas,
//! offline (kubernetes-validate from PyPI ships them).

mod common;

use common::mirror::Fixture;
use common::{build_hello, run_ok, tempdir};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The host's mount points of kpackfs filesystems at `path`.
fn kpackfs_mounts_at(path: &Path) -> usize {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-").unwrap();
            f[4] == path.to_str().unwrap() && f[sep + 1].starts_with("fuse")
        })
        .count()
}

/// Unmounts the shared bind when the test ends, pass or fail.
struct Bind<'a>(&'a Path);

impl Drop for Bind<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

#[test]
fn a_mount_made_in_its_own_namespace_reaches_a_shared_host_directory_and_leaves_with_it() {
    let fx = Fixture::new(false);
    let deb = fx.bundle("debian");
    let work = tempdir();
    let host = work.path().join("kernels");
    std::fs::create_dir_all(&host).unwrap();
    run_ok(Command::new("mount").arg("--bind").arg(&host).arg(&host));
    let _bind = Bind(&host);
    run_ok(Command::new("mount").arg("--make-shared").arg(&host));

    // The container: a new mount namespace whose copy of the directory
    // stays in the host's peer group; kpackfs in the foreground as its
    // main process.
    let mut container = Command::new("unshare")
        .args(["--mount", "--propagation", "unchanged", "--"])
        .arg(env!("CARGO_BIN_EXE_kpackfs"))
        .arg("mount")
        .arg(&host)
        .arg("--foreground")
        .arg("--manifest")
        .arg(&fx.manifest)
        .arg("--cache-dir")
        .arg(work.path().join("cache"))
        .args(["--crawl-interval", "off", "--min-free", "0", "--retries", "1"])
        .args(fx.mirror_args())
        .spawn()
        .unwrap();
    struct Stop(u32);
    impl Drop for Stop {
        fn drop(&mut self) {
            // SAFETY: a signal to our own child.
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
        }
    }
    let _stop = Stop(container.id());
    let status = host.join(".kpackfs/status");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !status.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(status.exists(), "the host sees the mount made in the container's namespace");
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    assert_ne!(ns(&container.id().to_string()), ns("self"), "kpackfs runs in a mount namespace of its own");
    assert_eq!(kpackfs_mounts_at(&host), 1, "one kpackfs mount on the host's directory");

    let vermagic = build_hello(&host.join(format!("debian/{}", deb.name)), &work.path().join("hello"));
    assert!(vermagic.starts_with(&deb.uname), "the host builds through it: {vermagic}");

    // The kubelet's stop: SIGTERM to the main process.
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(container.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let exited = loop {
        if let Some(code) = container.try_wait().unwrap() {
            break Some(code);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exited.is_some_and(|c| c.success()), "kpackfs stops on SIGTERM: {exited:?}");
    assert_eq!(kpackfs_mounts_at(&host), 0, "the mount is gone from the host");
    assert_eq!(std::fs::read_dir(&host).unwrap().count(), 0, "the host's directory is empty again");
}

#[test]
fn the_daemonset_manifest_passes_kubernetes_schemas_offline() {
    let validate = common::repo().join("target/ci-venv/bin/kubernetes-validate");
    assert!(validate.exists(), "{} missing: .ci/run installs it", validate.display());
    let manifest = common::repo().join("dist/kubernetes/kpackfs.yml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    for needed in ["privileged: true", "mountPropagation: Bidirectional", "/dev/fuse", "preStop", ".kpackfs/status"] {
        assert!(text.contains(needed), "the manifest has {needed}");
    }
    // Offline: the schemas ship in the package; no network namespace needed to prove it.
    let out = Command::new("unshare")
        .arg("-n")
        .arg(&validate)
        .args(["--strict", "-k", "1.30.0"])
        .arg(&manifest)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("passed for resource daemonset/kpackfs"), "{said}");
    // The validator refuses a misspelt field (so a pass means something).
    let bad = tempdir();
    let typo = bad.path().join("typo.yml");
    std::fs::write(&typo, text.replace("mountPropagation:", "mountPropagaton:")).unwrap();
    let out = Command::new("unshare")
        .arg("-n")
        .arg(&validate)
        .args(["--strict", "-k", "1.30.0"])
        .arg(&typo)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a misspelt field fails the check");
}
