//! The BUNDLE_* files kernel-packer writes at a bundle's root, with its values
//! and no trailing newline.

use regex::Regex;
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub checksum: String,
    pub distro: String,
    pub uname: String,
    pub build_dir: String,
}

impl Meta {
    /// Read back from a bundle tree's root BUNDLE_* files.
    pub fn from_tree(tree: &super::BundleTree) -> Option<Meta> {
        let value = |name: &str| {
            tree.items.iter().find(|i| i.path == name).and_then(|i| match &i.kind {
                super::ItemKind::File(blob) => Some(String::from_utf8_lossy(blob).trim().to_string()),
                _ => None,
            })
        };
        Some(Meta {
            checksum: value("BUNDLE_CHECKSUM")?,
            distro: value("BUNDLE_DISTRO")?,
            uname: value("BUNDLE_UNAME")?,
            build_dir: value("BUNDLE_BUILD_DIR")?,
        })
    }

    /// The seven files, in name order.
    pub fn files(&self) -> Vec<(&'static str, String)> {
        let (version, major, minor) = version_parts(&self.uname);
        vec![
            ("BUNDLE_BUILD_DIR", self.build_dir.clone()),
            ("BUNDLE_CHECKSUM", self.checksum.clone()),
            ("BUNDLE_DISTRO", self.distro.clone()),
            ("BUNDLE_MAJOR", major),
            ("BUNDLE_MINOR", minor),
            ("BUNDLE_UNAME", self.uname.clone()),
            ("BUNDLE_VERSION", version),
        ]
    }
}

/// kernel-packer's `sed` expressions: each replaces the whole uname with the
/// captured number, and leaves the uname as it is when it does not match.
fn version_parts(uname: &str) -> (String, String, String) {
    static V: OnceLock<Regex> = OnceLock::new();
    static MAJ: OnceLock<Regex> = OnceLock::new();
    static MIN: OnceLock<Regex> = OnceLock::new();
    let v = V.get_or_init(|| Regex::new(r"^([0-9]+)").expect("static regex"));
    let maj = MAJ.get_or_init(|| Regex::new(r"^([0-9]+)\.([0-9]+)").expect("static regex"));
    let min = MIN.get_or_init(|| Regex::new(r"^([0-9]+)\.([0-9]+)\.([0-9]+)").expect("static regex"));
    let grab = |re: &Regex, group: usize| re.captures(uname).map_or(uname.to_string(), |c| c[group].to_string());
    (grab(v, 1), grab(maj, 2), grab(min, 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_packer_values() {
        assert_eq!(version_parts("6.1.0-56-amd64"), ("6".into(), "1".into(), "0".into()));
        assert_eq!(version_parts("5.14.21-150400.24.84-default"), ("5".into(), "14".into(), "21".into()));
        // No third number: sed leaves the whole string.
        assert_eq!(version_parts("4.19-custom").2, "4.19-custom");
    }
}
