//! The Debian package (issue 13 item 6): built by dist/build-deb.sh with
//! dpkg-deb, installed with `dpkg -i` into an empty dpkg root (a clean
//! system as dpkg sees it; the host is not touched), and used from there.

mod common;

use common::{run_ok, tempdir};
use std::path::Path;
use std::process::Command;

#[test]
fn the_deb_installs_and_its_binary_man_page_and_mount_helper_work() {
    let dir = tempdir();
    let deb = run_ok(
        Command::new("bash")
            .arg(common::repo().join("dist/build-deb.sh"))
            .arg(dir.path().join("out"))
            .arg(env!("CARGO_BIN_EXE_kpackfs")),
    );
    let deb = Path::new(deb.trim());
    let contents = run_ok(Command::new("dpkg-deb").arg("--contents").arg(deb));
    for path in [
        "./usr/bin/kpackfs",
        "./usr/sbin/mount.kpackfs -> ../bin/kpackfs",
        "./usr/sbin/mount.fuse.kpackfs -> ../bin/kpackfs",
        "./usr/share/man/man1/kpackfs.1.gz",
        "./usr/share/man/man1/kpackfs-mount.1.gz",
        "./usr/share/bash-completion/completions/kpackfs",
        "./usr/share/zsh/vendor-completions/_kpackfs",
        "./usr/share/fish/vendor_completions.d/kpackfs.fish",
        "./lib/systemd/system/kpackfs.service",
    ] {
        assert!(contents.contains(path), "{path} missing from:\n{contents}");
    }

    let root = dir.path().join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    // libc6 is not in the empty root's database: only that is forced.
    run_ok(
        Command::new("dpkg")
            .arg("--root")
            .arg(&root)
            .args(["--force-depends", "--force-script-chrootless", "-i"])
            .arg(deb),
    );
    let listed = run_ok(Command::new("dpkg").arg("--root").arg(&root).args(["-s", "kpackfs"]));
    assert!(listed.contains("Status: install ok installed"), "{listed}");

    let version = run_ok(Command::new(root.join("usr/bin/kpackfs")).arg("--version"));
    assert!(version.starts_with("kpackfs "), "{version}");
    let page =
        run_ok(Command::new("man").arg("-l").arg(root.join("usr/share/man/man1/kpackfs.1.gz")).env("MANPAGER", "cat"));
    assert!(page.contains("kpackfs") && page.contains("mount"), "{page}");
    // The packaged helper, as mount(8) calls it for `-t kpackfs`: fake mode
    // (-f) parses everything and mounts nothing; a real mount through the
    // helper is tests/ops.rs's fstab test.
    let helper = root.join("usr/sbin/mount.kpackfs");
    assert_eq!(std::fs::canonicalize(&helper).unwrap(), std::fs::canonicalize(root.join("usr/bin/kpackfs")).unwrap());
    run_ok(Command::new(&helper).args(["kpackfs", "/nonexistent", "-f", "-o", "cache_size=1G,nofail"]));
    let out = Command::new(&helper).args(["kpackfs", "/nonexistent/kernels", "-o", "nofail"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("does not exist"), "{err}");
}
