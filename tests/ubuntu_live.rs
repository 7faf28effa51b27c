//! Live Ubuntu (issue 17, proof): what Ubuntu's archive holds, read by apt
//! itself (bench/archive_kernels.py --distro ubuntu: the suites the archive
//! serves, found from the archive, a private apt configuration per suite
//! and pocket), against what kpackfs finds:
//! - a fresh crawl of the shipped Ubuntu sources finds every kernel of
//!   every suite and pocket with apt's digest (and the checker does report
//!   a kernel that is missing);
//! - `kpackfs mount MNT` with nothing but a cache directory lists every one
//!   of them;
//! - a kernel of the newest release with a chroot here builds hello in a
//!   chroot of that release (mmdebstrap from the same archive, the shipped
//!   keyring) with the compiler its config names, through the mount.

mod common;

use common::mirror::Mounted;
use common::{hello_module, kpackfs, read, repo, run_ok, tempdir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn oracle(work: &Path, args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .arg(repo().join("bench/archive_kernels.py"))
        .args(["--distro", "ubuntu", "--work"])
        .arg(work.join("apt"))
        .args(args)
        .output()
        .unwrap()
}

/// The shipped Ubuntu sources of the main archive (amd64; `<name>-ports`
/// are arm64 on the ports archive, which these machines cannot reach).
fn ubuntu_sources() -> Vec<String> {
    kpackfs::crawl::sources::load(None)
        .unwrap()
        .into_iter()
        .filter(|s| s.layout == "ubuntu" && !s.name.ends_with("-ports"))
        .map(|s| s.name)
        .collect()
}

/// A minimal chroot of `release` that sees `mnt` at /kernels and has `cc`.
struct Chroot {
    root: PathBuf,
}

impl Chroot {
    fn make(dir: &Path, release: &str, cc: &str, mnt: &Path) -> Chroot {
        let root = dir.join(release);
        let archive = kpackfs::crawl::sources::canonical_bases().ubuntu_archive.unwrap();
        let keyring = repo().join("kernel-package-lists/keys/ubuntu-archive-keyring.gpg");
        // The live archive is sometimes mid-sync (apt-get update fails on a
        // hash mismatch): apt retries each file, and the whole chroot is
        // tried four times, 30 s apart, before the failure counts.
        let attempt = || {
            let _ = std::fs::remove_dir_all(&root);
            Command::new("mmdebstrap")
                .args(["--variant=apt", "--quiet"])
                .arg(format!("--include=make,libc6-dev,libelf1t64,kmod,{cc}"))
                .arg(format!("--keyring={}", keyring.display()))
                .arg(release)
                .arg(&root)
                .arg(format!("deb {archive} {release} main universe"))
                .arg(format!("deb {archive} {release}-updates main universe"))
                .output()
                .unwrap()
        };
        let mut out = attempt();
        for _ in 0..3 {
            if out.status.success() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_secs(30));
            out = attempt();
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: String = stderr
            .lines()
            .filter(|l| !l.starts_with("I:"))
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        assert!(out.status.success(), "mmdebstrap {release}: {tail}");
        for d in ["kernels", "work", "proc"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let chroot = Chroot { root };
        run_ok(Command::new("mount").arg("--bind").arg(mnt).arg(chroot.root.join("kernels")));
        run_ok(Command::new("mount").args(["-t", "proc", "proc"]).arg(chroot.root.join("proc")));
        chroot
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        for d in ["kernels", "proc"] {
            let _ = Command::new("umount").arg("-l").arg(self.root.join(d)).status();
        }
    }
}

#[test]
fn live_ubuntu_every_kernel_apt_lists_is_crawled_shown_and_builds_with_its_compiler() {
    let work = tempdir();
    let manifest = work.path().join("manifest.yml");
    let sources = ubuntu_sources();
    assert!(sources.len() >= 10, "xenial to the newest: {sources:?}");
    let out = run_ok(
        kpackfs()
            .arg("crawl")
            .args(&sources)
            .arg("--lists-dir")
            .arg(work.path().join("lists"))
            .arg("--manifest")
            .arg(&manifest)
            .arg("--cache-dir")
            .arg(work.path().join("crawl-cache")),
    );
    assert!(out.contains(&format!("{} ok, 0 unreachable, 0 refused", sources.len())), "{out}");
    let json = work.path().join("manifest.json");
    std::fs::write(&json, run_ok(kpackfs().args(["list", "--all", "--json", "--manifest"]).arg(&manifest))).unwrap();
    let held = work.path().join("held.json");
    let out = oracle(work.path(), &["--manifest-json", json.to_str().unwrap(), "--json", held.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the crawl misses kernels the archive holds:\n{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reading: serde_json::Value = serde_json::from_slice(&std::fs::read(&held).unwrap()).unwrap();
    let rows = reading["rows"].as_array().unwrap();
    let suites: Vec<&str> = rows.iter().map(|r| r["suite"].as_str().unwrap()).collect();
    for s in ["xenial-security", "noble-updates", "noble-security"] {
        assert!(suites.contains(&s), "{s} read from the archive: {suites:?}");
    }
    let total: u64 = rows.iter().map(|r| r["held"].as_u64().unwrap()).sum();
    assert!(total > 4000, "{table}");

    // The checker can fail: a manifest without one kernel is reported.
    let mut entries: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let at = entries.iter().position(|e| e["name"].as_str().is_some_and(|n| n.ends_with("-lowlatency"))).unwrap();
    let dropped = entries.remove(at)["name"].as_str().unwrap().to_string();
    let partial = work.path().join("partial.json");
    std::fs::write(&partial, serde_json::to_vec(&entries).unwrap()).unwrap();
    let out = oracle(work.path(), &["--manifest-json", partial.to_str().unwrap(), "--held", held.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains(&dropped), "{text}");

    // The mount as shipped: nothing but a cache directory.
    let m = Mounted::start_as_shipped(&work.path().join("cache"));
    let started = Instant::now();
    let crawled = |m: &Mounted| {
        let status = m.status();
        sources.iter().all(|s| status["crawl_sources"][s]["state"] == "ok")
    };
    while !crawled(&m) && started.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(crawled(&m), "the background crawl ran: {}\n{}", m.status(), m.log());
    let names: Vec<String> = std::fs::read_dir(m.path("ubuntu"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let listing = work.path().join("listing.txt");
    std::fs::write(&listing, names.join("\n")).unwrap();
    let out = oracle(work.path(), &["--listing", listing.to_str().unwrap(), "--held", held.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "the default mount misses kernels:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The newest noble generic kernel, built with the compiler its config names.
    let key = |n: &str| n.split(['.', '-']).take(4).map(|x| x.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>();
    let noble = rows.iter().filter(|r| r["suite"].as_str().unwrap().starts_with("noble"));
    let mut generic: Vec<String> = noble
        .flat_map(|r| r["kernels"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()))
        .filter(|k| k.ends_with("-generic") && k.starts_with("6.8."))
        .collect();
    generic.sort_by_key(|n| key(n));
    let name = generic.last().expect("a noble 6.8 generic kernel").clone();
    let config = read(&m.path(&format!("ubuntu/{name}/.config")));
    let cc_text = config.lines().find_map(|l| l.strip_prefix("CONFIG_CC_VERSION_TEXT=")).expect("the compiler");
    let cc = regex::Regex::new(r"gcc-([0-9]+)").unwrap().captures(cc_text).expect("gcc-N")[0].to_string();
    let chroot = Chroot::make(work.path(), "noble", &cc, &m.mnt);
    hello_module(&chroot.root.join("work"));
    let tree = format!("/kernels/ubuntu/{name}");
    let script =
        format!("cd /work && make -s -C {tree}/$(cat {tree}/BUNDLE_BUILD_DIR) M=/work && modinfo -F vermagic hello.ko");
    let out = run_ok(Command::new("chroot").arg(&chroot.root).args(["sh", "-c", &script]));
    let vermagic = out.lines().last().unwrap_or_default();
    assert!(vermagic.starts_with(&format!("{name} ")), "{out}");
    // The module's .comment names the compiler that built it: the kernel's major version.
    let ko = String::from_utf8_lossy(&std::fs::read(chroot.root.join("work/hello.ko")).unwrap()).into_owned();
    let major = &cc["gcc-".len()..];
    assert!(ko.contains(&format!("GCC: (Ubuntu {major}.")), "hello.ko was not built by {cc} ({cc_text})");
}
