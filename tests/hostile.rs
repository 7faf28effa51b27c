//! Hostile archives: traversal, absolute paths, escaping symlinks and hard
//! links, entries under a symlink, device nodes, setuid files, a
//! decompression bomb. Each is refused or neutralised with a clear message,
//! and nothing is written outside the target.

mod common;

use common::{gnu_tar_extract, kpackfs, run_err, run_ok, tempdir};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One raw tar entry: the name is written as given, unchecked.
struct Raw<'a> {
    name: &'a str,
    kind: u8,
    mode: u32,
    link: &'a str,
    data: Vec<u8>,
}

fn file(name: &str, data: &[u8]) -> Raw<'static> {
    Raw { name: Box::leak(name.to_string().into_boxed_str()), kind: b'0', mode: 0o644, link: "", data: data.to_vec() }
}

fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::new(e.kind));
        h.as_old_mut().name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        h.as_old_mut().linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// A minimal valid Debian headers tree plus the hostile entries, as .tar.gz.
fn package(dir: &Path, hostile: Vec<Raw<'_>>) -> PathBuf {
    let mut entries = vec![
        file("./usr/src/linux-headers-1.0.0-1-amd64/Makefile", b"all:\n"),
        file("./usr/src/linux-headers-1.0.0-1-amd64/include/config/kernel.release", b"1.0.0-1-amd64\n"),
    ];
    entries.extend(hostile);
    let path = dir.join("linux-headers-1.0.0-1-amd64_1.0_amd64.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
    gz.write_all(&raw_tar(&entries)).unwrap();
    gz.finish().unwrap();
    path
}

/// The tool runs three directories deep inside the test's directory, so
/// that a `../../x` written relative to its working directory would land
/// where the test looks.
fn bundle(dir: &Path, pkg: &Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = kpackfs();
    cmd.args(["bundle", "--type", "debian"]).args(extra).arg("-o").arg(dir.join("out/bundle.tgz")).arg(pkg);
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let cwd = dir.join("cwd/a/b");
    std::fs::create_dir_all(&cwd).unwrap();
    // Every place the tool could write, inside the test's directory: its
    // working directory, its temporary directory, its home.
    for d in ["tmp", "home"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    cmd.current_dir(cwd).env("TMPDIR", dir.join("tmp")).env("HOME", dir.join("home"));
    cmd
}

/// Every path under `dir`, files and links included.
fn tree(dir: &Path) -> std::collections::BTreeSet<PathBuf> {
    let mut out = std::collections::BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p.clone());
            }
            out.insert(p);
        }
    }
    out
}

/// Nothing the hostile entries name may exist where they could have been
/// written: under the test's directory (where the tool runs, its TMPDIR and
/// HOME) nothing is new but the bundle itself, the absolute paths they name
/// do not exist, and the bundle holds no entry outside its tree.
fn assert_nothing_outside(dir: &Path, before: &std::collections::BTreeSet<PathBuf>) {
    let after = tree(dir);
    let new: Vec<&PathBuf> = after
        .difference(before)
        .filter(|p| **p != dir.join("out/bundle.tgz") && **p != dir.join("x") && !p.starts_with(dir.join("x")))
        .collect();
    assert!(new.is_empty(), "written outside the target: {new:?}");
    for p in ["/etc/evil", "/evil", "/escaped"] {
        assert!(!Path::new(p).exists(), "{p} was written");
    }
    let out = dir.join("out/bundle.tgz");
    if out.exists() {
        let listing = run_ok(std::process::Command::new("tar").arg("-tzf").arg(&out));
        for entry in listing.lines() {
            assert!(!entry.contains("..") && !entry.starts_with('/'), "the bundle holds {entry}");
            assert!(!entry.contains("evil") && !entry.ends_with("/etc/"), "the bundle holds {entry}");
        }
    }
}

#[track_caller]
fn refused(hostile: Vec<Raw<'_>>, expect: &str) {
    let work = tempdir();
    let pkg = package(work.path(), hostile);
    let mut cmd = bundle(work.path(), &pkg, &[]);
    let before = tree(work.path());
    let err = run_err(&mut cmd);
    let line = err.lines().find(|l| l.starts_with("kpackfs: error:")).unwrap_or_default();
    assert!(line.contains(expect) && line.contains("linux-headers-1.0.0-1-amd64_1.0_amd64.tar.gz"), "{err}");
    assert!(!work.path().join("out/bundle.tgz").exists());
    assert_nothing_outside(work.path(), &before);
}

