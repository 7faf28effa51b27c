//! Operating kpackfs as a Linux filesystem (issue 13): fstab and the mount
//! helper, systemd readiness and the shipped unit, completions and man
//! pages, and the errors a newcomer meets.

mod common;

use common::mirror::Fixture;
use common::{kpackfs, run_err, run_ok, tempdir};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Mount options (fstab form) that point a mount at the fixture's mirror.
fn fstab_options(fx: &Fixture, cache: &Path) -> String {
    let mut opts = vec![
        format!("cache_dir={}", cache.display()),
        format!("manifest={}", fx.manifest.display()),
        "apt_mirrors=false".into(),
        "crawl_interval=off".into(),
        // Independent of how full the host's disk is (see mirror::Mounted).
        "min_free=0".into(),
    ];
    for (canonical, path) in common::mirror::CANONICAL {
        opts.push(format!("mirror={canonical}={}", fx.server.url(path)));
    }
    opts.join(",")
}

/// Created for the test, removed after it, pass or fail: the helper link
/// mount(8) looks for, and the mounts.
struct Cleanup {
    links: Vec<PathBuf>,
    mounts: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for m in &self.mounts {
            let _ = Command::new("umount").arg("-l").arg(m).output();
        }
        for l in &self.links {
            let _ = std::fs::remove_file(l);
        }
    }
}

fn findmnt(mnt: &Path) -> String {
    run_ok(Command::new("findmnt").args(["-n", "-o", "FSTYPE,SOURCE"]).arg(mnt)).trim().to_string()
}

#[test]
fn fstab_mounts_through_both_types_and_builds_hello() {
    let fx = Fixture::new(false);
    let b = fx.bundle("debian");
    let dir = tempdir();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_kpackfs"));
    // mount(8) runs helpers from /sbin with a standard PATH: link ours
    // there for the test (the package ships both links).
    let mut cleanup = Cleanup { links: Vec::new(), mounts: Vec::new() };
    for helper in ["/sbin/mount.kpackfs", "/sbin/mount.fuse.kpackfs"] {
        let helper = PathBuf::from(helper);
        if std::fs::symlink_metadata(&helper).is_err() {
            std::os::unix::fs::symlink(&bin, &helper).unwrap();
            cleanup.links.push(helper);
        }
    }
    // Without mount.fuse.kpackfs, mount.fuse3 runs `kpackfs kpackfs DIR -o …`
    // from PATH: that form is exercised directly below.
    let path_dir = dir.path().join("bin");
    std::fs::create_dir(&path_dir).unwrap();
    std::os::unix::fs::symlink(&bin, path_dir.join("kpackfs")).unwrap();
    let path = format!("{}:{}", path_dir.display(), std::env::var("PATH").unwrap_or_default());

    let (m1, m2) = (dir.path().join("m1"), dir.path().join("m2"));
    std::fs::create_dir(&m1).unwrap();
    std::fs::create_dir(&m2).unwrap();
    cleanup.mounts.extend([m1.clone(), m2.clone()]);
    let conventions = "nofail,_netdev,x-systemd.requires=network-online.target,noatime";
    let fstab = dir.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# kpackfs, as docs/operations.md shows it\n\
             kpackfs {} kpackfs {},{conventions} 0 0\n\
             kpackfs {} fuse.kpackfs {},{conventions} 0 0\n",
            m1.display(),
            fstab_options(&fx, &dir.path().join("c1")),
            m2.display(),
            fstab_options(&fx, &dir.path().join("c2")),
        ),
    )
    .unwrap();
    run_ok(Command::new("mount").arg("-a").arg("-T").arg(&fstab));
    let m3 = dir.path().join("m3");
    std::fs::create_dir(&m3).unwrap();
    cleanup.mounts.push(m3.clone());
    run_ok(
        Command::new("mount.fuse3")
            .arg("kpackfs")
            .arg(&m3)
            .arg("-o")
            .arg(format!("{},{conventions}", fstab_options(&fx, &dir.path().join("c3"))))
            .arg("-t")
            .arg("fuse.kpackfs")
            .env("PATH", &path),
    );
    for m in [&m1, &m2, &m3] {
        assert_eq!(findmnt(m), "fuse.kpackfs kpackfs", "{}", m.display());
    }
    let root = m1.join("debian").join(&b.name);
    let vermagic = common::build_hello(&root, &dir.path().join("hello"));
    assert!(vermagic.starts_with(&b.uname), "{vermagic}");
    for m in [&m2, &m3] {
        let uname = std::fs::read_to_string(m.join("debian").join(&b.name).join("BUNDLE_UNAME")).unwrap();
        assert_eq!(uname.trim(), b.uname);
    }
    for m in [&m1, &m2, &m3] {
        run_ok(Command::new("umount").arg(m));
        assert!(findmnt_empty(m), "{} still mounted", m.display());
    }
}

