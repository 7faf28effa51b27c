//! Packages for tests: the real Debian headers of the current bookworm
//! kernel (downloaded once with apt-get, cached outside the repository), and
//! synthetic distribution packages made with the real tools (dpkg-deb,
//! rpmbuild) in each distribution's shape.

use super::run_ok;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where downloaded test packages are kept between runs.
pub fn test_cache() -> PathBuf {
    let dir = std::env::var_os("KPACKFS_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/kpackfs-tests"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Hold an exclusive lock on a file while `f` runs (tests run in parallel processes).
pub fn with_lock<T>(path: &Path, f: impl FnOnce() -> T) -> T {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).unwrap();
    // SAFETY: flock on a valid open descriptor.
    assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) }, 0);
    let out = f();
    drop(file);
    out
}

#[derive(Debug, Clone)]
pub struct AptPackage {
    pub name: String,
    pub path: PathBuf,
    /// The archive path (pool/…), as in Packages' Filename.
    pub filename: String,
    pub sha256: String,
    pub size: u64,
    /// "security" or "main": which archive apt takes it from.
    pub suite_base: &'static str,
}

#[derive(Debug, Clone)]
pub struct RealDebian {
    pub uname: String,
    pub packages: Vec<AptPackage>,
}

/// A key for the state of apt's package lists: resolution results are
/// cached under it (apt-cache costs about a second per call).
fn apt_lists_key() -> String {
    let mut newest = 0u64;
    let mut count = 0usize;
    if let Ok(dir) = std::fs::read_dir("/var/lib/apt/lists") {
        for e in dir.flatten() {
            count += 1;
            if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                newest = newest.max(m.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
            }
        }
    }
    format!("{newest}-{count}")
}

/// Resolve the current kernel's three packages: (uname, lines of
/// "archive-path size sha256 file-name"), archive-path starting at "debian/"
/// or "debian-security/" (the host is not kept).
fn resolve_current() -> (String, Vec<String>) {
    let deps = run_ok(Command::new("apt-cache").args(["depends", "linux-headers-amd64"]));
    let headers = deps
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .filter(|p| p.starts_with("linux-headers-"))
        .expect("linux-headers-amd64 depends on a headers package (run apt-get update?)")
        .trim()
        .to_string();
    let uname = headers.trim_start_matches("linux-headers-").to_string();
    let deps = run_ok(Command::new("apt-cache").args(["depends", &headers]));
    let mut names = vec![headers.clone()];
    for l in deps.lines() {
        if let Some(p) = l.trim().strip_prefix("Depends: ") {
            if p.ends_with("-common") || p.starts_with("linux-kbuild-") {
                names.push(p.trim().to_string());
            }
        }
    }
    assert_eq!(names.len(), 3, "expected headers, -common and kbuild: {names:?}");
    let uris = run_ok(Command::new("apt-get").args(["download", "--print-uris"]).args(&names));
    let lines = uris
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let uri = f[0].trim_matches('\'');
            let path = ["/debian-security/", "/debian/"]
                .iter()
                .find_map(|m| uri.find(m).map(|i| &uri[i + 1..]))
                .unwrap_or_else(|| panic!("unexpected archive URI layout: {uri}"));
            format!("{path} {} {} {}", f[2], f[3].trim_start_matches("SHA256:"), f[1])
        })
        .collect();
    (uname, lines)
}