/// Build succeeds; returns the extracted bundle and the tool's stderr.
fn neutralised(hostile: Vec<Raw<'_>>) -> (tempfile::TempDir, PathBuf, String) {
    let work = tempdir();
    let pkg = package(work.path(), hostile);
    let mut cmd = bundle(work.path(), &pkg, &[]);
    let before = tree(work.path());
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let root = work.path().join("x");
    gnu_tar_extract(&work.path().join("out/bundle.tgz"), &root);
    assert_nothing_outside(work.path(), &before);
    (work, root, stderr)
}

#[test]
fn traversal_is_refused() {
    refused(vec![file("./usr/../../evil", b"x")], "path traversal");
}

#[test]
fn absolute_path_is_refused() {
    refused(vec![file("/etc/evil", b"x")], "absolute path");
}

#[test]
fn entry_under_a_symlink_is_refused() {
    refused(
        vec![
            Raw { name: "./usr/escaped", kind: b'2', mode: 0o777, link: "../../..", data: vec![] },
            file("./usr/escaped/evil", b"x"),
        ],
        "lies under the symlink usr/escaped",
    );
}

#[test]
fn escaping_hardlink_is_refused() {
    refused(
        vec![Raw { name: "./usr/h", kind: b'1', mode: 0o644, link: "../../etc/passwd", data: vec![] }],
        "hard link usr/h: entry ../../etc/passwd escapes",
    );
}

#[test]
fn hardlink_to_a_missing_file_is_refused() {
    refused(
        vec![Raw { name: "./usr/h", kind: b'1', mode: 0o644, link: "./usr/nothere", data: vec![] }],
        "not a regular file",
    );
}

#[test]
fn escaping_symlinks_are_dropped() {
    let (_work, root, _) = neutralised(vec![
        Raw {
            name: "./usr/src/linux-headers-1.0.0-1-amd64/up",
            kind: b'2',
            mode: 0o777,
            link: "../../../../../../etc",
            data: vec![],
        },
        Raw {
            name: "./usr/src/linux-headers-1.0.0-1-amd64/abs",
            kind: b'2',
            mode: 0o777,
            link: "/etc/shadow",
            data: vec![],
        },
    ]);
    let dir = root.join("usr/src/linux-headers-1.0.0-1-amd64");
    assert!(dir.join("up").symlink_metadata().is_err());
    assert!(dir.join("abs").symlink_metadata().is_err());
    assert!(dir.join("Makefile").is_file());
}

#[test]
fn device_nodes_are_skipped_with_a_warning() {
    let (_work, root, stderr) = neutralised(vec![
        Raw { name: "./usr/null", kind: b'3', mode: 0o666, link: "", data: vec![] },
        Raw { name: "./usr/fifo", kind: b'6', mode: 0o666, link: "", data: vec![] },
    ]);
    assert!(root.join("usr").is_dir());
    assert!(root.join("usr/null").symlink_metadata().is_err());
    assert!(root.join("usr/fifo").symlink_metadata().is_err());
    assert!(stderr.contains("skipping special file usr/null"), "{stderr}");
}

#[test]
fn setuid_and_setgid_bits_are_stripped() {
    let (work, _root, _) = neutralised(vec![Raw {
        name: "./usr/bin/tool",
        kind: b'0',
        mode: 0o6755,
        link: "",
        data: b"#!/bin/sh\n".to_vec(),
    }]);
    let listing = run_ok(std::process::Command::new("tar").arg("-tvzf").arg(work.path().join("out/bundle.tgz")));
    let line = listing.lines().find(|l| l.ends_with("./usr/bin/tool")).expect("tool listed");
    assert!(line.starts_with("-rwxr-xr-x "), "{line}");
}

#[test]
fn decompression_bomb_is_refused() {
    let work = tempdir();
    let pkg = package(work.path(), vec![file("./usr/zeros", &vec![0u8; 64 << 20])]);
    assert!(std::fs::metadata(&pkg).unwrap().len() < 1 << 20, "the bomb compresses well");
    let err = run_err(&mut bundle(work.path(), &pkg, &["--max-bundle-size", "16M"]));
    assert!(err.contains("limit per bundle"), "{err}");
    assert!(!work.path().join("out/bundle.tgz").exists());
}

