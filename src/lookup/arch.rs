//! A bundle's architecture, from its package file names: the name a kernel
//! reports (`uname -m`), so `x86_64` and `aarch64`; Debian's names are
//! accepted as aliases.

use crate::manifest::BundleSpec;

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
