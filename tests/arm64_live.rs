//! Live arm64 (issue 10 item 3): real Debian arm64 bundles served beside
//! amd64, with their own names and BUNDLE_* values, and a hello-world
//! module cross-built through the mount and from an extracted .tgz
//! elsewhere (relocatable), with Debian's gcc-aarch64-linux-gnu. The
//! bundle's kbuild tools are arm64 programs: binfmt_misc hands them to
//! Debian's qemu-user-static, with an arm64 userland made from Debian's own
//! packages (bench/arm64_sysroot.sh) as QEMU_LD_PREFIX.

mod common;

use common::mirror::Mounted;
use common::{gnu_tar_extract, hello_module, read, repo, run_ok, tempdir};
use std::path::{Path, PathBuf};
use std::process::Command;

const BINFMT: &str = "/proc/sys/fs/binfmt_misc";
const QEMU_CONF: &str = "/usr/lib/binfmt.d/qemu-aarch64.conf";

/// binfmt_misc with Debian's qemu-aarch64 entry, set up for the test and
/// put back as it was afterwards.
struct Binfmt {
    mounted: bool,
    registered: bool,
}

impl Binfmt {
    fn ensure() -> Binfmt {
        let mut me = Binfmt { mounted: false, registered: false };
        if !Path::new(BINFMT).join("register").exists() {
            run_ok(Command::new("mount").args(["-t", "binfmt_misc", "binfmt_misc", BINFMT]));
            me.mounted = true;
        }
        if !Path::new(BINFMT).join("qemu-aarch64").exists() {
            // The entry Debian's qemu-user-static ships, as systemd-binfmt would load it.
            let conf = std::fs::read_to_string(QEMU_CONF).expect("qemu-user-static installed");
            std::fs::write(Path::new(BINFMT).join("register"), conf.trim()).unwrap();
            me.registered = true;
        }
        me
    }
}

impl Drop for Binfmt {
    fn drop(&mut self) {
        if self.registered {
            let _ = std::fs::write(Path::new(BINFMT).join("qemu-aarch64"), "-1");
        }
        if self.mounted {
            let _ = Command::new("umount").arg(BINFMT).status();
        }
    }
}

/// `make … modules` for arm64; returns the module's vermagic and ELF machine.
fn cross_build(bundle: &Path, module: &Path, sysroot: &Path) -> (String, u16) {
    let build_dir = read(&bundle.join("BUNDLE_BUILD_DIR"));
    hello_module(module);
    run_ok(
        Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(bundle.join(build_dir))
            .arg(format!("M={}", module.display()))
            .args(["ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-", "modules"])
            .env("QEMU_LD_PREFIX", sysroot),
    );
    let ko = module.join("hello.ko");
    let vermagic = run_ok(Command::new("modinfo").arg("-F").arg("vermagic").arg(&ko)).trim().to_string();
    let elf = std::fs::read(&ko).unwrap();
    (vermagic, u16::from_le_bytes([elf[18], elf[19]]))
}

const EM_AARCH64: u16 = 183;

#[test]
fn live_arm64_bundles_cross_build_a_module_with_the_right_vermagic() {
    let work = tempdir();
    let _binfmt = Binfmt::ensure();
    let sysroot = work.path().join("sysroot");
    run_ok(Command::new("bash").arg(repo().join("bench/arm64_sysroot.sh")).arg(&sysroot));
    let m = Mounted::start_default(&work.path().join("cache"), &[]);
    let names: Vec<String> = std::fs::read_dir(m.path("debian"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let newest = |suffix: &str, prefix: &str| -> String {
        let mut v: Vec<&String> =
            names.iter().filter(|n| n.starts_with(prefix) && n.ends_with(suffix) && !n.ends_with(".tgz")).collect();
        v.sort_by_key(|n| n.split(['.', '-', '+']).map(|x| x.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>());
        v.last().unwrap_or_else(|| panic!("no {prefix}*{suffix} in {names:?}")).to_string()
    };
    for name in [newest("-arm64", "6.1.0-"), newest("+deb12-arm64", "6.12.")] {
        let amd64 = name.replace("-arm64", "-amd64");
        assert!(names.contains(&amd64), "{name} sits beside {amd64}");
        let bundle = m.path(&format!("debian/{name}"));
        assert_eq!(read(&bundle.join("BUNDLE_UNAME")), name);
        assert_eq!(read(&bundle.join("BUNDLE_DISTRO")), "debian");
        assert_ne!(read(&bundle.join("BUNDLE_CHECKSUM")), read(&m.path(&format!("debian/{amd64}/BUNDLE_CHECKSUM"))));
        let build_dir = bundle.join(read(&bundle.join("BUNDLE_BUILD_DIR")));
        let fixdep = std::fs::read(build_dir.join("scripts/basic/fixdep")).unwrap();
        assert_eq!(u16::from_le_bytes([fixdep[18], fixdep[19]]), EM_AARCH64, "{name}'s kbuild tools are arm64");

        let (vermagic, machine) = cross_build(&bundle, &work.path().join(format!("hello-{name}")), &sysroot);
        assert!(vermagic.starts_with(&format!("{name} ")) && vermagic.contains("aarch64"), "{vermagic}");
        assert_eq!(machine, EM_AARCH64);

        // Relocatable: the .tgz, extracted anywhere, builds the same way.
        let elsewhere: PathBuf = work.path().join(format!("extracted-{name}"));
        gnu_tar_extract(&m.path(&format!("debian/{name}.tgz")), &elsewhere);
        let (vermagic2, _) = cross_build(&elsewhere, &work.path().join(format!("hello2-{name}")), &sysroot);
        assert_eq!(vermagic2, vermagic);
    }
}