/// The three packages of the current bookworm amd64 kernel headers
/// (linux-headers-<abi>-amd64, -common, linux-kbuild-<x.y>), as
/// `apt-cache depends linux-headers-amd64` names them.
pub fn real_debian() -> RealDebian {
    let cache = test_cache().join("debs");
    std::fs::create_dir_all(&cache).unwrap();
    with_lock(&test_cache().join("debs.lock"), || {
        let resolved = cache.join(format!("resolved-{}.txt", apt_lists_key()));
        let (uname, lines) = match std::fs::read_to_string(&resolved) {
            Ok(text) => {
                let mut it = text.lines().map(str::to_string);
                (it.next().unwrap_or_default(), it.collect())
            }
            Err(_) => {
                let (uname, lines) = resolve_current();
                std::fs::write(&resolved, format!("{uname}\n{}\n", lines.join("\n"))).unwrap();
                (uname, lines)
            }
        };
        let packages = lines
            .iter()
            .map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let (archive_path, size, sha256, file) = (f[0], f[1].parse::<u64>().unwrap(), f[2].to_string(), f[3]);
                let (base, filename) = archive_path.split_once('/').unwrap();
                let path = cache.join(file);
                if !(path.exists() && super::sha256_file(&path) == sha256) {
                    let name = file.split('_').next().unwrap();
                    run_ok(Command::new("apt-get").args(["download", "-q", name]).current_dir(&cache));
                    assert_eq!(super::sha256_file(&path), sha256, "downloaded {file} has the wrong sha256");
                }
                AptPackage {
                    name: file.split('_').next().unwrap().to_string(),
                    path,
                    filename: filename.to_string(),
                    sha256,
                    size,
                    suite_base: if base == "debian-security" { "security" } else { "main" },
                }
            })
            .collect();
        RealDebian { uname, packages }
    })
}

impl RealDebian {
    pub fn files(&self) -> Vec<PathBuf> {
        self.packages.iter().map(|p| p.path.clone()).collect()
    }

    /// Canonical URL of a package (as the shipped manifest records it).
    pub fn canonical_url(p: &AptPackage) -> String {
        let base = if p.suite_base == "security" {
            "http://security.debian.org/debian-security"
        } else {
            "http://ftp.debian.org/debian"
        };
        format!("{base}/{}", p.filename)
    }
}