/// Datagrams from the daemon, one state each, waiting up to `within`.
fn next_state(socket: &UnixDatagram, within: Duration) -> String {
    socket.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("a notification from the daemon");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn systemd_hears_ready_only_once_the_root_answers_then_reloading_and_stopping() {
    let fx = Fixture::new(false);
    let dir = tempdir();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut child = kpackfs()
        .arg("mount")
        .arg(&mnt)
        .arg("--foreground")
        .arg("-o")
        .arg(fstab_options(&fx, &dir.path().join("cache")))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("JOURNAL_STREAM", "8:12345")
        .stderr(stderr)
        .spawn()
        .unwrap();
    let _cleanup = Cleanup { links: Vec::new(), mounts: vec![mnt.clone()] };
    let ready = next_state(&socket, Duration::from_secs(60));
    // The moment systemd hears READY=1, the filesystem answers.
    let status = std::fs::read_to_string(mnt.join(".kpackfs/status.json"));
    assert_eq!(ready, "READY=1");
    assert!(status.is_ok_and(|s| s.contains("\"pid\"")), "READY=1 before the root answered");

    // SAFETY: signals to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let reloading = next_state(&socket, Duration::from_secs(30));
    assert!(reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading:?}");
    assert_eq!(next_state(&socket, Duration::from_secs(30)), "READY=1");

    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(next_state(&socket, Duration::from_secs(30)), "STOPPING=1");
    assert!(child.wait().unwrap().success());

    // journald stamps lines itself: a priority prefix, no timestamp.
    let log = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    let mounted = log.lines().find(|l| l.contains("mounted ")).unwrap_or_else(|| panic!("{log}"));
    assert!(mounted.starts_with("<6>mounted "), "{mounted:?}");
    assert!(!log.contains("Z INFO"), "{log}");
}

#[test]
fn the_shipped_unit_passes_systemd_analyze_verify() {
    let dir = tempdir();
    let unit = std::fs::read_to_string(common::repo().join("dist/kpackfs.service")).unwrap();
    assert!(unit.contains("Type=notify"), "{unit}");
    // verify checks that ExecStart exists: point it at the binary under test.
    let unit = unit.replace("/usr/bin/kpackfs", env!("CARGO_BIN_EXE_kpackfs"));
    let path = dir.path().join("kpackfs.service");
    std::fs::write(&path, unit).unwrap();
    // ... and Documentation=man:kpackfs(1) at the generated page.
    let man = dir.path().join("man");
    run_ok(kpackfs().arg("man").arg("--out").arg(man.join("man1")));
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).env("MANPATH", &man).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("kpackfs.service:"), "{stderr}");
}

