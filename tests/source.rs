//! Source bundles: a kernel source tarball and its config, prepared in the
//! sandbox. The live test is the oracle: Debian's own source, config and
//! compiler give Debian's own generated headers and vermagic. The others
//! run a stand-in kernel tree whose Makefile probes the sandbox.

mod common;

use common::pkgs::{real_debian, real_debian_source};
use common::{build_hello, gnu_tar_extract, kpackfs, read, run_err, run_ok, sh, sha256_file, tempdir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const GENERATED: &[&str] = &[
    "include/generated/autoconf.h",
    "include/generated/utsrelease.h",
    "include/config/auto.conf",
    "include/generated/uapi/linux/version.h",
    ".config",
    "Module.symvers",
];

#[test]
fn live_a_source_bundle_from_debians_source_has_debians_headers_and_vermagic() {
    let deb = real_debian();
    let source = real_debian_source(&deb);
    let headers = &deb.packages.iter().find(|p| p.name == format!("linux-headers-{}", deb.uname)).unwrap().path;
    let work = tempdir();
    let tgz = work.path().join("source.tgz");
    let bundle = |out: &Path, cache: &str| {
        run_ok(
            kpackfs()
                .args(["bundle", "--cache-dir"])
                .arg(work.path().join(cache))
                .args(["--type", "source", "--release", &deb.uname, "-o"])
                .arg(out)
                .arg(&source)
                .arg(headers),
        )
    };
    bundle(&tgz, "cache-a");
    let built = work.path().join("built");
    gnu_tar_extract(&tgz, &built);
    assert_eq!(read(&built.join("BUNDLE_UNAME")), deb.uname);
    assert_eq!(read(&built.join("BUNDLE_DISTRO")), "source");
    assert_eq!(read(&built.join("BUNDLE_BUILD_DIR")), ".");
    // Debian's own headers, as dpkg unpacks them.
    let unpacked = work.path().join("debian");
    run_ok(Command::new("dpkg-deb").arg("-x").arg(headers).arg(&unpacked));
    let debian_tree = unpacked.join(format!("usr/src/linux-headers-{}", deb.uname));
    for file in GENERATED {
        let (ours, theirs) = (std::fs::read(built.join(file)), std::fs::read(debian_tree.join(file)));
        assert!(ours.is_ok() && ours.as_ref().ok() == theirs.as_ref().ok(), "{file} differs from Debian's headers");
    }
    // No C but kbuild's own, no objects.
    let stray = sh(&format!(
        "cd {} && find . -type f \\( -name '*.o' -o -name '*.cmd' -o \\( -name '*.c' ! -path './scripts/*' \\) \\) | head -5",
        built.display()
    ));
    assert!(stray.trim().is_empty(), "objects or sources left: {stray}");
    // A module built against it and one built against the packaged bundle
    // carry one vermagic.
    let packaged_tgz = work.path().join("packaged.tgz");
    run_ok(kpackfs().args(["bundle", "--type", "debian", "-o"]).arg(&packaged_tgz).args(deb.files()));
    let packaged = work.path().join("packaged");
    gnu_tar_extract(&packaged_tgz, &packaged);
    let ours = build_hello(&built, &work.path().join("hello-source"));
    let theirs = build_hello(&packaged, &work.path().join("hello-packaged"));
    assert!(ours.starts_with(&format!("{} ", deb.uname)), "vermagic {ours:?}");
    assert_eq!(ours, theirs, "vermagic of the source bundle and of the packaged one");
    // Deterministic: a second build from an empty cache gives the same bytes.
    let again = work.path().join("again.tgz");
    bundle(&again, "cache-b");
    assert_eq!(sha256_file(&tgz), sha256_file(&again), "two builds of one source bundle differ");
}

/// The host compiler's banner, which a stand-in config names.
fn gcc_banner() -> String {
    sh("gcc-12 --version | head -1").trim().to_string()
}

fn stand_in_config(banner: &str) -> String {
    let mut config =
        String::from("#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.1.0 Kernel Configuration\n#\n");
    config.push_str(&format!("CONFIG_CC_VERSION_TEXT=\"{banner}\"\nCONFIG_CC_IS_GCC=y\nCONFIG_GCC_VERSION=120200\n"));
    for opt in ["X86_64", "X86", "64BIT", "MODULES", "MODVERSIONS", "SMP", "PREEMPT", "BPF", "BPF_SYSCALL", "KPROBES"] {
        config.push_str(&format!("CONFIG_{opt}=y\n"));
    }
    config.push_str("# CONFIG_DEBUG_STUFF is not set\n");
    config
}

/// A stand-in kernel tree `linux-6.1.0/` whose `modules_prepare` runs
/// `recipe` (make syntax, one command per line) after writing the files
/// a prepared tree has.
fn stand_in_source(dir: &Path, olddefconfig: &str, recipe: &str) -> PathBuf {
    let tree = dir.join("linux-6.1.0");
    std::fs::create_dir_all(tree.join("include/linux")).unwrap();
    std::fs::create_dir_all(tree.join("arch/x86/include/asm")).unwrap();
    std::fs::write(tree.join("include/linux/module.h"), "/* stand-in */\n").unwrap();
    std::fs::write(tree.join("Kconfig"), "# stand-in\n").unwrap();
    let tab = |body: &str| body.lines().map(|l| format!("\t{l}\n")).collect::<String>();
    let makefile = format!(
        "kernelversion:\n\t@echo 6.1.0\nolddefconfig:\n{}modules_prepare:\n\tmkdir -p include/generated include/config\n\techo '#define UTS_RELEASE \"$(KERNELRELEASE)\"' > include/generated/utsrelease.h\n{}",
        tab(if olddefconfig.is_empty() { "@true" } else { olddefconfig }),
        tab(recipe)
    );
    std::fs::write(tree.join("Makefile"), makefile).unwrap();
    let tarball = dir.join("linux-6.1.0.tar.gz");
    run_ok(Command::new("tar").arg("-czf").arg(&tarball).arg("-C").arg(dir).arg("linux-6.1.0"));
    tarball
}

fn bundle_source(work: &Path, tarball: &Path, config: &str, extra_settings: &str) -> Command {
    let config_path = work.join("config");
    std::fs::write(&config_path, config).unwrap();
    let settings = work.join("kpackfs.yml");
    std::fs::write(&settings, format!("cache_dir: {}\n{extra_settings}", work.join("cache").display())).unwrap();
    let mut cmd = kpackfs();
    cmd.arg("--config").arg(&settings);
    cmd.args(["bundle", "--type", "source", "--release", "6.1.0-stand-in", "-o"]).arg(work.join("out.tgz"));
    cmd.arg(tarball).arg(&config_path);
    cmd
}

#[test]
fn the_sandbox_runs_unprivileged_without_network_host_files_or_writes_outside() {
    let work = tempdir();
    let secret = PathBuf::from(format!("/root/kpackfs-secret-{}", std::process::id()));
    std::fs::write(&secret, "the secret").unwrap();
    let _cleanup = Cleanup(secret.clone());
    let outside = work.path().join("written-from-the-sandbox");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let recipe = format!(
        "id -u > probe-uid\n\
         -cat {secret} > probe-root 2>&1\n\
         -bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}' > probe-net 2>&1; echo \"exit $$?\" >> probe-net\n\
         -touch {outside} > probe-write 2>&1; echo \"exit $$?\" >> probe-write\n\
         -touch /usr/kpackfs-probe > probe-usr 2>&1; echo \"exit $$?\" >> probe-usr\n\
         -ls /etc/passwd /home > probe-etc 2>&1; echo \"exit $$?\" >> probe-etc",
        secret = secret.display(),
        outside = outside.display()
    );
    let tarball = stand_in_source(work.path(), "", &recipe);
    run_ok(&mut bundle_source(work.path(), &tarball, &stand_in_config(&gcc_banner()), ""));
    let tree = work.path().join("tree");
    gnu_tar_extract(&work.path().join("out.tgz"), &tree);
    let probe = |name: &str| std::fs::read_to_string(tree.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let uid: u64 = probe("probe-uid").trim().parse().unwrap();
    assert!((1_500_000_000..1_501_000_000).contains(&uid), "the build runs as an unprivileged user of its own: {uid}");
    assert!(!probe("probe-root").contains("the secret"), "the build read /root: {}", probe("probe-root"));
    assert!(!probe("probe-net").ends_with("exit 0\n"), "the build reached the network: {}", probe("probe-net"));
    assert!(listener.accept().is_err(), "a connection reached the host's loopback");
    assert!(!outside.exists(), "the build wrote {} on the host", outside.display());
    assert!(!Path::new("/usr/kpackfs-probe").exists() && !probe("probe-usr").ends_with("exit 0\n"));
    assert!(!probe("probe-etc").ends_with("exit 0\n"), "the build sees /etc/passwd or /home: {}", probe("probe-etc"));
    assert_eq!(read(&tree.join("BUNDLE_UNAME")), "6.1.0-stand-in");
}

struct Cleanup(PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_build_that_forks_without_end_is_killed_at_its_deadline_with_every_process() {
    let work = tempdir();
    let marker = format!("kpackfs-fork-bomb-{}", std::process::id());
    let tarball = stand_in_source(work.path(), "", &format!("bash -c 'f() {{ f | f & }}; f; sleep 600' {marker}"));
    let started = Instant::now();
    let err =
        run_err(&mut bundle_source(work.path(), &tarball, &stand_in_config(&gcc_banner()), "source_timeout: 8s\n"));
    assert!(started.elapsed() < Duration::from_secs(60), "the deadline held: {:?}", started.elapsed());
    assert!(err.contains("deadline"), "{err}");
    // Every process of the build is gone (the pid namespace died with it).
    std::thread::sleep(Duration::from_millis(500));
    // pgrep itself, not through a shell whose own command line has the marker.
    let left = String::from_utf8_lossy(&Command::new("pgrep").args(["-c", "-f", &marker]).output().unwrap().stdout)
        .into_owned();
    assert_eq!(left.trim(), "0", "build processes left behind");
    assert!(!work.path().join("out.tgz").exists(), "nothing partial is written");
}

#[test]
fn a_config_the_build_would_change_is_refused_naming_the_options() {
    let work = tempdir();
    let tarball = stand_in_source(work.path(), "echo CONFIG_RUSTC_VERSION=109500 >> .config", "true");
    let mut cmd = bundle_source(work.path(), &tarball, &stand_in_config(&gcc_banner()), "");
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "refused: {stderr}");
    assert!(stderr.contains("CONFIG_RUSTC_VERSION: n → 109500"), "{stderr}");
}

#[test]
fn a_kernel_built_with_a_compiler_this_host_lacks_is_refused_naming_it() {
    let work = tempdir();
    let tarball = stand_in_source(work.path(), "", "true");
    let config = stand_in_config("gcc-99 (Imaginary 99.1.0-1) 99.1.0").replace("120200", "990100");
    let out = bundle_source(work.path(), &tarball, &config, "").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "refused: {stderr}");
    assert!(stderr.contains("install gcc-99"), "{stderr}");
}

#[test]
fn a_source_with_a_path_out_of_the_tree_is_refused() {
    let work = tempdir();
    let tree = work.path().join("t");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("x"), "x").unwrap();
    let tarball = work.path().join("evil.tar");
    // GNU tar writes the path as given with -P.
    run_ok(
        Command::new("tar")
            .arg("-cPf")
            .arg(&tarball)
            .arg("--transform=s|.*/t/x|linux-6.1.0/../../escape|")
            .arg(tree.join("x")),
    );
    let out = bundle_source(work.path(), &tarball, &stand_in_config(&gcc_banner()), "").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "hostile: {stderr}");
    assert!(!work.path().join("escape").exists() && !Path::new("/escape").exists());
}

