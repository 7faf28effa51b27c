//! Layouts against synthetic packages made by the real tools (dpkg-deb,
//! rpmbuild) in each distribution's shape: the tree, every BUNDLE_* value,
//! and relocatability (the bundle builds with plain `make -C` after a move).

mod common;

use common::pkgs::{self, Synthetic};
use common::{gnu_tar_extract, kpackfs, read, run_ok, tempdir};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Build the bundle with the CLI, extract it with GNU tar, then move it.
fn bundle_and_move(work: &Path, fx: &Synthetic) -> PathBuf {
    let tgz = work.join("bundle.tgz");
    let mut cmd = kpackfs();
    cmd.args(["bundle", "--type", fx.kind, "-o"]).arg(&tgz).args(&fx.files);
    run_ok(&mut cmd);
    let first = work.join("extracted");
    gnu_tar_extract(&tgz, &first);
    let moved = work.join("elsewhere/deeper/bundle");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(&first, &moved).unwrap();
    moved
}

fn expected_checksum(files: &[PathBuf]) -> String {
    kpackfs::manifest::bundle_id(files.iter().map(|f| f.file_name().unwrap().to_str().unwrap()))
}

fn check_meta(root: &Path, fx: &Synthetic) {
    let uname_parts: Vec<&str> = fx.uname.splitn(3, ['.', '-']).collect();
    let expect = [
        ("BUNDLE_BUILD_DIR", fx.build_dir.clone()),
        ("BUNDLE_CHECKSUM", expected_checksum(&fx.files)),
        ("BUNDLE_DISTRO", fx.kind.to_string()),
        ("BUNDLE_UNAME", fx.uname.clone()),
        ("BUNDLE_VERSION", uname_parts[0].to_string()),
        ("BUNDLE_MAJOR", uname_parts[1].to_string()),
        ("BUNDLE_MINOR", "0".to_string()),
    ];
    for (file, value) in expect {
        assert_eq!(read(&root.join(file)), value, "{file} (no trailing newline)");
    }
}

/// Run the plain make line from the moved bundle and check the mini kernel
/// Makefile ran from the new place, nested make included.
fn check_relocatable(root: &Path, fx: &Synthetic, marker: &str) -> String {
    let module = root.parent().unwrap().join("module");
    std::fs::create_dir_all(&module).unwrap();
    let build_dir = root.join(read(&root.join("BUNDLE_BUILD_DIR")));
    let out = run_ok(Command::new("make").arg("-C").arg(&build_dir).arg(format!("M={}", module.display())));
    assert!(out.contains(&format!("release={}", fx.uname)), "{out}");
    assert!(out.contains(&format!("marker={marker}")), "{out}");
    assert!(out.contains("nested=ok"), "{out}");
    let srctree = out.lines().find_map(|l| l.strip_prefix("srctree=")).expect("srctree line");
    assert!(srctree.starts_with(root.to_str().unwrap()), "the build used {srctree}, outside the moved bundle");
    out
}

fn is_symlink(p: &Path) -> bool {
    p.symlink_metadata().map(|m| m.file_type().is_symlink()).unwrap_or(false)
}

#[test]
fn debian_triple_with_each_deb_compression() {
    for compressions in [["xz", "zstd", "gzip"], ["none", "xz", "zstd"]] {
        let work = tempdir();
        let fx = pkgs::synthetic_debian(work.path(), compressions);
        let root = bundle_and_move(work.path(), &fx);
        check_meta(&root, &fx);
        let flavour = root.join("usr/src/linux-headers-9.9.0-1-amd64");
        assert_eq!(read(&flavour.join("Makefile")), "include ../linux-headers-9.9.0-1-common/Makefile\n");
        let build = root.join("lib/modules/9.9.0-1-amd64/build");
        assert!(is_symlink(&build));
        assert_eq!(
            std::fs::read_link(&build).unwrap().to_str().unwrap(),
            "../../../usr/src/linux-headers-9.9.0-1-amd64"
        );
        assert_eq!(
            std::fs::read_link(flavour.join("scripts")).unwrap().to_str().unwrap(),
            "../../lib/linux-kbuild-9.9/scripts"
        );
        check_relocatable(&root, &fx, "kbuild");
    }
}

