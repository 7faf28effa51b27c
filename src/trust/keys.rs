//! The signing keys of the shipped sources (`kernel-package-lists/keys/`,
//! whose README says where each came from), compiled in: every shipped
//! source can be checked on any host, whatever keyrings it has.
//!
//! gpgv reads keyrings from files: the key in use is copied into gpgv's
//! private scratch directory for each check.

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
    ("RPM-GPG-KEY-openSUSE-Leap-15", include_bytes!("../../kernel-package-lists/keys/RPM-GPG-KEY-openSUSE-Leap-15")),
    ("RPM-GPG-KEY-oracle", include_bytes!("../../kernel-package-lists/keys/RPM-GPG-KEY-oracle")),
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
    /// Resolve a `keyring:` value: an absolute path is a host file; a
    /// relative one is a file beside the sources file if there is one
    /// there, else a shipped key (`keys/<file>`, as the shipped sources.yml
    /// names them: a copy of it works without the keys directory).
    pub fn resolve(value: &str, sources_dir: Option<&Path>) -> Result<Keyring> {
        let path = Path::new(value);
        if path.is_absolute() {
            return Ok(Keyring::Path(path.to_path_buf()));
        }
        if let Some(beside) = sources_dir.map(|d| d.join(path)).filter(|p| p.exists()) {
            return Ok(Keyring::Path(beside));
        }
        let name = value.strip_prefix("keys/").unwrap_or(value);
        match SHIPPED.iter().find(|(n, _)| *n == name) {
            Some((n, _)) => Ok(Keyring::Shipped(n)),
            None => match sources_dir {
                Some(dir) => bail!("keyring {value}: not in {} and not a shipped key", dir.display()),
                None => bail!("keyring {value}: not a shipped key"),
            },
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

    /// The key material, at most `max` bytes. A host file must belong to
    /// root (or to us) and be writable by no one else: a key a local user
    /// could replace would let them sign what a root crawl trusts.
    pub fn bytes(&self, max: u64) -> Result<Vec<u8>> {
        match self {
            Keyring::Shipped(name) => SHIPPED
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, b)| b.to_vec())
                .with_context(|| format!("no shipped key named {name}")),
            Keyring::Path(p) => {
                use std::io::Read;
                use std::os::unix::fs::MetadataExt;
                let file = std::fs::File::open(p).with_context(|| format!("keyring {} not readable", p.display()))?;
                let meta = file.metadata().with_context(|| format!("keyring {}", p.display()))?;
                let me = crate::files::euid();
                if !meta.is_file() {
                    bail!("keyring {} is not a regular file", p.display());
                }
                if (meta.uid() != 0 && meta.uid() != me) || meta.mode() & 0o022 != 0 {
                    bail!(
                        "keyring {} is owned by uid {} with mode {:o}: it must belong to root (or to uid {me}) and be writable by no one else",
                        p.display(),
                        meta.uid(),
                        meta.mode() & 0o7777
                    );
                }
                let mut bytes = Vec::new();
                file.take(max + 1).read_to_end(&mut bytes).with_context(|| format!("reading {}", p.display()))?;
                if bytes.len() as u64 > max {
                    bail!("keyring {} is over {} bytes", p.display(), max);
                }
                Ok(bytes)
            }
        }
    }
}

impl std::fmt::Display for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keyring::Shipped(name) => write!(f, "{name} (shipped)"),
            Keyring::Path(p) => write!(f, "{}", p.display()),
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
        for name in shipped {
            assert!(readme.contains(name), "the README says where {name} came from");
            let k = Keyring::resolve(&format!("keys/{name}"), None).unwrap();
            assert_eq!(Keyring::from_reference(&k.reference()).unwrap(), k);
            assert!(!k.bytes(1 << 20).unwrap().is_empty());
        }
        assert!(Keyring::resolve("keys/nope.gpg", None).is_err());
        assert!(Keyring::resolve("k.gpg", Some(Path::new("/nonexistent"))).is_err());
        let beside = tempfile::tempdir().unwrap();
        std::fs::create_dir(beside.path().join("keys")).unwrap();
        std::fs::write(beside.path().join("keys/debian-archive-keyring.gpg"), b"x").unwrap();
        assert_eq!(
            Keyring::resolve("keys/debian-archive-keyring.gpg", Some(beside.path())).unwrap(),
            Keyring::Path(beside.path().join("keys/debian-archive-keyring.gpg")),
            "a file beside the sources file wins"
        );
        assert_eq!(
            Keyring::resolve("keys/RPM-GPG-KEY-Rocky-9", Some(beside.path())).unwrap(),
            Keyring::Shipped("RPM-GPG-KEY-Rocky-9"),
            "else the shipped key"
        );
    }
}