/// Run a stand-in build whose `modules_prepare` runs `recipe` under
/// `settings`: it must fail as the build's own doing (65), with nothing
/// written; its stderr.
fn failing_build(recipe: &str, settings: &str) -> String {
    let work = tempdir();
    let tarball = stand_in_source(work.path(), "", recipe);
    let out = bundle_source(work.path(), &tarball, &stand_in_config(&gcc_banner()), settings).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(!work.path().join("out.tgz").exists(), "nothing partial is written");
    stderr
}

#[test]
fn a_build_that_fills_its_scratch_fails_with_the_cause_and_writes_nothing() {
    let stderr = failing_build("dd if=/dev/zero of=fill bs=1M count=512", "source_scratch: 64M\n");
    assert!(stderr.contains("No space left on device"), "the cause, from the build's log: {stderr}");
}

#[test]
fn a_build_that_wants_more_memory_than_its_limit_fails_inside_it() {
    let stderr = failing_build("python3 -c 'b = bytearray(1 << 30); print(len(b))'", "source_memory: 256M\n");
    assert!(stderr.contains("MemoryError"), "the cause, from the build's log: {stderr}");
}

#[test]
fn a_config_step_that_never_ends_is_stopped_at_the_deadline() {
    let work = tempdir();
    let tarball = stand_in_source(work.path(), "while :; do echo CONFIG_LOOP=y >> .config; sleep 0.1; done", "true");
    let started = Instant::now();
    let config = stand_in_config(&gcc_banner());
    let err = run_err(&mut bundle_source(work.path(), &tarball, &config, "source_timeout: 5s\n"));
    assert!(started.elapsed() < Duration::from_secs(60), "the deadline held: {:?}", started.elapsed());
    assert!(err.contains("over its 5s deadline"), "{err}");
}

