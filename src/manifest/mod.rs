//! The manifest: bundle id → type, name, uname and packages.
//!
//! Two on-disk shapes load into the same model:
//! - kpackfs's own (`packages: [{url, sha256, size}]`, plus `name` and `uname`);
//! - kernel-packer's (`packages: [simplified-name]`), whose names are mapped back
//!   to URLs through the package lists (`*.txt`, one URL per line) beside it.
//!
//! See docs/manifest.md for the format.

pub mod arch;
mod collapse;
pub mod debversion;
mod fast_yaml;
pub mod index;
mod lists;
mod naming;
mod parse;
pub mod rules;

pub use collapse::{collapse, keep_locations};
pub use lists::{Lists, PackageLists};
pub(crate) use naming::parse_nevra;
pub use naming::{derive_names, Names};
pub use parse::{parse_each, parse_file_each, yaml_options, ParseStats, MAX_MANIFEST_BYTES};
use parse::{RawPackage, RawSpec};

use crate::ids::BundleId;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// One package of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// Where the package is (canonical URL). The bundle id is computed from it.
    pub url: String,
    /// Other locations of the same file (same sha256), tried in order when
    /// `url` fails: the same package reached through another archive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// SHA-512, where the archive publishes no SHA-256 (Ubuntu from 26.10
    /// on lists only SHA512 in its Release and Packages files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha512: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl Package {
    pub fn new(url: impl Into<String>) -> Self {
        Package { url: url.into(), also: Vec::new(), sha256: None, sha512: None, size: None }
    }

    /// Whether the manifest pins the package's content (a sha256 or a sha512).
    pub fn has_digest(&self) -> bool {
        self.sha256.is_some() || self.sha512.is_some()
    }

    /// The digest that identifies the package's content, as `sha256:<hex>`
    /// or `sha512:<hex>` (lowercase; sha256 preferred when both are known).
    pub fn digest_key(&self) -> Option<String> {
        match (&self.sha256, &self.sha512) {
            (Some(s), _) => Some(format!("sha256:{}", s.to_ascii_lowercase())),
            (None, Some(s)) => Some(format!("sha512:{}", s.to_ascii_lowercase())),
            (None, None) => None,
        }
    }

    /// Every location, the primary first.
    pub fn locations(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.url.as_str()).chain(self.also.iter().map(String::as_str))
    }

    /// The last path component of the URL (query stripped).
    pub fn file_name(&self) -> &str {
        file_name_of(&self.url)
    }
}

/// Whether a URL is http:// or https:// (scheme case-insensitive).
pub fn is_http_url(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
}

/// The last path component of a URL, without its query.
pub fn file_name_of(url: &str) -> &str {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    no_query.rsplit('/').next().unwrap_or(no_query)
}

/// One bundle: the packages that together make one kernel's build tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleSpec {
    /// The repackaging type: the layout, BUNDLE_DISTRO, and the `/<type>/` directory.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uname: Option<String>,
    /// The key the packages' own signatures are checked against (RPM
    /// gpgcheck): a shipped key's name or a host path (crawl::keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    pub packages: Vec<Package>,
}

impl BundleSpec {
    /// kernel-packer's id over this entry's packages.
    pub fn compute_id(&self) -> String {
        bundle_id(self.packages.iter().map(|p| p.url.as_str()))
    }

    /// Fill `name` and `uname` from package file names where they are missing.
    /// Types whose release shows only in the contents get a name from their
    /// URLs and no uname. Returns why no name could be derived, if so.
    pub fn fill_names(&mut self) -> Result<(), String> {
        if self.name.is_some() && self.uname.is_some() {
            return Ok(());
        }
        let files: Vec<&str> = self.packages.iter().map(|p| p.file_name()).collect();
        let names = match derive_names(&self.kind, &files) {
            Ok(names) => names,
            Err(why) => {
                if self.name.is_none() {
                    let urls: Vec<&str> = self.packages.iter().map(|p| p.url.as_str()).collect();
                    let name = naming::name_from_urls(&self.kind, &urls).ok_or(why)?;
                    rules::check_name("derived name", &name)?;
                    self.name = Some(name);
                }
                return Ok(());
            }
        };
        rules::check_name("derived name", &names.name)?;
        rules::check_name("derived uname", &names.uname)?;
        if self.uname.is_none() {
            self.uname = Some(names.uname);
        }
        if self.name.is_none() {
            self.name = Some(names.name);
        }
        Ok(())
    }
}

