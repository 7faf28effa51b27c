//! Shared test helpers: the kpackfs binary, real Debian packages, package
//! fixtures built with dpkg-deb and rpmbuild, a loopback HTTP mirror.
#![allow(dead_code)]

pub mod http;
pub mod mirror;
pub mod moto;
pub mod pkgs;
pub mod repo;
pub mod tier;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn kpackfs() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kpackfs"));
    cmd.env("RUST_LOG", "info").env_remove("KPACKFS_CONFIG");
    cmd
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("kpackfs-test-").tempdir().expect("tempdir")
}

/// Run and require success; returns stdout.
#[track_caller]
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run and require failure; returns stderr.
#[track_caller]
pub fn run_err(cmd: &mut Command) -> String {
    let out: Output = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(!out.status.success(), "{cmd:?} should have failed; stdout: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn sh(script: &str) -> String {
    run_ok(Command::new("bash").arg("-euo").arg("pipefail").arg("-c").arg(script))
}

pub fn sha256_file(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().unwrap_or_default().to_string()
}

/// The packages the store under `cache` holds, by sha256: each file's
/// content must hash to its name (a cut or corrupted download stored under
/// any name fails here).
pub fn stored_packages(cache: &Path) -> Vec<String> {
    let dir = cache.join("packages/sha256");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(sha256_file(&path), name, "{} holds bytes other than its name says", path.display());
        out.push(name);
    }
    out.sort();
    out
}

/// Drop one file's pages from the page cache (POSIX_FADV_DONTNEED), so
/// that its next reads go to its filesystem: the host's other caches stay.
pub fn drop_page_cache(path: &Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: posix_fadvise on a valid open descriptor.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise on {}", path.display());
}

/// Extract a .tgz with GNU tar into a new directory.
pub fn gnu_tar_extract(tgz: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    run_ok(Command::new("tar").arg("-xzf").arg(tgz).arg("-C").arg(dest));
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A hello-world kernel module source directory.
pub fn hello_module(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("hello.c"),
        "#include <linux/module.h>\n#include <linux/kernel.h>\nMODULE_LICENSE(\"GPL\");\n\
         static int __init hello_init(void) { pr_info(\"hello\\n\"); return 0; }\n\
         static void __exit hello_exit(void) {}\nmodule_init(hello_init);\nmodule_exit(hello_exit);\n",
    )
    .unwrap();
    std::fs::write(dir.join("Makefile"), "obj-m := hello.o\n").unwrap();
    dir.to_path_buf()
}

/// Build the hello module against a bundle root with the plain make line,
/// and return its vermagic.
pub fn build_hello(bundle_root: &Path, module_dir: &Path) -> String {
    let build_dir = read(&bundle_root.join("BUNDLE_BUILD_DIR"));
    hello_module(module_dir);
    run_ok(
        Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(bundle_root.join(build_dir))
            .arg(format!("M={}", module_dir.display())),
    );
    run_ok(Command::new("modinfo").arg("-F").arg("vermagic").arg(module_dir.join("hello.ko"))).trim().to_string()
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// kernel-packer's data beside the repository.
pub fn kernel_packer_fixtures() -> PathBuf {
    let dir = repo().join("../shared/fixtures/kernel-packer");
    assert!(dir.join("manifest.yml").exists(), "kernel-packer fixtures missing at {}", dir.display());
    dir
}

/// A tmpfs mounted for one test, unmounted on drop (after the mount that
/// uses it, which is declared later and so dropped first).
pub struct SmallDisk(pub PathBuf);

impl SmallDisk {
    pub fn new(path: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "kpackfs-test-disk"])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount tmpfs: {}", String::from_utf8_lossy(&out.stderr));
        SmallDisk(path.to_path_buf())
    }

    pub fn resize(&self, size: &str) {
        let out = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).output().unwrap();
        assert!(out.status.success(), "remount tmpfs: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// The one URL of a kernel-packer package list that contains `needle`.
pub fn listed_url(list: &str, needle: &str) -> String {
    let text = std::fs::read_to_string(kernel_packer_fixtures().join(list)).unwrap();
    let found: Vec<&str> = text.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(found.len(), 1, "{list}: one URL with {needle}: {found:?}");
    found[0].to_string()
}

/// path → description of every entry under `root` (kind, mode, size and
/// sha256, or link target; no symlink following).
pub fn snapshot(root: &Path) -> std::collections::BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let meta = p.symlink_metadata().unwrap();
            let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777;
            let desc = if meta.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if meta.is_dir() {
                walk(root, &p, out);
                format!("dir {mode:o}")
            } else {
                let data = std::fs::read(&p).unwrap();
                format!("file {mode:o} {} {}", data.len(), kpackfs::util::sha256_hex(&data))
            };
            out.insert(rel, desc);
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, root, &mut out);
    out
}
