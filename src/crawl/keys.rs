//! The signing keys of the shipped sources (`kernel-package-lists/keys/`,
//! whose README says where each came from), compiled in: every shipped
//! source can be checked on any host, whatever keyrings it has.
//!
//! gpgv reads keyrings from files, so a key in use is written once into a
//! directory of kpackfs's own (`<cache>/crawl/keys/`).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// (file name, contents) of every shipped key.
pub const SHIPPED: &[(&str, &[u8])] = &[
    ("RPM-GPG-KEY-AlmaLinux-9", include_bytes!("../../kernel-package-lists/keys/RPM-GPG-KEY-AlmaLinux-9")),
    ("RPM-GPG-KEY-CentOS-Official", include_bytes!("../../kernel-package-lists/keys/RPM-GPG-KEY-CentOS-Official")),
    ("RPM-GPG-KEY-Rocky-9", include_bytes!("../../kernel-package-lists/keys/RPM-GPG-KEY-Rocky-9")),
    ("RPM-GPG-KEY-amazon-linux-2", include_bytes!("../../kernel-package-lists/keys/RPM-GPG-KEY-amazon-linux-2")),
    ("RPM-GPG-KEY-amazon-linux-2023", include_bytes!("../../kernel-package-lists/keys/RPM-GPG-KEY-amazon-linux-2023")),
    ("RPM-GPG-KEY-fedora-42-primary", include_bytes!("../../kernel-package-lists/keys/RPM-GPG-KEY-fedora-42-primary")),
    ("RPM-GPG-KEY-openSUSE", include_bytes!("../../kernel-package-lists/keys/RPM-GPG-KEY-openSUSE")),
    ("RPM-GPG-KEY-oracle-ol8", include_bytes!("../../kernel-package-lists/keys/RPM-GPG-KEY-oracle-ol8")),
    ("RPM-GPG-KEY-oracle-ol9", include_bytes!("../../kernel-package-lists/keys/RPM-GPG-KEY-oracle-ol9")),
    ("debian-archive-keyring.gpg", include_bytes!("../../kernel-package-lists/keys/debian-archive-keyring.gpg")),
    ("ubuntu-archive-keyring.gpg", include_bytes!("../../kernel-package-lists/keys/ubuntu-archive-keyring.gpg")),
];

/// Where a source's key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keyring {
    /// One of [`SHIPPED`], by file name.
    Shipped(&'static str),
    /// A file on this host.
    Path(PathBuf),
}

impl Keyring {
    /// Resolve a `keyring:` value: absolute paths are host files; relative
    /// ones are relative to the sources file, or, for the shipped sources,
    /// name a shipped key (`keys/<file>`).
    pub fn resolve(value: &str, sources_dir: Option<&Path>) -> Result<Keyring> {
        let path = Path::new(value);
        if path.is_absolute() {
            return Ok(Keyring::Path(path.to_path_buf()));
        }
        match sources_dir {
            Some(dir) => Ok(Keyring::Path(dir.join(path))),
            None => {
                let name = value.strip_prefix("keys/").unwrap_or(value);
                match SHIPPED.iter().find(|(n, _)| *n == name) {
                    Some((n, _)) => Ok(Keyring::Shipped(n)),
                    None => bail!("no shipped key named {value}"),
                }
            }
        }
    }

    /// The name a manifest entry records for the key that signs its packages.
    pub fn reference(&self) -> String {
        match self {
            Keyring::Shipped(name) => name.to_string(),
            Keyring::Path(p) => p.display().to_string(),
        }
    }

    /// Back from [`Keyring::reference`].
    pub fn from_reference(reference: &str) -> Result<Keyring> {
        if Path::new(reference).is_absolute() {
            return Ok(Keyring::Path(PathBuf::from(reference)));
        }
        Keyring::resolve(reference, None)
    }

    /// A file gpgv can read: a host path as it is (it must exist), a shipped
    /// key written into `dir` (a directory of kpackfs's own) if not there yet.
    pub fn file(&self, dir: &Path) -> Result<PathBuf> {
        match self {
            Keyring::Path(p) => {
                if !p.exists() {
                    bail!("keyring {} not found", p.display());
                }
                Ok(p.clone())
            }
            Keyring::Shipped(name) => {
                let bytes = SHIPPED.iter().find(|(n, _)| n == name).map(|(_, b)| *b).context("unknown shipped key")?;
                let path = dir.join(name);
                if std::fs::read(&path).ok().as_deref() != Some(bytes) {
                    crate::files::create_private_dir_all(dir)?;
                    crate::files::write_atomic(&path, bytes)?;
                }
                Ok(path)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_file_is_shipped_and_resolves() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernel-package-lists/keys");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "README.md")
            .collect();
        files.sort();
        let shipped: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
        assert_eq!(files, shipped, "keys/ and SHIPPED agree");
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        for name in shipped {
            assert!(readme.contains(name), "the README says where {name} came from");
            let k = Keyring::resolve(&format!("keys/{name}"), None).unwrap();
            assert_eq!(Keyring::from_reference(&k.reference()).unwrap(), k);
            assert!(k.file(tmp.path()).unwrap().exists());
        }
        assert!(Keyring::resolve("keys/nope.gpg", None).is_err());
        assert_eq!(Keyring::resolve("k.gpg", Some(Path::new("/etc/x"))).unwrap(), Keyring::Path("/etc/x/k.gpg".into()));
    }
}