/// kernel-packer's simplification of a package URL: every character outside
/// `[A-Za-z0-9._-]` becomes `-`.
pub fn simplify(url: &str) -> String {
    url.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).collect()
}

/// kernel-packer's bundle id: sha256 over the sorted, concatenated simplified names.
/// A simplified name passes through unchanged, so both manifest shapes agree.
pub fn bundle_id<'a>(urls: impl IntoIterator<Item = &'a str>) -> String {
    let mut names: Vec<String> = urls.into_iter().map(simplify).collect();
    names.sort();
    let mut hasher = Sha256::new();
    for name in &names {
        hasher.update(name.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The whole manifest, ordered by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub entries: BTreeMap<String, BundleSpec>,
    /// Entries that loaded but cannot be named, with the reason (id → reason).
    pub unnamed: BTreeMap<String, String>,
}

/// The repository's manifest, compiled in: what `mount` and `bundle` serve by default.
pub const SHIPPED: &str = include_str!("../../manifest.yml");

/// Load `path`, or the shipped manifest.
pub fn load_or_shipped(path: Option<&Path>, lists_dir: Option<&Path>) -> Result<Manifest> {
    match path {
        Some(p) => Manifest::load(p, lists_dir),
        None => Manifest::parse(SHIPPED, &PackageLists::default()).context("loading the shipped manifest"),
    }
}

impl Manifest {
    /// Parse a manifest from YAML text (see [`parse_each`]).
    pub fn parse(text: &str, lists: &PackageLists) -> Result<Self> {
        let mut manifest = Manifest::default();
        parse_each(text, lists, |id, spec| manifest.insert_once(id, spec))?;
        manifest.fill_names();
        Ok(manifest)
    }

    /// Load a manifest file. Package lists are looked for in `lists_dir`, else in
    /// the manifest's own directory and its `kernel-package-lists/` subdirectory.
    pub fn load(path: &Path, lists_dir: Option<&Path>) -> Result<Self> {
        let mut manifest = Manifest::default();
        parse_file_each(path, &mut Lists::near(path, lists_dir), |id, spec| manifest.insert_once(id, spec))
            .with_context(|| format!("loading manifest {}", path.display()))?;
        manifest.fill_names();
        Ok(manifest)
    }

    /// Add an entry as read from one file: an id seen before in it is
    /// refused (YAML allows no key twice, and the line reader does not
    /// look; the index refuses it too, `check_unique_since`).
    fn insert_once(&mut self, id: String, spec: BundleSpec) -> Result<()> {
        match self.entries.entry(id) {
            std::collections::btree_map::Entry::Occupied(e) => {
                bail!("malformed manifest: entry {} appears twice", e.key())
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(spec);
                Ok(())
            }
        }
    }

    /// Derive missing names; entries that cannot be named are recorded in `unnamed`.
    pub fn fill_names(&mut self) {
        self.unnamed.clear();
        for (id, entry) in self.entries.iter_mut() {
            if let Err(reason) = entry.fill_names() {
                self.unnamed.insert(id.clone(), reason);
            }
        }
    }

    /// Insert an entry under its computed id, replacing an older one.
    pub fn insert(&mut self, mut entry: BundleSpec) -> String {
        let id = entry.compute_id();
        match entry.fill_names() {
            Ok(()) => {
                self.unnamed.remove(&id);
            }
            Err(reason) => {
                self.unnamed.insert(id.clone(), reason);
            }
        }
        self.entries.insert(id.clone(), entry);
        id
    }

    /// Add every entry of `other` (newer wins on the same id).
    pub fn merge(&mut self, other: &Manifest) {
        for (id, entry) in &other.entries {
            self.entries.insert(id.clone(), entry.clone());
        }
        for (id, reason) in &other.unnamed {
            self.unnamed.insert(id.clone(), reason.clone());
        }
    }

    /// Find an entry by id, by name, or by `type/name`.
    pub fn find(&self, key: &str) -> Result<(&String, &BundleSpec)> {
        if let Some((id, e)) = self.entries.get_key_value(key) {
            return Ok((id, e));
        }
        let (kind, name) = match key.split_once('/') {
            Some((k, n)) => (Some(k), n),
            None => (None, key),
        };
        let name = name.strip_prefix("bundle-").unwrap_or(name);
        let name = name.strip_suffix(".tgz").unwrap_or(name);
        let hits: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, e)| e.name.as_deref() == Some(name) && kind.is_none_or(|k| k == e.kind))
            .collect();
        match hits.as_slice() {
            [one] => Ok(*one),
            [] => bail!("no bundle named {key} in the manifest"),
            many => bail!(
                "{} bundles are named {key} ({}); give the type as TYPE/NAME or the id",
                many.len(),
                many.iter().map(|(id, e)| format!("{}:{}", e.kind, &id[..12])).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// Serialize in kpackfs's format (full package mappings, names included).
    pub fn to_yaml(&self) -> Result<String> {
        // Plain scalars: long URLs stay on one line, which keeps diffs readable.
        let mut options = serde_saphyr::SerializerOptions::default();
        options.prefer_block_scalars = false;
        let body = serde_saphyr::to_string_with_options(&self.entries, options)
            .map_err(|e| anyhow!("serializing manifest: {e}"))?;
        Ok(format!("# kpackfs manifest: id -> bundle. See docs/manifest.md.\n{body}"))
    }

    /// Write atomically: a reader sees the old file or the new one, never a mix.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::util::write_atomic(path, self.to_yaml()?.as_bytes())
    }
}

pub(super) fn validate_entry(id: &str, entry: &BundleSpec) -> Result<()> {
    if BundleId::parse(id).is_none() {
        bail!("malformed manifest: key {:?} is not a bundle id (64 hex digits)", rules::shown(id));
    }
    rules::check_type(&entry.kind).map_err(|e| anyhow!("malformed manifest: entry {id}: {e}"))?;
    for p in &entry.packages {
        if p.url.is_empty() {
            bail!("malformed manifest: entry {id} has a package with an empty url");
        }
        // Packages come over HTTP(S); any other scheme (file://, gopher://)
        // would be refused by the client and look like a network failure.
        for url in p.locations() {
            if !is_http_url(url) && url.contains("://") {
                bail!("malformed manifest: entry {id}: package URL {} is not http:// or https://", rules::shown(url));
            }
        }
        for (what, digest, digits) in [("sha256", &p.sha256, 64), ("sha512", &p.sha512, 128)] {
            if let Some(sha) = digest {
                if sha.len() != digits || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                    bail!(
                        "malformed manifest: entry {id}: package {} has an invalid {what} {:?}",
                        p.url,
                        rules::shown(sha)
                    );
                }
            }
        }
    }
    if let Some(key) = &entry.signed_by {
        if key.is_empty() || key.len() > 4096 || key.chars().any(char::is_control) {
            bail!("malformed manifest: entry {id}: signed_by {:?} is not a key name or path", rules::shown(key));
        }
    }
    for (what, value) in [("name", &entry.name), ("uname", &entry.uname)] {
        if let Some(v) = value {
            rules::check_name(what, v).map_err(|e| anyhow!("malformed manifest: entry {id}: {e}"))?;
        }
    }
    let computed = entry.compute_id();
    if computed != id {
        bail!("malformed manifest: entry {id} does not match its packages (their id is {computed})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_matches_kernel_packer() {
        // From kernel-packer's manifest.yml (fixture): a SUSE pair.
        let id = bundle_id([
            "https---updates.suse.com-SUSE-Updates-SLE-Module-Basesystem-15-SP4-x86_64-update-noarch-kernel-devel-5.14.21-150400.24.84.1.noarch.rpm",
            "https---updates.suse.com-SUSE-Updates-SLE-Module-Basesystem-15-SP4-x86_64-update-x86_64-kernel-default-devel-5.14.21-150400.24.84.1.x86_64.rpm",
        ]);
        assert_eq!(id, "0d2a8b79202c07478d92aa42ddefac08e88e0faa6f381400d17dbe553910e813");
        // The same packages as URLs give the same id.
        let id2 = bundle_id([
            "https://updates.suse.com/SUSE/Updates/SLE-Module-Basesystem/15-SP4/x86_64/update/x86_64/kernel-default-devel-5.14.21-150400.24.84.1.x86_64.rpm",
            "https://updates.suse.com/SUSE/Updates/SLE-Module-Basesystem/15-SP4/x86_64/update/noarch/kernel-devel-5.14.21-150400.24.84.1.noarch.rpm",
        ]);
        assert_eq!(id, id2);
    }

    #[test]
    fn simplify_replaces_everything_else() {
        assert_eq!(simplify("http://a.b/c~d_e-f.deb?x=1"), "http---a.b-c-d_e-f.deb-x-1");
    }

    #[test]
    fn full_format_round_trips() {
        let mut m = Manifest::default();
        let mut p = Package::new(
            "http://ftp.debian.org/debian/pool/main/l/linux/linux-headers-6.1.0-56-amd64_6.1.192-2_amd64.deb",
        );
        p.sha256 = Some("a".repeat(64));
        p.size = Some(1841552);
        let id = m.insert(BundleSpec {
            kind: "debian".into(),
            name: None,
            uname: None,
            signed_by: None,
            packages: vec![
                p,
                Package::new(
                    "http://ftp.debian.org/debian/pool/main/l/linux/linux-headers-6.1.0-56-common_6.1.192-2_all.deb",
                ),
                Package::new("http://ftp.debian.org/debian/pool/main/l/linux/linux-kbuild-6.1_6.1.192-2_amd64.deb"),
            ],
        });
        let text = m.to_yaml().unwrap();
        let back = Manifest::parse(&text, &PackageLists::default()).unwrap();
        assert_eq!(back.entries, m.entries);
        assert_eq!(back.entries[&id].name.as_deref(), Some("6.1.0-56-amd64"));
    }

    #[test]
    fn mismatched_id_is_refused() {
        let text = "0000000000000000000000000000000000000000000000000000000000000abc:\n  type: debian\n  packages:\n  - url: http://x/linux-headers-1.0-amd64_1_amd64.deb\n";
        let err = Manifest::parse(text, &PackageLists::default()).unwrap_err().to_string();
        assert!(err.contains("does not match its packages"), "{err}");
    }

    #[test]
    fn a_hostile_uname_is_refused_with_its_entry() {
        let url = "http://x.test/linux-headers-1.0-1-amd64_1_amd64.deb";
        let id = bundle_id([url]);
        for uname in ["../../etc", "a/b", "x\u{1b}[2J"] {
            let text = format!("{id}:\n  type: debian\n  uname: {uname:?}\n  packages:\n  - url: {url}\n");
            let err = format!("{:#}", Manifest::parse(&text, &PackageLists::default()).unwrap_err());
            assert!(err.contains(&id) && err.contains("uname"), "{uname}: {err}");
            assert!(!err.contains('\u{1b}'), "{err:?}");
        }
    }

    #[test]
    fn package_urls_other_than_http_are_refused_not_retried() {
        for url in ["gopher://x.test/a.deb", "file:///etc/shadow", "ftp://x.test/a.deb"] {
            let id = bundle_id([url]);
            let text = format!("{id}:\n  type: debian\n  packages:\n  - url: {url}\n");
            let err = format!("{:#}", Manifest::parse(&text, &PackageLists::default()).unwrap_err());
            assert!(err.contains("is not http:// or https://"), "{url}: {err}");
        }
        let url = "HTTPS://x.test/linux-headers-1.0-1-amd64_1_amd64.deb";
        let text = format!("{}:\n  type: debian\n  packages:\n  - url: {url}\n", bundle_id([url]));
        assert!(Manifest::parse(&text, &PackageLists::default()).is_ok());
    }

    #[test]
    fn malformed_yaml_is_a_clear_error() {
        let err = Manifest::parse("a: [b\n", &PackageLists::default()).unwrap_err().to_string();
        assert!(err.starts_with("malformed manifest"), "{err}");
    }
}