#[test]
fn deb_with_bzip2_data_member() {
    let work = tempdir();
    let stage = work.path().join("stage");
    pkgs::write_tree(
        &stage,
        &[
            ("usr/src/linux-headers-9.9.0-2-amd64/Makefile", pkgs::Node::File(pkgs::MINI_KERNEL_MAKEFILE)),
            ("usr/src/linux-headers-9.9.0-2-amd64/include/config/kernel.release", pkgs::Node::File("9.9.0-2-amd64\n")),
            ("usr/src/linux-headers-9.9.0-2-amd64/scripts/marker", pkgs::Node::File("marker=bz2\n")),
        ],
    );
    // dpkg-deb cannot write bzip2 members; assemble the .deb by hand.
    common::sh(&format!(
        "cd {w} && echo 2.0 > debian-binary && tar -C stage -cjf data.tar.bz2 ./usr \
         && mkdir -p ctl && printf 'Package: x\\n' > ctl/control && tar -C ctl -czf control.tar.gz ./control \
         && ar rc linux-headers-9.9.0-2-amd64_9.9.0-2_amd64.deb debian-binary control.tar.gz data.tar.bz2",
        w = work.path().display()
    ));
    let fx = Synthetic {
        kind: "debian",
        files: vec![work.path().join("linux-headers-9.9.0-2-amd64_9.9.0-2_amd64.deb")],
        name: "9.9.0-2-amd64".into(),
        uname: "9.9.0-2-amd64".into(),
        build_dir: "./usr/src/linux-headers-9.9.0-2-amd64".into(),
    };
    let root = bundle_and_move(work.path(), &fx);
    check_meta(&root, &fx);
    check_relocatable(&root, &fx, "bz2");
}

#[test]
fn ubuntu_pair_dereferences_common_headers() {
    for compression in ["xz", "zstd"] {
        let work = tempdir();
        let fx = pkgs::synthetic_ubuntu(work.path(), compression);
        let root = bundle_and_move(work.path(), &fx);
        check_meta(&root, &fx);
        // Links into the common package are replaced by what they point to.
        for file in ["Makefile", "arch/x86/Makefile", "arch/x86/include/asm/current.h", "include/linux/module.h"] {
            let p = root.join(file);
            assert!(p.is_file() && !is_symlink(&p), "{file} should be a regular file");
        }
        assert!(!root.join("scripts/dtc").exists(), "scripts/dtc is left out");
        assert!(!root.join("rust").exists(), "rust is left out");
        assert!(root.join("tools").symlink_metadata().is_err(), "a dangling link is dropped");
        check_relocatable(&root, &fx, "ubuntu");
        // The name collector looks up carries the backport suffix.
        let names: Vec<&str> = fx.files.iter().map(|f| f.file_name().unwrap().to_str().unwrap()).collect();
        let derived = kpackfs::manifest::derive_names("ubuntu", &names).unwrap();
        assert_eq!((derived.name.as_str(), derived.uname.as_str()), (fx.name.as_str(), fx.uname.as_str()));
    }
}

#[test]
fn redhat_kernel_devel_with_each_payload() {
    for payload in ["w9.xzdio", "w19.zstdio", "w9.gzdio", "w9.bzdio", "w0.ufdio"] {
        let work = tempdir();
        let fx = pkgs::synthetic_rhel(work.path(), "redhat", payload);
        let root = bundle_and_move(work.path(), &fx);
        check_meta(&root, &fx);
        assert_eq!(std::fs::read_link(root.join("include/asm")).unwrap().to_str().unwrap(), "../arch/x86/include/asm");
        assert!(root.join("source").symlink_metadata().is_err(), "a link out of the package is dropped");
        assert!(root.join("drivers/foo/bar.c").is_file(), "redhat keeps sources");
        check_relocatable(&root, &fx, "rpm");
    }
}

#[test]
fn oracle_drops_what_kernel_packer_dropped() {
    let work = tempdir();
    let fx = pkgs::synthetic_rhel(work.path(), "oracle", "w9.xzdio");
    let root = bundle_and_move(work.path(), &fx);
    check_meta(&root, &fx);
    assert!(!root.join("drivers/foo/bar.c").exists());
    assert!(!root.join("scripts/dtc").exists());
    assert!(root.join("scripts/mod/devicetable-offsets.c").is_file());
    check_relocatable(&root, &fx, "rpm");
}

#[test]
fn suse_merges_obj_and_base_trees() {
    for payload in ["w19.zstdio", "w9.xzdio"] {
        let work = tempdir();
        let fx = pkgs::synthetic_suse(work.path(), payload);
        let root = bundle_and_move(work.path(), &fx);
        check_meta(&root, &fx);
        assert_eq!(read(&root.join("Makefile")), pkgs::MINI_KERNEL_MAKEFILE, "the base Makefile replaces the obj one");
        for file in [".config", "Module.symvers", "include/linux/module.h", "arch/x86/Makefile"] {
            assert!(root.join(file).is_file(), "{file} from the merge");
        }
        assert!(root.join("source").symlink_metadata().is_err(), "the link back to the base tree would loop");
        check_relocatable(&root, &fx, "suse");
    }
}
