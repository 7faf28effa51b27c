//! README.md as a script (issue 24): its fresh-machine main job and its
//! "Using it" block, taken from the file, run as written on a clean cache.
//!
//! They run as root in a private mount namespace, so that the host's
//! `/usr/local/bin`, `/var/cache/kpackfs`, `/lib/modules` and `/kernels`
//! are not touched: each is an empty directory of the test there. The one
//! stand-in is `cargo build --release`, which copies the binary under test
//! (the build is the test build; compiling a release build here would take
//! longer than the whole test tier).

mod common;

use common::tempdir;
use std::path::Path;
use std::process::Command;

/// The first ```sh block after the heading `heading` (to the next `## `).
fn sh_block(readme: &str, heading: &str) -> String {
    let start = readme.find(heading).unwrap_or_else(|| panic!("README.md has no {heading:?}"));
    let section = &readme[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let open = section.find("```sh\n").unwrap_or_else(|| panic!("no sh block under {heading:?}")) + 6;
    let len = section[open..].find("\n```").unwrap_or_else(|| panic!("unterminated block under {heading:?}"));
    section[open..open + len + 1].to_string()
}

fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn live_readme_main_job_and_using_it_run_verbatim_on_a_clean_cache() {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let main_job = sh_block(&readme, "## On a fresh machine");
    let using_it = sh_block(&readme, "## Using it");
    assert!(main_job.contains("kpackfs mount /kernels") && using_it.contains("make -C"), "{main_job}{using_it}");

    let work = tempdir();
    let w = work.path();
    for d in ["checkout", "shim", "usr-local-bin", "cache", "modules", "kernels", "home"] {
        std::fs::create_dir_all(w.join(d)).unwrap();
    }
    write_exec(
        &w.join("shim/cargo"),
        "#!/bin/sh\n# stands in for `cargo build --release`: the binary under test is that build\n\
         [ \"$*\" = \"build --release\" ] || { echo \"unexpected: cargo $*\" >&2; exit 1; }\n\
         mkdir -p target/release && cp \"$KPACKFS_BIN\" target/release/kpackfs\n",
    );
    std::fs::write(w.join("main-job.sh"), &main_job).unwrap();
    std::fs::write(w.join("using-it.sh"), &using_it).unwrap();
    // Host directories the README uses: made if missing (the README's own
    // `mkdir -p /kernels` would), removed after if this test made them.
    let made: Vec<&str> =
        ["/kernels", "/var/cache/kpackfs", "/lib/modules"].into_iter().filter(|d| !Path::new(d).exists()).collect();
    for d in &made {
        std::fs::create_dir_all(d).unwrap();
    }
    let outer = format!(
        "set -u\n\
         W={w}\n\
         mount --bind $W/usr-local-bin /usr/local/bin && mount --bind $W/cache /var/cache/kpackfs &&\n\
         mount --bind $W/modules /lib/modules && mount --bind $W/kernels /kernels || exit 90\n\
         trap 'kpackfs umount /kernels >/dev/null 2>&1 || umount -l /kernels' EXIT\n\
         cd $W/checkout && bash -e -o pipefail $W/main-job.sh || {{ echo \"main job failed: $?\"; exit 91; }}\n\
         echo '--- using it'\n\
         cd $W && bash -e -o pipefail $W/using-it.sh || {{ echo \"using it failed: $?\"; exit 92; }}\n",
        w = w.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "bash", "-c", &outer])
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", w.join("shim").display()),
        )
        .env("HOME", w.join("home"))
        .env("KPACKFS_BIN", env!("CARGO_BIN_EXE_kpackfs"))
        .output()
        .unwrap();
    for d in made.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let both = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(out.status.success(), "{}: {both}", out.status);

    // The main job listed the mount; the module was built for the kernel whose bundle was copied.
    let (listed, used) = stdout.split_once("--- using it").unwrap();
    assert!(listed.lines().filter(|l| l.starts_with("6.1.0-")).count() > 10, "ls /kernels/debian/: {both}");
    let hello = w.join("hello");
    let tgz = std::fs::read_dir(&hello)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".tgz"))
        .unwrap_or_else(|| panic!("no bundle copied: {both}"));
    let kernel = tgz.trim_end_matches(".tgz");
    let vermagic = used.lines().find(|l| l.starts_with(&format!("{kernel} "))).unwrap_or_else(|| panic!("{both}"));
    assert!(vermagic.contains("SMP") && vermagic.contains("mod_unload"), "{vermagic}");
    assert!(hello.join("hello.ko").exists());
    let members = common::run_ok(Command::new("tar").arg("-tzf").arg(hello.join(&tgz)));
    assert!(members.lines().any(|m| m.ends_with("BUNDLE_UNAME")), "the copied .tgz is a bundle");

    // The running kernel: built and linked where it is served, else a clear refusal.
    let release = common::run_ok(Command::new("uname").arg("-r")).trim().to_string();
    if stderr.contains(&format!("no bundle for kernel {release}")) {
        assert!(!w.join("modules").join(&release).exists(), "nothing linked for an unserved kernel: {both}");
        assert!(!stderr.contains("Usage: make") && !stdout.contains("Usage: make"), "no make usage dump: {both}");
    } else {
        assert!(w.join("modules").join(&release).join("build").exists(), "{both}");
    }
    assert!(used.contains("kpackfs at /kernels"), "status: {both}");
    assert!(used.contains("crawled") && used.contains(" 0 refused"), "the hand crawl: {both}");
}