/// A file-tree node for fixtures.
pub enum Node<'a> {
    File(&'a str),
    Exec(&'a str),
    Link(&'a str),
    Dir,
}

pub fn write_tree(root: &Path, nodes: &[(&str, Node<'_>)]) {
    for (path, node) in nodes {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        match node {
            Node::File(text) => std::fs::write(&p, text).unwrap(),
            Node::Exec(text) => {
                std::fs::write(&p, text).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            Node::Link(target) => std::os::unix::fs::symlink(target, &p).unwrap(),
            Node::Dir => std::fs::create_dir_all(&p).unwrap(),
        }
    }
}

/// `dpkg-deb --build` a staging tree; `compression` is dpkg-deb's -Z value.
pub fn dpkg_deb(
    work: &Path,
    name: &str,
    version: &str,
    arch: &str,
    compression: &str,
    nodes: &[(&str, Node<'_>)],
) -> PathBuf {
    dpkg_deb_depends(work, name, version, arch, compression, "", nodes)
}

/// As [`dpkg_deb`], with a Depends field when `depends` is not empty.
pub fn dpkg_deb_depends(
    work: &Path,
    name: &str,
    version: &str,
    arch: &str,
    compression: &str,
    depends: &str,
    nodes: &[(&str, Node<'_>)],
) -> PathBuf {
    let staging = work.join(format!("stage-{name}-{version}-{arch}"));
    let _ = std::fs::remove_dir_all(&staging);
    write_tree(&staging, nodes);
    std::fs::create_dir_all(staging.join("DEBIAN")).unwrap();
    let depends = if depends.is_empty() { String::new() } else { format!("Depends: {depends}\n") };
    std::fs::write(
        staging.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: kpackfs tests <tests@example.org>\n{depends}Description: test fixture\n"
        ),
    )
    .unwrap();
    let out = work.join(format!("{name}_{version}_{arch}.deb"));
    run_ok(
        Command::new("dpkg-deb")
            .arg(format!("-Z{compression}"))
            .arg("--root-owner-group")
            .arg("--build")
            .arg(&staging)
            .arg(&out),
    );
    out
}

/// `rpmbuild` a package holding `nodes`; `payload` is the _binary_payload
/// value (w9.xzdio, w19.zstdio, w9.gzdio, w9.bzdio, w0.ufdio).
pub fn rpmbuild(
    work: &Path,
    name: &str,
    version: &str,
    release: &str,
    arch: &str,
    payload: &str,
    nodes: &[(&str, Node<'_>)],
) -> PathBuf {
    let top = work.join(format!("rpm-{name}-{arch}"));
    let tree = top.join("tree");
    write_tree(&tree, nodes);
    let spec = top.join("pkg.spec");
    let top_dirs: std::collections::BTreeSet<String> =
        nodes.iter().map(|(p, _)| format!("/{}", p.split('/').take(3).collect::<Vec<_>>().join("/"))).collect();
    std::fs::write(
        &spec,
        format!(
            "Name: {name}\nVersion: {version}\nRelease: {release}\nSummary: test fixture\nLicense: GPL\nBuildArch: {arch}\n\
             %define debug_package %{{nil}}\n%define __os_install_post %{{nil}}\n%define _build_id_links none\n\
             %description\ntest fixture\n%install\nmkdir -p %{{buildroot}}\ncp -a {}/. %{{buildroot}}/\n%files\n{}\n",
            tree.display(),
            top_dirs.into_iter().collect::<Vec<_>>().join("\n")
        ),
    )
    .unwrap();
    run_ok(
        Command::new("rpmbuild")
            .arg("-bb")
            .arg("--quiet")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .arg("--define")
            .arg(format!("_binary_payload {payload}"))
            .arg("--target")
            .arg(arch)
            .arg(&spec),
    );
    let rpm = top.join("RPMS").join(arch).join(format!("{name}-{version}-{release}.{arch}.rpm"));
    assert!(rpm.exists(), "rpmbuild did not make {}", rpm.display());
    let out = work.join(rpm.file_name().unwrap());
    std::fs::rename(&rpm, &out).unwrap();
    out
}

/// A stand-in for a kernel's top Makefile: proves the tree builds from
/// wherever it lies, nested `make -C` included, without a compiler.
pub const MINI_KERNEL_MAKEFILE: &str = "\
srctree := $(realpath $(dir $(lastword $(MAKEFILE_LIST))))
modules:
\t@echo \"release=$$(cat include/config/kernel.release)\"
\t@echo \"srctree=$(srctree)\"
\t@cat $(srctree)/scripts/marker
\t@$(MAKE) --no-print-directory -C $(CURDIR) nested
nested:
\t@echo nested=ok
";

/// A synthetic kernel: its packages, type, expected name, uname and build dir.
pub struct Synthetic {
    pub kind: &'static str,
    pub files: Vec<PathBuf>,
    pub name: String,
    pub uname: String,
    pub build_dir: String,
}

/// Debian-shaped triple: linux-headers-<abi>-amd64 including the -common
/// Makefile by absolute path, -common, linux-kbuild-<x.y>.
pub fn synthetic_debian(work: &Path, compressions: [&str; 3]) -> Synthetic {
    synthetic_debian_abi(work, "9.9.0-1", compressions)
}

/// [`synthetic_debian`] for another ABI (e.g. "9.9.0-2"), with Debian's Depends.
pub fn synthetic_debian_abi(work: &Path, abi: &str, compressions: [&str; 3]) -> Synthetic {
    synthetic_debian_arch(work, abi, "amd64", compressions)
}

/// [`synthetic_debian_abi`] for an architecture (`amd64`, `arm64`): the
/// flavour and kbuild packages are `_<arch>.deb`, the common one `_all.deb`.
pub fn synthetic_debian_arch(work: &Path, abi: &str, arch: &str, compressions: [&str; 3]) -> Synthetic {
    let uname = format!("{abi}-{arch}");
    let version = format!("{abi}.1");
    let flavour_dir = format!("usr/src/linux-headers-{uname}");
    let common_dir = format!("usr/src/linux-headers-{abi}-common");
    let include = format!("include /usr/src/linux-headers-{abi}-common/Makefile\n");
    let build_link = format!("/usr/src/linux-headers-{uname}");
    let source_link = format!("/usr/src/linux-headers-{abi}-common");
    let depends = format!(
        "linux-headers-{abi}-common (= {version}), linux-kbuild-9.9, linux-image-{uname} (= {version}) | linux-image-{uname}-unsigned, gcc-12"
    );
    let flavour = dpkg_deb_depends(
        work,
        &format!("linux-headers-{uname}"),
        &version,
        arch,
        compressions[0],
        &depends,
        &[
            (&format!("{flavour_dir}/Makefile"), Node::File(&include)),
            (&format!("{flavour_dir}/.config"), Node::File("CONFIG_X86=y\n")),
            (&format!("{flavour_dir}/include/config/kernel.release"), Node::File(&format!("{uname}\n"))),
            (&format!("{flavour_dir}/scripts"), Node::Link("../../lib/linux-kbuild-9.9/scripts")),
            (&format!("lib/modules/{uname}/build"), Node::Link(&build_link)),
            (&format!("lib/modules/{uname}/source"), Node::Link(&source_link)),
        ],
    );
    let common = dpkg_deb(
        work,
        &format!("linux-headers-{abi}-common"),
        &version,
        "all",
        compressions[1],
        &[
            (&format!("{common_dir}/Makefile"), Node::File(MINI_KERNEL_MAKEFILE)),
            (&format!("{common_dir}/include/linux/module.h"), Node::File("/* module.h */\n")),
            (&format!("{common_dir}/scripts"), Node::Link("../../lib/linux-kbuild-9.9/scripts")),
        ],
    );
    let kbuild = dpkg_deb(
        work,
        "linux-kbuild-9.9",
        &version,
        arch,
        compressions[2],
        &[
            ("usr/lib/linux-kbuild-9.9/scripts/marker", Node::File("marker=kbuild\n")),
            ("usr/lib/linux-kbuild-9.9/scripts/basic/fixdep", Node::Exec("#!/bin/sh\n")),
            ("usr/src/linux-kbuild-9.9", Node::Link("../lib/linux-kbuild-9.9")),
        ],
    );
    Synthetic {
        kind: "debian",
        files: vec![flavour, common, kbuild],
        name: uname.clone(),
        uname: uname.clone(),
        build_dir: format!("./{flavour_dir}"),
    }
}

/// Ubuntu-shaped pair: linux-headers-<abi>-generic linking into linux-headers-<abi>.
pub fn synthetic_ubuntu(work: &Path, compression: &str) -> Synthetic {
    synthetic_ubuntu_flavour(work, &UbuntuKernel::default(), compression)
}

/// What an Ubuntu kernel is named after: the ABI (`6.8.0-40`), the
/// flavour, the version (a backport carries `~XX.YY.N`), the architecture,
/// and the headers package its flavour depends on (`linux-headers-<abi>`,
/// or `linux-<source>-headers-<abi>` for flavours of another source).
#[derive(Debug, Clone)]
pub struct UbuntuKernel {
    pub abi: String,
    pub flavour: String,
    pub version: String,
    pub arch: String,
    pub common: String,
}

impl Default for UbuntuKernel {
    fn default() -> Self {
        UbuntuKernel::new("9.9.0-101", "generic", "9.9.0-101.111~20.04.1", "amd64", "linux-headers-9.9.0-101")
    }
}

impl UbuntuKernel {
    pub fn new(abi: &str, flavour: &str, version: &str, arch: &str, common: &str) -> UbuntuKernel {
        UbuntuKernel {
            abi: abi.into(),
            flavour: flavour.into(),
            version: version.into(),
            arch: arch.into(),
            common: common.into(),
        }
    }

    pub fn uname(&self) -> String {
        format!("{}-{}", self.abi, self.flavour)
    }
}

/// An Ubuntu kernel's two packages, shaped as Ubuntu ships them: the
/// flavour's `usr/src/linux-headers-<uname>` linking into the common
/// package's directory (named after the common package).
pub fn synthetic_ubuntu_flavour(work: &Path, k: &UbuntuKernel, compression: &str) -> Synthetic {
    let uname = k.uname();
    let common_dir_name = k.common.clone();
    let f = format!("usr/src/linux-headers-{uname}");
    let c = format!("usr/src/{common_dir_name}");
    let signature = format!("CONFIG_VERSION_SIGNATURE=\"Ubuntu {}-{} 9.9.9\"\n", k.version, k.flavour);
    let flavour = dpkg_deb_depends(
        work,
        &format!("linux-headers-{uname}"),
        &k.version,
        &k.arch,
        compression,
        &format!("{}, libc6 (>= 2.34)", k.common),
        &[
            (&format!("{f}/Makefile"), Node::Link(&format!("../{common_dir_name}/Makefile"))),
            (&format!("{f}/arch"), Node::Link(&format!("../{common_dir_name}/arch"))),
            (&format!("{f}/include/linux"), Node::Link(&format!("../../{common_dir_name}/include/linux"))),
            (&format!("{f}/include/config/kernel.release"), Node::File(&format!("{uname}\n"))),
            (&format!("{f}/.config"), Node::File(&signature)),
            (&format!("{f}/scripts/marker"), Node::File(&format!("marker=ubuntu-{}\n", k.arch))),
            (&format!("{f}/scripts/dtc"), Node::Link(&format!("../../{common_dir_name}/scripts/dtc"))),
            (&format!("{f}/rust"), Node::Link(&format!("../{common_dir_name}/rust"))),
            (&format!("{f}/tools"), Node::Link("../nowhere/tools")),
        ],
    );
    let common = dpkg_deb(
        work,
        &k.common,
        &k.version,
        "all",
        compression,
        &[
            (&format!("{c}/Makefile"), Node::File(MINI_KERNEL_MAKEFILE)),
            (&format!("{c}/arch/x86/Makefile"), Node::File("# arch\n")),
            (&format!("{c}/arch/x86/include/asm/current.h"), Node::File("/* asm */\n")),
            (&format!("{c}/include/linux/module.h"), Node::File("/* module.h */\n")),
            (&format!("{c}/include/linux/compiler.h"), Node::Link("module.h")),
            (&format!("{c}/scripts/dtc/dtc.c"), Node::File("/* dtc */\n")),
            (&format!("{c}/rust/Makefile"), Node::File("# rust\n")),
        ],
    );
    let series = k.version.split('~').nth(1).map(|s| s.split('.').take(2).collect::<Vec<_>>().join("."));
    let arch = if k.arch == "amd64" { String::new() } else { format!("-{}", k.arch) };
    Synthetic {
        kind: "ubuntu",
        files: vec![flavour, common],
        name: format!("{uname}{arch}{}", series.map(|s| format!("~{s}")).unwrap_or_default()),
        uname,
        build_dir: ".".into(),
    }
}

/// A RHEL-family kernel-devel RPM (`oracle`: kernel-uek-devel with the parts
/// kernel-packer drops for Oracle).
pub fn synthetic_rhel(work: &Path, kind: &'static str, payload: &str) -> Synthetic {
    let (name, release) = if kind == "oracle" { ("kernel-uek-devel", "1.el9uek") } else { ("kernel-devel", "1.el9") };
    let uname = format!("9.9.0-{release}.x86_64");
    let d = format!("usr/src/kernels/{uname}");
    let rpm = rpmbuild(
        work,
        name,
        "9.9.0",
        release,
        "x86_64",
        payload,
        &[
            (&format!("{d}/Makefile"), Node::File(MINI_KERNEL_MAKEFILE)),
            (&format!("{d}/include/config/kernel.release"), Node::File(&format!("{uname}\n"))),
            (&format!("{d}/scripts/marker"), Node::File("marker=rpm\n")),
            (&format!("{d}/scripts/mod/devicetable-offsets.c"), Node::File("/* kept */\n")),
            (&format!("{d}/scripts/dtc/dtc.c"), Node::File("/* dtc */\n")),
            (&format!("{d}/drivers/foo/bar.c"), Node::File("/* a .c outside scripts */\n")),
            (&format!("{d}/arch/x86/include/asm/current.h"), Node::File("/* asm */\n")),
            (&format!("{d}/include/asm"), Node::Link("../arch/x86/include/asm")),
            (&format!("{d}/source"), Node::Link("/usr/src/debug/kernel-9.9.0/linux")),
        ],
    );
    Synthetic { kind, files: vec![rpm], name: uname.clone(), uname, build_dir: ".".into() }
}

/// The SUSE pair: kernel-devel (noarch base tree) and kernel-default-devel
/// (the -obj/x86_64/default tree).
pub fn synthetic_suse(work: &Path, payload: &str) -> Synthetic {
    let base = "usr/src/linux-9.9.0-150500.1";
    let obj = "usr/src/linux-9.9.0-150500.1-obj/x86_64/default";
    let uname = "9.9.0-150500.1-default".to_string();
    let devel = rpmbuild(
        work,
        "kernel-devel",
        "9.9.0",
        "150500.1.1",
        "noarch",
        payload,
        &[
            (&format!("{base}/Makefile"), Node::File(MINI_KERNEL_MAKEFILE)),
            (&format!("{base}/include/linux/module.h"), Node::File("/* module.h */\n")),
            (&format!("{base}/scripts/marker"), Node::File("marker=suse\n")),
            (&format!("{base}/arch/x86/Makefile"), Node::File("# arch\n")),
        ],
    );
    let flavour = rpmbuild(
        work,
        "kernel-default-devel",
        "9.9.0",
        "150500.1.1",
        "x86_64",
        payload,
        &[
            (
                &format!("{obj}/Makefile"),
                Node::File("# the obj Makefile, replaced by the base one\ninclude /nonexistent\n"),
            ),
            (&format!("{obj}/.config"), Node::File("CONFIG_X86=y\n")),
            (&format!("{obj}/Module.symvers"), Node::File("0x0\tsym\tvmlinux\tEXPORT_SYMBOL\t\n")),
            (&format!("{obj}/include/config/kernel.release"), Node::File("9.9.0-150500.1-default\n")),
            (&format!("{obj}/source"), Node::Link("../../../linux-9.9.0-150500.1")),
        ],
    );
    Synthetic { kind: "suse", files: vec![devel, flavour], name: uname.clone(), uname, build_dir: ".".into() }
}

/// Debian's own kernel source at the version of `deb`'s headers
/// (`linux-source-X.Y`, a .deb holding the tarball), downloaded once.
pub fn real_debian_source(deb: &RealDebian) -> PathBuf {
    let headers = deb.packages.iter().find(|p| p.name == format!("linux-headers-{}", deb.uname)).expect("the headers");
    let file = headers.path.file_name().unwrap().to_string_lossy().into_owned();
    let version = file.split('_').nth(1).expect("a versioned file name").to_string();
    let series: String = deb.uname.split('.').take(2).collect::<Vec<_>>().join(".");
    let name = format!("linux-source-{series}");
    let cache = test_cache().join("debs");
    with_lock(&test_cache().join("debs.lock"), || {
        let path = cache.join(format!("{name}_{version}_all.deb"));
        if !path.exists() {
            run_ok(Command::new("apt-get").args(["download", "-q", &format!("{name}={version}")]).current_dir(&cache));
        }
        assert!(path.exists(), "apt-get download {name}={version} made {}", path.display());
        path
    })
}
