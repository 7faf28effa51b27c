//! Where a package is looked for after its own locations answer 404/410:
//! the canonical URL behind a mirror that lost it, archives of releases
//! that moved (a prefix rewrite: Debian's and Ubuntu's old-releases
//! archives, CentOS's vault, from the sources' `archive_urls` and
//! `--archive`), and snapshot archives found by name and version through
//! their machine-readable API (Debian's snapshot archive: the file's hash
//! from `/mr/binary/<package>/<version>/binfiles?fileinfo=1`, the bytes
//! from `/file/<hash>`).
//!
//! Nothing from an archive is trusted more than a mirror: only packages the
//! manifest gives a sha256 for go this way, and the store admits them only
//! if size and sha256 match ([`crate::fetch::PackageStore::admit`]).

use serde::Deserialize;
use std::collections::HashMap;

/// The largest snapshot API answer read.
pub const MAX_LOOKUP_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archives {
    /// Look beyond a package's own locations at all (off for air-gapped sites).
    pub enabled: bool,
    /// (canonical prefix, archive prefix).
    pub prefixes: Vec<(String, String)>,
    /// (canonical prefix, snapshot API base).
    pub snapshots: Vec<(String, String)>,
}

impl Default for Archives {
    fn default() -> Self {
        Archives { enabled: true, prefixes: Vec::new(), snapshots: Vec::new() }
    }
}

fn trim(s: &str) -> String {
    s.trim_end_matches('/').to_string()
}

fn under<'a>(url: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = url.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

impl Archives {
    pub fn add_prefix(&mut self, canonical: &str, archive: &str) {
        let rule = (trim(canonical), trim(archive));
        if !self.prefixes.contains(&rule) {
            self.prefixes.push(rule);
        }
    }

    pub fn add_snapshot(&mut self, canonical: &str, base: &str) {
        let rule = (trim(canonical), trim(base));
        if !self.snapshots.contains(&rule) {
            self.snapshots.push(rule);
        }
    }

    /// `url` under each archive prefix that stands in for its own.
    pub fn moved(&self, url: &str) -> Vec<String> {
        self.prefixes.iter().filter_map(|(c, a)| under(url, c).map(|rest| format!("{a}{rest}"))).collect()
    }

    /// The snapshot bases that hold packages of `url`'s archive.
    pub fn snapshot_bases(&self, url: &str) -> Vec<&str> {
        let mut bases: Vec<&str> =
            self.snapshots.iter().filter(|(c, _)| under(url, c).is_some()).map(|(_, b)| b.as_str()).collect();
        bases.dedup();
        bases
    }
}

/// A .deb's package, version and architecture from its file name
/// (`name_version_arch.deb`, the epoch, if any, as `%3a`).
pub fn deb_identity(file_name: &str) -> Option<(String, String, String)> {
    let stem = file_name.strip_suffix(".deb").or_else(|| file_name.strip_suffix(".udeb"))?;
    let mut parts = stem.split('_');
    let (name, version, arch) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || [name, version, arch].iter().any(|p| p.is_empty()) {
        return None;
    }
    let version = version.replace("%3a", ":").replace("%3A", ":");
    let safe = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.~:".contains(&b));
    (safe(name) && safe(&version) && safe(arch)).then(|| (name.to_string(), version, arch.to_string()))
}

/// The API request that finds a .deb's hash in a snapshot archive.
pub fn snapshot_lookup_url(base: &str, file_name: &str) -> Option<String> {
    let (name, version, _) = deb_identity(file_name)?;
    let version = version.replace(':', "%3A").replace('+', "%2B");
    Some(format!("{base}/mr/binary/{name}/{version}/binfiles?fileinfo=1"))
}

#[derive(Deserialize)]
struct Binfiles {
    #[serde(default)]
    result: Vec<Binfile>,
    #[serde(default)]
    fileinfo: HashMap<String, Vec<FileInfo>>,
}

#[derive(Deserialize)]
struct Binfile {
    hash: String,
    #[serde(default)]
    architecture: String,
}

#[derive(Deserialize)]
struct FileInfo {
    #[serde(default)]
    name: String,
}

/// The download URLs a snapshot answer gives for `file_name`: the files
/// whose recorded name is ours, else the one of our architecture. Hashes
/// are checked to be hashes (they become a URL path).
pub fn snapshot_files(base: &str, answer: &[u8], file_name: &str) -> Result<Vec<String>, String> {
    let (_, _, arch) = deb_identity(file_name).ok_or("not a .deb file name")?;
    let parsed: Binfiles = serde_json::from_slice(answer).map_err(|e| format!("the snapshot API's answer: {e}"))?;
    let valid = |h: &str| (40..=64).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit());
    let named: Vec<&str> = parsed
        .result
        .iter()
        .filter(|f| valid(&f.hash))
        .filter(|f| parsed.fileinfo.get(&f.hash).is_some_and(|infos| infos.iter().any(|i| i.name == file_name)))
        .map(|f| f.hash.as_str())
        .collect();
    let chosen: Vec<&str> = if named.is_empty() {
        parsed.result.iter().filter(|f| valid(&f.hash) && f.architecture == arch).map(|f| f.hash.as_str()).collect()
    } else {
        named
    };
    Ok(chosen.into_iter().take(4).map(|h| format!("{base}/file/{}", h.to_ascii_lowercase())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_debs_hash_by_name_and_version() {
        let file = "linux-headers-5.10.0-20-amd64_5.10.158-2_amd64.deb";
        assert_eq!(
            snapshot_lookup_url("http://snap.test", file).unwrap(),
            "http://snap.test/mr/binary/linux-headers-5.10.0-20-amd64/5.10.158-2/binfiles?fileinfo=1"
        );
        let h1 = "a".repeat(40);
        let h2 = "b".repeat(40);
        let answer = format!(
            r#"{{"result":[{{"architecture":"amd64","hash":"{h1}"}},{{"architecture":"arm64","hash":"{h2}"}},{{"architecture":"amd64","hash":"../x"}}],
               "fileinfo":{{"{h1}":[{{"name":"{file}","archive_name":"debian","path":"/pool/main/l/linux","size":1}}]}}}}"#
        );
        assert_eq!(
            snapshot_files("http://snap.test", answer.as_bytes(), file).unwrap(),
            vec![format!("http://snap.test/file/{h1}")]
        );
        assert!(snapshot_files("b", b"{", file).is_err());
        assert_eq!(deb_identity("linux_1%3a2.0_all.deb").unwrap().1, "1:2.0");
        assert!(deb_identity("../../etc_1_amd64.deb").is_none());
    }

    #[test]
    fn moved_prefixes_and_snapshots_apply_under_their_prefix_only() {
        let mut a = Archives::default();
        a.add_prefix("http://old.test/ubuntu/", "http://archive.test/ubuntu");
        a.add_snapshot("http://deb.test/debian", "http://snap.test");
        assert_eq!(a.moved("http://old.test/ubuntu/pool/x.deb"), vec!["http://archive.test/ubuntu/pool/x.deb"]);
        assert!(a.moved("http://old.test/ubuntux/pool/x.deb").is_empty());
        assert_eq!(a.snapshot_bases("http://deb.test/debian/pool/x.deb"), vec!["http://snap.test"]);
        assert!(a.snapshot_bases("http://other.test/debian/pool/x.deb").is_empty());
    }
}