/// An entry `<kind>/stand-in` (a kernel.org-style tarball and a config
/// file, as minikube's and crawled linuxkit entries are) whose stand-in
/// source runs `recipe` in `modules_prepare`, mounted from a loopback mirror.
fn mount_stand_in(work: &Path, kind: &str, recipe: &str) -> (common::mirror::Mounted, common::http::Server) {
    let files = work.join("files");
    std::fs::create_dir_all(&files).unwrap();
    stand_in_source(&files, "", recipe);
    std::fs::write(files.join("config-x86_64"), stand_in_config(&gcc_banner())).unwrap();
    let server = common::http::Server::start();
    server.mount("/files", &files);
    let urls = [server.url("/files/linux-6.1.0.tar.gz"), server.url("/files/config-x86_64")];
    let id = kpackfs::manifest::bundle_id(urls.iter().map(String::as_str));
    let manifest = work.join("manifest.yml");
    std::fs::write(
        &manifest,
        format!("{id}:\n  type: {kind}\n  name: stand-in\n  packages:\n  - url: {}\n  - url: {}\n", urls[0], urls[1]),
    )
    .unwrap();
    let cache = work.join("cache");
    let m = common::mirror::Mounted::start(&manifest, Some(&cache), &["--no-apt-mirrors".to_string()]);
    (m, server)
}

