//! A bundle's architecture, from its package file names: the name a kernel
//! reports (`uname -m`), so `x86_64` and `aarch64`; Debian's names are
//! accepted as aliases.

use super::BundleSpec;

/// `uname -m` for a package architecture (Debian's or RPM's).
pub fn canonical(arch: &str) -> &str {
    match arch {
        "amd64" | "x86_64" => "x86_64",
        "arm64" | "aarch64" => "aarch64",
        "i386" | "i686" | "i586" => "i686",
        "armhf" | "armv7hl" => "armv7l",
        "ppc64el" | "ppc64le" => "ppc64le",
        other => other,
    }
}

/// The architecture of a package file name, if it names one other than
/// "all"/"noarch".
fn of_file(file: &str) -> Option<&str> {
    let arch = if let Some(stem) = file.strip_suffix(".deb") {
        stem.rsplit('_').next()?
    } else if let Some(stem) = file.strip_suffix(".rpm") {
        stem.rsplit('.').next()?
    } else {
        return None;
    };
    (!matches!(arch, "all" | "noarch" | "src")).then_some(arch)
}

/// The bundle's architecture: the first package that names one.
pub fn of(spec: &BundleSpec) -> Option<&str> {
    spec.packages.iter().find_map(|p| of_file(p.file_name())).map(canonical)
}

/// This machine's architecture, as `uname -m` says it.
pub fn this_machine() -> &'static str {
    canonical(std::env::consts::ARCH)
}

/// Of several bundles for one release (Ubuntu's releases do not carry the
/// architecture), those of this machine's architecture, or all of them
/// when none is.
pub fn prefer_this_machine(index: &super::index::Index, found: Vec<u32>) -> Vec<u32> {
    if found.len() < 2 {
        return found;
    }
    let here = this_machine();
    let ours: Vec<u32> = found
        .iter()
        .copied()
        .filter(|s| index.entry(*s).is_some_and(|(_, spec, _)| of(&spec).is_none_or(|a| a == here)))
        .collect();
    if ours.is_empty() {
        found
    } else {
        ours
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Package;

    fn spec(files: &[&str]) -> BundleSpec {
        BundleSpec {
            kind: "debian".into(),
            name: None,
            uname: None,
            signed_by: None,
            packages: files.iter().map(|f| Package::new(format!("http://x/{f}"))).collect(),
        }
    }

    #[test]
    fn architectures_from_package_files() {
        let deb = spec(&["linux-headers-6.1.0-56-common_6.1.192-2_all.deb", "linux-kbuild-6.1_6.1.192-2_arm64.deb"]);
        assert_eq!(of(&deb), Some("aarch64"));
        assert_eq!(of(&spec(&["kernel-devel-5.14.0-427.el9.x86_64.rpm"])), Some("x86_64"));
        assert_eq!(of(&spec(&["kernel-devel-5.14.21-150400.24.84.1.noarch.rpm"])), None);
        assert_eq!(of(&spec(&["kernel-src.tar.gz"])), None);
        assert_eq!(canonical("amd64"), canonical("x86_64"));
    }
}