#[test]
fn traversal_inside_a_deb_is_refused() {
    let work = tempdir();
    let data = raw_tar(&[file("./usr/src/linux-headers-1.0.0-1-amd64/Makefile", b"all:\n"), file("./../evil", b"x")]);
    std::fs::write(work.path().join("data.tar"), data).unwrap();
    common::sh(&format!(
        "cd {} && echo 2.0 > debian-binary && tar -czf control.tar.gz --files-from /dev/null && ar rc evil_1_amd64.deb debian-binary control.tar.gz data.tar",
        work.path().display()
    ));
    let mut cmd = bundle(work.path(), &work.path().join("evil_1_amd64.deb"), &[]);
    let before = tree(work.path());
    let err = run_err(&mut cmd);
    assert!(err.contains("evil_1_amd64.deb") && err.contains("path traversal"), "{err}");
    assert_nothing_outside(work.path(), &before);
}

#[test]
fn not_a_package_is_a_clear_error() {
    let work = tempdir();
    let pkg = work.path().join("garbage.deb");
    std::fs::write(&pkg, b"this is not a package at all").unwrap();
    let err = run_err(&mut bundle(work.path(), &pkg, &[]));
    assert!(err.contains("garbage.deb") && err.contains("unknown magic"), "{err}");
}

/// An Ubuntu-shaped package of under a kilobyte whose flavour directory
/// links into a tower of directories outside it: level k holds `fan` links
/// to level k-1, so copying the link makes fan^levels entries.
fn symlink_bomb(dir: &Path, fan: usize, levels: usize) -> PathBuf {
    let flavour = "./usr/src/linux-headers-1.0.0-1-generic";
    let common = "./usr/src/linux-headers-1.0.0-1";
    let mut entries = vec![
        file(&format!("{flavour}/Makefile"), b"all:\n"),
        file(&format!("{common}/l0/f"), b"x"),
        Raw {
            name: leak(format!("{flavour}/bomb")),
            kind: b'2',
            mode: 0o777,
            link: leak(format!("../linux-headers-1.0.0-1/l{levels}")),
            data: vec![],
        },
    ];
    for k in 1..=levels {
        for j in 0..fan {
            entries.push(Raw {
                name: leak(format!("{common}/l{k}/s{j}")),
                kind: b'2',
                mode: 0o777,
                link: leak(format!("../l{}", k - 1)),
                data: vec![],
            });
        }
    }
    let path = dir.join("linux-headers-1.0.0-1-generic_1.0_amd64.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::best());
    gz.write_all(&raw_tar(&entries)).unwrap();
    gz.finish().unwrap();
    path
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[test]
fn a_symlink_copy_bomb_is_refused_within_the_entry_limit_and_bounded_memory() {
    let work = tempdir();
    let pkg = symlink_bomb(work.path(), 9, 8); // 9^8 = 43 million entries if copied
    assert!(std::fs::metadata(&pkg).unwrap().len() < 4096, "a few hundred bytes of links");
    // 1 GiB of address space: the unbounded layout needed several GB for this.
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg("--as=1073741824").arg("--");
    cmd.arg(env!("CARGO_BIN_EXE_kpackfs"));
    cmd.args(["bundle", "--type", "ubuntu", "-o"]).arg(work.path().join("out.tgz")).arg(&pkg);
    let started = std::time::Instant::now();
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "a clean refusal of hostile input (EX_DATAERR), not an abort: {stderr}");
    assert!(stderr.contains("more than 400000 entries"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "bounded time too: {:?}", started.elapsed());
    assert!(!work.path().join("out.tgz").exists());
}

#[test]
fn the_daemon_refuses_each_hostile_package_with_one_line_and_goes_on_serving() {
    use common::mirror::{errno_of, Mounted};
    let work = tempdir();
    let www = work.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    // Each hostile package in a directory of its own (their file names are alike).
    let cases: Vec<(&str, &str, PathBuf, &str)> = vec![
        ("bomb", "ubuntu", symlink_bomb(&mkdir(&www, "bomb"), 9, 8), "more than 400000 entries"),
        (
            "traversal",
            "debian",
            package(&mkdir(&www, "traversal"), vec![file("./usr/../../evil", b"x")]),
            "path traversal",
        ),
        (
            "under-link",
            "debian",
            package(
                &mkdir(&www, "under-link"),
                vec![
                    Raw { name: "./usr/escaped", kind: b'2', mode: 0o777, link: "../../..", data: vec![] },
                    file("./usr/escaped/evil", b"x"),
                ],
            ),
            "lies under the symlink",
        ),
        (
            "zeros",
            "debian",
            package(&mkdir(&www, "zeros"), vec![file("./usr/zeros", &vec![0u8; 64 << 20])]),
            "limit per bundle",
        ),
    ];
    let good = package(&mkdir(&www, "good"), vec![]);
    let server = common::http::Server::start();
    server.mount("/", &www);
    let mut yaml = String::new();
    let mut entry = |kind: &str, name: &str, uname: &str, pkg: &Path| {
        let rel = pkg.strip_prefix(&www).unwrap().display().to_string();
        let url = format!("http://hostile.example.test/{rel}");
        let id = kpackfs::manifest::bundle_id([url.as_str()]);
        yaml.push_str(&format!(
            "{id}:\n  type: {kind}\n  name: {name}\n  uname: {uname}\n  packages:\n  - url: {url}\n"
        ));
    };
    for (name, kind, pkg, _) in &cases {
        let uname = if *kind == "ubuntu" { "1.0.0-1-generic" } else { "1.0.0-1-amd64" };
        entry(kind, name, uname, pkg);
    }
    entry("debian", "good", "1.0.0-1-amd64", &good);
    let manifest = work.path().join("manifest.yml");
    std::fs::write(&manifest, yaml).unwrap();
    let m = Mounted::start(
        &manifest,
        None,
        &[format!("--mirror=http://hostile.example.test={}", server.url("")), "--max-bundle-size".into(), "16M".into()],
    );
    for (name, kind, _, cause) in &cases {
        let read = std::fs::read_to_string(m.path(&format!("{kind}/{name}/BUNDLE_UNAME")));
        assert_eq!(errno_of(read), Some(libc::EIO), "{name}");
        assert!(m.alive(), "the daemon survived {name}");
        let log = m.log();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(&format!("bundle {kind}/{name}:"))).collect();
        assert_eq!(lines.len(), 1, "one line for {name}: {log}");
        assert!(lines[0].contains(cause), "{name}: {}", lines[0]);
    }
    assert_eq!(common::read(&m.path("debian/good/BUNDLE_UNAME")), "1.0.0-1-amd64", "and serves the others");
    for p in ["/evil", "/etc/evil"] {
        assert!(!Path::new(p).exists());
    }
    let leftovers: Vec<_> = std::fs::read_dir(m.cache.join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "nothing partial left in the cache's tmp/: {leftovers:?}");
}

fn mkdir(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// As root, in a sticky world-writable directory (as /tmp) where another
/// user planted `-o`'s name as a link to a root-owned file: the link is not
/// written through (whatever fs.protected_symlinks says), and the file
/// stays as it was.
#[test]
fn an_output_link_another_user_planted_is_never_written_through() {
    let work = tempdir();
    let shared = work.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let victim = work.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::fs::set_permissions(&victim, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let planted = shared.join("o.tgz");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(65534), Some(65534)).unwrap();
    let pkg = package(work.path(), vec![]);
    let out = kpackfs().args(["bundle", "--type", "debian", "-o"]).arg(&planted).arg(&pkg).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused");
    assert!(stderr.contains("symlink that belongs to uid 65534"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    // A link of our own is followed, as before.
    std::fs::remove_file(&planted).unwrap();
    let mine = shared.join("mine.tgz");
    std::os::unix::fs::symlink(work.path().join("real.tgz"), &mine).unwrap();
    std::fs::write(work.path().join("real.tgz"), "old").unwrap();
    run_ok(kpackfs().args(["bundle", "--type", "debian", "-o"]).arg(&mine).arg(&pkg));
    assert!(std::fs::metadata(work.path().join("real.tgz")).unwrap().len() > 100, "written through our own link");
}

/// crawl's lists and manifest, and publish's directory, go only where no
/// other user can plant links or swap directories: one owned by another
/// user, one under a directory others can write, are refused with a
/// message; nothing is written there.
#[test]
fn crawl_and_publish_refuse_output_directories_another_user_controls() {
    let work = tempdir();
    let theirs = work.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let open = work.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let sources = work.path().join("sources.yml");
    std::fs::write(
        &sources,
        "- name: x\n  type: debian\n  kind: apt\n  url: http://127.0.0.1:9/debian\n  suites: [s]\n  components: [main]\n  architectures: [amd64]\n  grouping: depends\n  insecure: true\n",
    )
    .unwrap();
    for (lists, manifest, why) in [
        (theirs.join("lists"), work.path().join("m1/manifest.yml"), "belongs to uid 65534"),
        (work.path().join("lists2"), open.join("sub/manifest.yml"), "other users can write"),
    ] {
        let out = kpackfs()
            .args(["crawl", "--sources"])
            .arg(&sources)
            .arg("--lists-dir")
            .arg(&lists)
            .arg("--manifest")
            .arg(&manifest)
            .arg("--cache-dir")
            .arg(work.path().join("cache"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(why), "{why}: {stderr}");
        assert!(!manifest.exists());
    }
    let m = work.path().join("pm.yml");
    let url = "http://hostile.example.test/linux-headers-1.0.0-1-amd64_1.0_amd64.tar.gz".to_string();
    std::fs::write(
        &m,
        format!("{}:\n  type: debian\n  packages:\n  - url: {url}\n", kpackfs::manifest::bundle_id([url.as_str()])),
    )
    .unwrap();
    let out = kpackfs()
        .args(["publish", "--manifest"])
        .arg(&m)
        .arg("--to")
        .arg(open.join("bucket"))
        .arg("--cache-dir")
        .arg(work.path().join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("other users can write"), "{stderr}");
    assert!(!open.join("bucket").exists() || std::fs::read_dir(open.join("bucket")).unwrap().next().is_none());
}

/// Entry names with a newline and a terminal escape are shown escaped in
/// the daemon's status and log: nothing forges a line or clears a screen.
#[test]
fn names_from_archives_cannot_forge_status_or_log_lines() {
    use common::mirror::{errno_of, Mounted};
    let work = tempdir();
    let www = work.path().join("www");
    let forged = "./usr/../x\n  ready     debian/FORGED  1 KiB\n\u{1b}[2J";
    let pkg = package(&mkdir(&www, "forge"), vec![file(forged, b"x")]);
    let server = common::http::Server::start();
    server.mount("/", &www);
    let rel = pkg.strip_prefix(&www).unwrap().display().to_string();
    let url = format!("http://hostile.example.test/{rel}");
    let id = kpackfs::manifest::bundle_id([url.as_str()]);
    let manifest = work.path().join("manifest.yml");
    std::fs::write(
        &manifest,
        format!("{id}:\n  type: debian\n  name: forge\n  uname: 1.0.0-1-amd64\n  packages:\n  - url: {url}\n"),
    )
    .unwrap();
    let m = Mounted::start(&manifest, None, &[format!("--mirror=http://hostile.example.test={}", server.url(""))]);
    assert_eq!(errno_of(std::fs::read(m.path("debian/forge/BUNDLE_UNAME"))), Some(libc::EIO));
    let status = std::fs::read_to_string(m.path(".kpackfs/status")).unwrap();
    assert!(!status.contains('\u{1b}'), "{status:?}");
    assert!(!status.lines().any(|l| l.trim_start().starts_with("ready") && l.contains("FORGED")), "{status}");
    assert!(status.contains("\\n  ready"), "escaped, still readable: {status}");
    let log = m.log();
    assert!(!log.contains('\u{1b}') && !log.lines().any(|l| l.trim_start().starts_with("ready")), "{log}");
}

/// The checker itself: a file left in the tool's TMPDIR, HOME or working
/// directory is seen.
#[test]
fn the_outside_check_sees_a_stray_file_anywhere_the_tool_could_write() {
    for place in ["tmp/stray", "home/.stray", "cwd/a/b/stray", "cwd/stray"] {
        let work = tempdir();
        let pkg = package(work.path(), vec![]);
        let _cmd = bundle(work.path(), &pkg, &[]);
        let before = tree(work.path());
        std::fs::write(work.path().join(place), "x").unwrap();
        let caught = std::panic::catch_unwind(|| assert_nothing_outside(work.path(), &before));
        assert!(caught.is_err(), "{place} was not seen");
    }
}