#[test]
fn a_failed_source_build_through_the_mount_is_eio_with_its_log_kept_in_the_cache() {
    let work = tempdir();
    let (m, _server) = mount_stand_in(work.path(), "minikube", "echo kpackfs-marker-from-the-build\nfalse");
    let cache = m.cache.clone();
    let err = std::fs::read(m.path("minikube/stand-in/BUNDLE_UNAME")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    let log = m.log();
    let line = log
        .lines()
        .find(|l| l.contains("minikube/stand-in") && l.contains("its last 16 KiB: "))
        .unwrap_or_else(|| panic!("one line with the cause and where the log is: {log}"));
    assert!(line.contains("exited with status"), "{line}");
    let kept = line.split("its last 16 KiB: ").nth(1).unwrap().split(')').next().unwrap();
    assert!(Path::new(kept).starts_with(cache.join("logs")), "{kept}");
    assert!(read(Path::new(kept)).contains("kpackfs-marker-from-the-build"), "the kept log is the build's");
    assert!(m.alive());
}

/// A linuxkit entry a kernel.org crawl made carries its series' config:
/// that config is used, not one kpackfs ships (it has none for 6.1.0).
#[test]
fn a_crawled_linuxkit_entry_builds_with_the_config_it_carries() {
    let work = tempdir();
    let (m, _server) = mount_stand_in(work.path(), "linuxkit", "true");
    assert_eq!(read(&m.path("linuxkit/stand-in/BUNDLE_UNAME")), "6.1.0-linuxkit");
    let dir = read(&m.path("linuxkit/stand-in/BUNDLE_BUILD_DIR"));
    let config = read(&m.path(&format!("linuxkit/stand-in/{dir}/.config")));
    assert!(config.contains("CONFIG_KPROBES=y") && config.contains("# CONFIG_DEBUG_STUFF is not set"), "{config}");
}

/// Processes whose parent chain reaches `pid` (the daemon's builds).
fn descendants_of(pid: u32) -> Vec<u32> {
    let parent_of = |p: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(mut p) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let me = p;
        for _ in 0..64 {
            match parent_of(p) {
                Some(parent) if parent == pid => {
                    out.push(me);
                    break;
                }
                Some(parent) if parent > 1 => p = parent,
                _ => break,
            }
        }
    }
    out
}

