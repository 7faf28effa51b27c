//! What of a kernel source tree a source bundle reads and keeps.
//!
//! In: what `make olddefconfig modules_prepare` reads — every Kconfig and
//! Makefile (Kconfig sources them across the tree), headers (host programs
//! such as `scripts/selinux` include them from beside their users), the
//! target architecture, `scripts/`, `include/`, the parts of `tools/` that
//! objtool and resolve_btfids build from, and `kernel/bounds.c`. Not the
//! ~80% of a tarball that is drivers', filesystems' and other arches' C.
//!
//! Out: what out-of-tree module builds read — no `*.c` outside `scripts/`,
//! no objects, no `.cmd` files, and headers only where module builds look.

/// Top-level directories of a kernel tree, to tell a flat tarball (COS)
/// from one with a `linux-x.y.z/` prefix.
pub const TOP_LEVEL: &[&str] = &[
    "arch",
    "block",
    "certs",
    "crypto",
    "Documentation",
    "drivers",
    "fs",
    "include",
    "init",
    "io_uring",
    "ipc",
    "kernel",
    "lib",
    "LICENSES",
    "mm",
    "net",
    "rust",
    "samples",
    "scripts",
    "security",
    "sound",
    "tools",
    "usr",
    "virt",
    "Makefile",
    "Kconfig",
    "Kbuild",
    "COPYING",
    "CREDITS",
    "MAINTAINERS",
    "README",
    "firmware",
];

const TOOLS_KEPT: &[&str] = &["arch", "build", "include", "lib", "objtool", "scripts", "bpf"];

fn build_file(name: &str) -> bool {
    name.starts_with("Kconfig") || name.starts_with("Makefile") || name.starts_with("Kbuild") || name.ends_with(".mk")
}

/// Whether a source entry (relative to the tree's root) is extracted for
/// preparing `srcarch` (`x86`, `arm64`).
pub fn wanted_input(path: &str, srcarch: &str) -> bool {
    let mut parts = path.split('/');
    let top = parts.next().unwrap_or("");
    let Some(second) = parts.next() else { return true }; // top-level files and dirs
    let name = path.rsplit('/').next().unwrap_or("");
    if name.starts_with("Kconfig") {
        return true; // Kconfig sources them from across the tree, all arches' too
    }
    match top {
        "Documentation" | "samples" | "LICENSES" => false,
        "scripts" | "include" | "certs" | "usr" => true,
        "arch" => {
            let top_file = parts.next().is_none();
            top_file || (second == srcarch && !path.starts_with(&format!("arch/{srcarch}/boot/dts/")))
        }
        "tools" => TOOLS_KEPT.contains(&second) || parts.next().is_none(),
        "kernel" => !name.ends_with(".c") || path == "kernel/bounds.c",
        _ => build_file(name) || name.ends_with(".h"),
    }
}

/// Whether a prepared tree's entry goes into the bundle.
pub fn kept_output(path: &str, srcarch: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or("");
    let top = path.split('/').next().unwrap_or("");
    let built = [".o", ".a", ".cmd", ".d", ".mod.c", ".tmp"].iter().any(|s| name.ends_with(s));
    if built {
        return false;
    }
    if name.ends_with(".c") {
        return top == "scripts";
    }
    match top {
        "include" | "scripts" | "usr" => true,
        "arch" => path.starts_with(&format!("arch/{srcarch}/")) || !path["arch/".len().min(path.len())..].contains('/'),
        // The build tools module builds run, and their makefiles.
        "tools" => {
            path == "tools/objtool/objtool"
                || path == "tools/bpf/resolve_btfids/resolve_btfids"
                || build_file(name)
                || !path.contains('/')
        }
        _ => !path.contains('/') || build_file(name) || name == "Module.symvers",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_input_is_what_preparing_reads_and_not_the_rest() {
        for kept in [
            "Makefile",
            "Kconfig",
            "scripts/mod/modpost.c",
            "include/linux/module.h",
            "arch/x86/kernel/asm-offsets.c",
            "arch/x86/entry/syscalls/syscall_64.tbl",
            "drivers/Kconfig",
            "drivers/net/Makefile",
            "security/selinux/include/classmap.h",
            "tools/objtool/check.c",
            "tools/lib/subcmd/pager.c",
            "kernel/bounds.c",
            "kernel/time/timeconst.bc",
            "arch/Kconfig",
            "arch/arm/crypto/Kconfig",
            "samples/Kconfig",
        ] {
            assert!(wanted_input(kept, "x86"), "{kept} is needed");
        }
        for dropped in [
            "drivers/net/ethernet/intel/e1000/e1000_main.c",
            "fs/ext4/inode.c",
            "Documentation/index.rst",
            "arch/arm64/kernel/setup.c",
            "arch/x86/boot/dts/ce4100.dts",
            "tools/perf/builtin-top.c",
            "kernel/sched/core.c",
        ] {
            assert!(!wanted_input(dropped, "x86"), "{dropped} is not needed");
        }
    }

    #[test]
    fn the_bundle_keeps_what_module_builds_read() {
        for kept in [
            "Makefile",
            ".config",
            "Module.symvers",
            "include/generated/autoconf.h",
            "include/config/auto.conf",
            "scripts/mod/modpost",
            "scripts/mod/modpost.c",
            "arch/x86/include/asm/page.h",
            "arch/x86/Makefile",
            "tools/objtool/objtool",
            "drivers/net/Makefile",
        ] {
            assert!(kept_output(kept, "x86"), "{kept} is kept");
        }
        for dropped in [
            "scripts/mod/modpost.o",
            "scripts/mod/.modpost.o.cmd",
            "arch/x86/kernel/asm-offsets.c",
            "kernel/bounds.c",
            "tools/objtool/check.c",
            "tools/objtool/libsubcmd.a",
            "drivers/net/ethernet/intel/e1000/e1000.h",
        ] {
            assert!(!kept_output(dropped, "x86"), "{dropped} is dropped");
        }
    }
}