#[test]
fn completions_and_man_pages_come_from_the_real_flags() {
    let bash = run_ok(kpackfs().args(["completions", "bash"]));
    let dir = tempdir();
    std::fs::write(dir.path().join("kpackfs.bash"), &bash).unwrap();
    run_ok(Command::new("bash").arg("-n").arg(dir.path().join("kpackfs.bash")));
    for word in ["mount", "which", "publish", "--cache-dir", "--allow-non-empty"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    assert!(run_ok(kpackfs().args(["completions", "zsh"])).starts_with("#compdef kpackfs"));
    assert!(run_ok(kpackfs().args(["completions", "fish"])).contains("complete -c kpackfs"));

    let man = dir.path().join("man");
    run_ok(kpackfs().arg("man").arg("--out").arg(&man));
    for page in ["kpackfs.1", "kpackfs-mount.1", "kpackfs-which.1", "kpackfs-completions.1"] {
        assert!(man.join(page).exists(), "{page} missing");
    }
    let rendered = run_ok(Command::new("man").arg("-l").arg(man.join("kpackfs-mount.1")).env("MANPAGER", "cat"));
    assert!(rendered.contains("kpackfs-mount") && rendered.contains("--cache-dir"), "{rendered}");
}

#[test]
fn a_non_empty_mount_point_is_refused_unless_allowed() {
    let fx = Fixture::new(false);
    let dir = tempdir();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    std::fs::write(mnt.join("precious"), "x").unwrap();
    let opts = fstab_options(&fx, &dir.path().join("cache"));
    let err = run_err(kpackfs().arg("mount").arg(&mnt).arg("-o").arg(&opts));
    assert!(err.contains("not empty") && err.contains("precious") && err.contains("--allow-non-empty"), "{err}");
    assert!(findmnt_empty(&mnt));
    let _cleanup = Cleanup { links: Vec::new(), mounts: vec![mnt.clone()] };
    run_ok(kpackfs().arg("mount").arg(&mnt).arg("-o").arg(format!("{opts},nonempty")));
    assert_eq!(findmnt(&mnt), "fuse.kpackfs kpackfs");
    run_ok(kpackfs().arg("umount").arg(&mnt));
    assert_eq!(std::fs::read_to_string(mnt.join("precious")).unwrap(), "x");
}

fn findmnt_empty(mnt: &Path) -> bool {
    Command::new("findmnt").arg(mnt).output().unwrap().stdout.is_empty()
}

#[test]
fn newcomer_errors_say_what_to_do() {
    let dir = tempdir();
    // A mount point that does not exist.
    let err = run_err(kpackfs().arg("mount").arg(dir.path().join("nope")));
    assert!(err.contains("does not exist") && err.contains("mkdir -p"), "{err}");
    // A user who cannot open /dev/fuse (it is 0600 root, as on Debian, or
    // 0666 with mount(2) still needing root: both name the fix).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_kpackfs"))
        .arg("mount")
        .arg(&mnt)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a non-root mount succeeded");
    assert!(err.contains("/dev/fuse") && err.contains("root"), "{err}");
    assert_eq!(err.matches("Permission denied").count(), 1, "said once: {err}");
    // status on something that is not a mount.
    let err = run_err(kpackfs().arg("status").arg(&mnt));
    assert!(err.contains("is not a kpackfs mount"), "{err}");
    // bundle -o into a directory that does not exist names the directory.
    let err = run_err(kpackfs().args(["bundle", "6.1.0-56-amd64", "-o"]).arg(dir.path().join("nodir/x.tgz")));
    assert!(err.contains("nodir") && err.contains("does not exist"), "{err}");
}

/// `name{labels} value` lines of a Prometheus text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn metrics_in_the_mount_and_over_http_count_the_same_builds() {
    let fx = Fixture::new(true);
    let mut args = fx.mirror_args();
    // Port 0: the daemon binds a free one and says which (no port picked and dropped here).
    args.extend(["--metrics".to_string(), "127.0.0.1:0".to_string()]);
    let m = common::mirror::Mounted::start(&fx.manifest, None, &args);
    let addr = m.status()["metrics_addr"].as_str().expect("the bound metrics address in status").to_string();
    assert!(addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"), "{addr}");
    // Two builds and one failure (the SUSE bundle's packages are gone).
    for kind in ["debian", "ubuntu"] {
        let b = fx.bundle(kind);
        let uname = std::fs::read_to_string(m.path(&format!("{kind}/{}/BUNDLE_UNAME", b.name))).unwrap();
        assert_eq!(uname.trim(), b.uname);
    }
    let suse = fx.bundle("suse");
    for (_, url_path) in &suse.files {
        std::fs::remove_file(fx.mirror_file(url_path)).unwrap();
    }
    let failed = std::fs::read_to_string(m.path(&format!("suse/{}/BUNDLE_UNAME", suse.name)));
    assert_eq!(common::mirror::errno_of(failed), Some(libc::EIO));

    let in_mount = std::fs::read_to_string(m.path(".kpackfs/metrics")).unwrap();
    let response = http_get(&addr, "/metrics");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{response}");
    let over_http = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let status = m.status();
    for text in [in_mount.as_str(), over_http] {
        assert_eq!(sample(text, "kpackfs_builds_total{outcome=\"ok\"}"), Some(2.0), "{text}");
        assert_eq!(sample(text, "kpackfs_builds_total{outcome=\"failed\"}"), Some(1.0), "{text}");
        assert_eq!(sample(text, "kpackfs_misses_total"), status["misses"].as_f64(), "{text}");
        assert_eq!(sample(text, "kpackfs_phase_seconds_count{phase=\"fetch\"}"), Some(2.0), "{text}");
        assert_eq!(sample(text, "kpackfs_phase_seconds_count{phase=\"extract\"}"), Some(2.0), "{text}");
        assert_eq!(sample(text, "kpackfs_cache_bundles"), status["cached_bundles"].as_f64(), "{text}");
        assert!(sample(text, "kpackfs_fuse_requests_total{op=\"lookup\"}").is_some_and(|n| n > 0.0), "{text}");
        assert!(sample(text, "kpackfs_downloaded_bytes_total").is_some_and(|n| n > 0.0), "{text}");
    }
    assert_eq!(status["builds"], 2);
    assert_eq!(status["failures"], 1);
    // The log tells the same story: one INFO line per build with its bytes
    // and phases, the failure once, naming the bundle.
    let log = m.log();
    let built: Vec<&str> = log.lines().filter(|l| l.contains("built bundle ")).collect();
    assert_eq!(built.len(), 2, "{log}");
    assert!(
        built.iter().all(|l| l.contains("INFO") && l.contains("downloaded)") && l.contains("(fetch ")),
        "{built:?}"
    );
    let failed: Vec<&str> = log.lines().filter(|l| l.contains(&format!("bundle suse/{}", suse.name))).collect();
    assert_eq!(failed.len(), 1, "the failure once: {log}");
    assert!(failed[0].contains("ERROR"), "{failed:?}");
    assert!(http_get(&addr, "/other").starts_with("HTTP/1.1 404"));
}