fn is_building(state: &str) -> bool {
    matches!(state, "verifying" | "remote" | "fetching" | "extracting" | "compressing")
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_source_build_whose_last_reader_is_killed_is_stopped_and_starts_again_for_the_next() {
    let work = tempdir();
    let (m, _server) = mount_stand_in(work.path(), "minikube", "sleep 600");
    let label = "minikube/stand-in";
    // Each reader its own file: lookups of one name are serialized in the
    // kernel, and a reader held there cannot die until the one ahead of it
    // is answered (the 2 s grace covers those readers; the quick tier tests it).
    let reader_of = |file: &str| Command::new("cat").arg(m.path(&format!("minikube/stand-in/{file}"))).spawn().unwrap();
    let reader = || reader_of("BUNDLE_UNAME");
    let kill = |mut child: std::process::Child| {
        child.kill().unwrap();
        child.wait().unwrap();
    };
    let (mut first, second) = (reader(), reader_of("BUNDLE_BUILD_DIR"));
    wait_for("the build's sandbox", Duration::from_secs(60), || !descendants_of(m.pid).is_empty());
    kill(first);
    std::thread::sleep(Duration::from_secs(1));
    assert!(!descendants_of(m.pid).is_empty(), "one reader still waits: the build goes on");
    assert!(is_building(&m.bundle_state(label)), "{}", m.bundle_state(label));
    kill(second);
    wait_for("the sandbox to end", Duration::from_secs(20), || descendants_of(m.pid).is_empty());
    wait_for("the build's end", Duration::from_secs(10), || !is_building(&m.bundle_state(label)));
    assert_eq!(m.bundle_state(label), "absent", "a stop is no failure: no backoff");
    let log = m.log();
    assert!(log.lines().any(|l| l.contains(label) && l.contains("nobody waits for it any more")), "{log}");
    assert!(!log.lines().any(|l| l.contains("ERROR") && l.contains(label)), "no failure logged: {log}");
    assert!(!m.cache.join("logs").read_dir().is_ok_and(|mut d| d.next().is_some()), "no build log kept");
    // The next reader starts the build at once.
    first = reader();
    wait_for("a new sandbox", Duration::from_secs(20), || !descendants_of(m.pid).is_empty());
    kill(first);
    wait_for("the second sandbox to end", Duration::from_secs(20), || descendants_of(m.pid).is_empty());
    assert!(m.alive());
}

/// Debian's source repacked in the shapes COS and kernel.org publish
/// (made once per source version): `kernel-src.tar.gz` (flat),
/// `kernel-headers.tgz` (the config and Module.symvers under
/// `usr/src/linux-headers-<version>/`), and the plain tarball.
struct Repacked {
    cos_src: PathBuf,
    cos_headers: PathBuf,
    tarball: PathBuf,
    config: PathBuf,
}

fn repacked(source_deb: &Path, headers_deb: &Path) -> Repacked {
    let name = source_deb.file_name().unwrap().to_string_lossy().into_owned();
    let dir = common::pkgs::test_cache().join(format!("repacked-{name}"));
    let done = dir.join("done");
    common::pkgs::with_lock(&common::pkgs::test_cache().join("repacked.lock"), || {
        if !done.exists() {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("headers")).unwrap();
            run_ok(Command::new("dpkg-deb").arg("-x").arg(headers_deb).arg(dir.join("headers")));
            sh(&format!(
                "set -e; cd {d}; dpkg-deb --fsys-tarfile {src} | tar -xO --wildcards '*/linux-source-*.tar.xz' > linux.tar.xz
                 h=$(ls -d headers/usr/src/linux-headers-*-amd64); cp $h/.config config
                 v={v}
                 mkdir -p cos/usr/src/linux-headers-$v && cp config cos/usr/src/linux-headers-$v/.config && cp $h/Module.symvers cos/usr/src/linux-headers-$v/
                 tar -czf kernel-headers.tgz -C cos usr
                 xz -dc linux.tar.xz | python3 -c '
import sys, tarfile
src = tarfile.open(fileobj=sys.stdin.buffer, mode=\"r|*\")
dst = tarfile.open(fileobj=sys.stdout.buffer, mode=\"w|\", format=tarfile.GNU_FORMAT)
for m in src:
    parts = m.name.split(\"/\", 1)
    if len(parts) < 2 or not parts[1]:
        continue
    m.name = parts[1]
    if m.islnk():
        m.linkname = m.linkname.split(\"/\", 1)[1]
    dst.addfile(m, src.extractfile(m) if m.isreg() else None)
dst.close()' | pigz > kernel-src.tar.gz
                 touch done",
                d = dir.display(),
                src = source_deb.display(),
                // The upstream version: linux-source-6.1_6.1.192-3_all.deb → 6.1.192.
                v = name.split('_').nth(1).and_then(|v| v.split('-').next()).unwrap()
            ));
        }
    });
    Repacked {
        cos_src: dir.join("kernel-src.tar.gz"),
        cos_headers: dir.join("kernel-headers.tgz"),
        tarball: dir.join("linux.tar.xz"),
        config: dir.join("config"),
    }
}

/// Debian's source repacked, a work directory, a loopback server, where
/// it serves from, and the mount arguments for kernel-packer's lists.
fn kernel_packer_loopback() -> (Repacked, tempfile::TempDir, common::http::Server, PathBuf, Vec<String>) {
    let deb = real_debian();
    let source = real_debian_source(&deb);
    let headers = &deb.packages.iter().find(|p| p.name == format!("linux-headers-{}", deb.uname)).unwrap().path;
    let r = repacked(&source, headers);
    let work = tempdir();
    let root = work.path().join("mirror");
    let args = vec![
        "--no-apt-mirrors".to_string(),
        "--lists-dir".to_string(),
        common::kernel_packer_fixtures().display().to_string(),
    ];
    (r, work, common::http::Server::start(), root, args)
}

#[test]
fn live_kernel_packers_cos_minikube_and_linuxkit_entries_answer_through_the_mount_from_a_loopback_copy() {
    let (r, work, server, root, mut args) = kernel_packer_loopback();
    // A COS build with both tarballs, a minikube release, a linuxkit kernel.
    let cos = "16919.235.36";
    args.extend(common::http::serve_as(
        &server,
        &root,
        &common::listed_url("cos.txt", &format!("{cos}/kernel-src")),
        &r.cos_src,
    ));
    args.extend(common::http::serve_as(
        &server,
        &root,
        &common::listed_url("cos.txt", &format!("{cos}/kernel-headers")),
        &r.cos_headers,
    ));
    let defconfig = common::listed_url("minikube.txt", "v1.29.0/");
    args.extend(common::http::serve_as(&server, &root, &defconfig, &r.config));
    args.extend(common::http::serve_as(
        &server,
        &root,
        &common::listed_url("minikube.txt", "linux-5.10.57.tar"),
        &r.tarball,
    ));
    args.extend(common::http::serve_as(
        &server,
        &root,
        &common::listed_url("linuxkit.txt", "linux-4.19.76.tar"),
        &r.tarball,
    ));
    let m = common::mirror::Mounted::start(&common::kernel_packer_fixtures().join("manifest.yml"), None, &args);
    let tree_version =
        sh(&format!("ls {}/cos/usr/src", r.cos_src.parent().unwrap().display())).trim().replace("linux-headers-", "");
    assert!(!tree_version.is_empty());

    // COS: release x.y.z+, the config from the headers tarball, a module builds.
    let cos_root = m.path(&format!("cos/{cos}"));
    assert_eq!(read(&cos_root.join("BUNDLE_UNAME")), format!("{tree_version}+"), "{}", m.log());
    assert_eq!(read(&cos_root.join("BUNDLE_DISTRO")), "cos");
    assert!(cos_root.join("Module.symvers").exists(), "the headers tarball's Module.symvers is kept");
    let vermagic = build_hello(&cos_root, &work.path().join("hello-cos"));
    assert!(vermagic.starts_with(&format!("{tree_version}+ ")), "{vermagic}");

    // minikube: the tree's own release, the defconfig as its config.
    let minikube_root = m.path("minikube/v1.29.0");
    assert_eq!(read(&minikube_root.join("BUNDLE_UNAME")), tree_version, "{}", m.log());
    let vermagic = build_hello(&minikube_root, &work.path().join("hello-minikube"));
    assert!(vermagic.starts_with(&format!("{tree_version} ")), "{vermagic}");

    // linuxkit: kernel-packer's 4.x config cannot prepare this 6.1 tree
    // faithfully: EIO, and the cause names the options that would change.
    let err = std::fs::read(m.path("linuxkit/4.19.76/BUNDLE_UNAME")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    let log = m.log();
    assert!(log.contains("linuxkit/4.19.76") && log.contains("would change") && log.contains("(refused)"), "{log}");
    assert!(m.alive(), "the daemon goes on serving");
}

/// The banner of the stand-in for the toolchain COS publishes beside a
/// build: a compiler this host does not have by that name (it runs the
/// host's gcc-12 underneath, so the config's other options stay Debian's).
const COS_TOOLCHAIN_BANNER: &str = "x86_64-cros-linux-gnu-gcc (kpackfs stand-in toolchain) 12.2.0";

/// A toolchain tarball shaped as COS's (`bin/<triple>-gcc`), and a
/// `kernel-headers.tgz` whose config names its compiler.
fn cos_toolchain_inputs(r: &Repacked, dir: &Path) -> (PathBuf, PathBuf) {
    let tree = dir.join("toolchain");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    let cc = tree.join("bin/x86_64-cros-linux-gnu-gcc");
    std::fs::write(
        &cc,
        format!("#!/bin/sh\ncase \" $* \" in *\" --version \"*) echo '{COS_TOOLCHAIN_BANNER}'; exit 0;; esac\nexec gcc-12 \"$@\"\n"),
    )
    .unwrap();
    sh(&format!("chmod 755 {}", cc.display()));
    let tarball = dir.join("x86_64-cros-linux-gnu-2026.11.01.tar.xz");
    run_ok(Command::new("tar").arg("-cJf").arg(&tarball).arg("-C").arg(&tree).arg("."));
    let config = read(&r.config);
    let line = config.lines().find(|l| l.starts_with("CONFIG_CC_VERSION_TEXT=")).unwrap();
    let config = config.replace(line, &format!("CONFIG_CC_VERSION_TEXT=\"{COS_TOOLCHAIN_BANNER}\""));
    let headers = dir.join("headers");
    sh(&format!("mkdir -p {h} && tar -xzf {src} -C {h}", h = headers.display(), src = r.cos_headers.display()));
    let tree_config = sh(&format!("ls -d {}/usr/src/linux-headers-*/.config", headers.display()));
    std::fs::write(tree_config.trim(), config).unwrap();
    let tgz = dir.join("kernel-headers.tgz");
    run_ok(Command::new("tar").arg("-czf").arg(&tgz).arg("-C").arg(&headers).arg("usr"));
    (tarball, tgz)
}

/// Serve `file` at `url` with the `.md5` COS publishes beside it (`md5`
/// overrides the digest).
fn serve_with_md5(
    server: &common::http::Server,
    root: &Path,
    url: &str,
    file: &Path,
    md5: Option<&str>,
) -> [String; 2] {
    let digest = md5.map(str::to_string).unwrap_or_else(|| sh(&format!("md5sum {}", file.display()))[..32].to_string());
    let note = root.with_extension(format!("md5-{}", sha256_file(file)));
    std::fs::write(&note, format!("{digest}\n")).unwrap();
    common::http::serve_as(server, root, &format!("{url}.md5"), &note);
    common::http::serve_as(server, root, url, file)
}

#[test]
fn live_a_cos_kernel_builds_with_the_toolchain_published_beside_it_fetched_once_and_md5_checked() {
    let (r, work, server, root, mut args) = kernel_packer_loopback();
    let (toolchain, headers_tgz) = cos_toolchain_inputs(&r, work.path());
    // A: the kernel; B: the same toolchain and a source that is not a
    // tarball; C: a kernel-src whose published .md5 differs.
    let (a, b, c) = ("17162.210.40", "16623.341.40", "16623.461.40");
    let src_url = |build: &str| common::listed_url("cos.txt", &format!("{build}/kernel-src"));
    let origin = url::Url::parse(&src_url(a)).unwrap().origin().ascii_serialization();
    let toolchain_url = format!("{origin}/cos-sdk/2026/11/{}", toolchain.file_name().unwrap().to_string_lossy());
    let not_a_tarball = work.path().join("not-a-tarball.tar.gz");
    sh(&format!("echo 'not a tarball' | gzip > {}", not_a_tarball.display()));
    let notes = work.path().join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("toolchain_env"), "CC=x86_64-cros-linux-gnu-gcc\nCXX=x86_64-cros-linux-gnu-g++\n")
        .unwrap();
    std::fs::write(
        notes.join("toolchain.tar.xz.gcs"),
        format!("bucket: cos-sdk\npath: 2026/11/{}\n", toolchain.file_name().unwrap().to_string_lossy()),
    )
    .unwrap();
    for (build, src, md5) in
        [(a, &r.cos_src, None), (b, &not_a_tarball, None), (c, &r.cos_src, Some("0123456789abcdef0123456789abcdef"))]
    {
        args.extend(serve_with_md5(&server, &root, &src_url(build), src, md5));
        let headers_url = common::listed_url("cos.txt", &format!("{build}/kernel-headers"));
        args.extend(serve_with_md5(&server, &root, &headers_url, &headers_tgz, None));
        for note in ["toolchain_env", "toolchain.tar.xz.gcs"] {
            let url = src_url(build).replace("kernel-src.tar.gz", note);
            common::http::serve_as(&server, &root, &url, &notes.join(note));
        }
    }
    args.extend(serve_with_md5(&server, &root, &toolchain_url, &toolchain, None));
    let m = common::mirror::Mounted::start(&common::kernel_packer_fixtures().join("manifest.yml"), None, &args);
    let tree_version =
        sh(&format!("ls {}/cos/usr/src", r.cos_src.parent().unwrap().display())).trim().replace("linux-headers-", "");

    // A: prepared with the toolchain's compiler (the config names it, the
    // host has no compiler of that banner), a module builds against it.
    let a_root = m.path(&format!("cos/{a}"));
    assert_eq!(read(&a_root.join("BUNDLE_UNAME")), format!("{tree_version}+"), "{}", m.log());
    let config = read(&a_root.join(".config"));
    assert!(config.contains(&format!("CONFIG_CC_VERSION_TEXT=\"{COS_TOOLCHAIN_BANNER}\"")), "the toolchain's compiler");
    let vermagic = build_hello(&a_root, &work.path().join("hello-cos-toolchain"));
    assert!(vermagic.starts_with(&format!("{tree_version}+ ")), "{vermagic}");
    assert!(m.log().contains("the kernel's toolchain is"), "{}", m.log());
    let toolchain_gets = || server.log().iter().filter(|l| l.contains(".tar.xz ")).count();
    assert_eq!(toolchain_gets(), 1, "the toolchain is downloaded: {:?}", server.log());

    // B: the same toolchain is not downloaded again; the bad source is EIO.
    let err = std::fs::read(m.path(&format!("cos/{b}/BUNDLE_UNAME"))).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert_eq!(toolchain_gets(), 1, "the toolchain is downloaded once");
    assert!(m.log().contains(&format!("cos/{b}")), "{}", m.log());

    // C: an .md5 that differs is refused before anything is built.
    let err = std::fs::read(m.path(&format!("cos/{c}/BUNDLE_UNAME"))).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    let log = m.log();
    let line =
        log.lines().find(|l| l.contains(&format!("cos/{c}")) && l.contains(".md5")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("(refused)") && line.contains("0123456789abcdef"), "{line}");
    assert!(m.alive());
}
