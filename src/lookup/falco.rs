//! falcosecurity/kernel-crawler's list format (`kernels/<arch>/list.json`,
//! what driverkit configs are generated from), made from our verified
//! manifest with kernel-crawler's own rules (its `debian.py`, `ubuntu.py`,
//! `deb.py`):
//!
//! - The package version splits into a release and a kernelversion when
//!   it looks like Ubuntu's `5.15.0-1001.2` (`5.15.0-1001` and `2`); else
//!   the whole version is the release and the kernelversion is `"1"`.
//! - Debian: kernelrelease is that release plus the flavour and
//!   architecture (`6.1.158-1-amd64`, `6.1.158-1-cloud-amd64`), target
//!   `debian`, headers the entry's packages (headers, common, kbuild).
//! - Ubuntu: the flavour is the source package's (`pool/main/l/linux-aws-5.19/`
//!   gives `aws`; `l/linux/` gives `generic`), target `ubuntu-<flavour>`,
//!   kernelrelease `<release>-<flavour>`, headers every `headers` package of
//!   that source and upload, merged across our entries as kernel-crawler
//!   merges them (generic and lowlatency of one `linux` upload are one).
//!
//! Other types have no rule here and are left out (counted). docs/lookup.md
//! compares the output with kernel-crawler's published lists.

use crate::lookup::which::package_version;
use crate::manifest::index::Index;
use crate::manifest::{file_name_of, BundleSpec};
use serde::Serialize;
use std::collections::BTreeMap;

/// One driverkit-shaped record, with the bundle it stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub kernelversion: String,
    pub kernelrelease: String,
    pub target: String,
    pub headers: Vec<String>,
    /// The served slot `which --target …` answers with.
    #[serde(skip)]
    pub slot: u32,
}

/// kernel-crawler's split of a package version (epoch dropped).
fn release_and_version(version: &str) -> (String, String) {
    let version = version.split_once(':').map_or(version, |(_, v)| v);
    // ^([0-9]+\.[0-9]+\.[0-9]+-[0-9]+)\.(.+)
    let split = version.split_once('-').and_then(|(upstream, rest)| {
        let numbers: Vec<&str> = upstream.split('.').collect();
        let (abi, upload) = rest.split_once('.')?;
        let ok = numbers.len() == 3
            && numbers.iter().all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            && !abi.is_empty()
            && abi.bytes().all(|b| b.is_ascii_digit())
            && !upload.is_empty();
        ok.then(|| (format!("{upstream}-{abi}"), upload.to_string()))
    });
    split.unwrap_or_else(|| (version.to_string(), "1".to_string()))
}

/// The flavour kernel-crawler gives an Ubuntu package URL.
fn ubuntu_flavour(url: &str) -> String {
    // ^.*l/linux-(.+)/.*$ : the last "l/linux-" with a "/" after it.
    let Some(at) = url.rfind("l/linux-").filter(|at| url[at + 8..].contains('/')) else {
        return "generic".to_string();
    };
    let rest = &url[at + 8..];
    let source = &rest[..rest.rfind('/').unwrap_or(rest.len())];
    source.split('-').next().unwrap_or(source).to_string()
}

/// The Debian record of an entry: `linux-headers-<abi>-<flavour>_<version>_…`.
fn debian(spec: &BundleSpec, slot: u32) -> Option<Record> {
    let uname = spec.uname.as_deref().or(spec.name.as_deref())?;
    let headers = spec.packages.iter().find(|p| {
        let file = p.file_name();
        file.starts_with(&format!("linux-headers-{uname}_"))
    })?;
    let abi = {
        // 6.1.0-57-cloud-amd64 → 6.1.0-57; the flavour is what follows.
        let mut dashes = uname.match_indices('-').map(|(i, _)| i);
        let second = dashes.nth(1)?;
        &uname[..second]
    };
    let flavour = uname.strip_prefix(abi)?.trim_start_matches('-');
    let (release, kernelversion) = release_and_version(&package_version(headers.file_name())?);
    (spec.packages.len() >= 3).then(|| Record {
        kernelversion,
        kernelrelease: format!("{release}-{flavour}"),
        target: "debian".into(),
        headers: spec.packages.iter().map(|p| p.url.clone()).collect(),
        slot,
    })
}

/// The Ubuntu records of an entry, one per headers package (merged after).
fn ubuntu(spec: &BundleSpec, slot: u32) -> impl Iterator<Item = Record> + '_ {
    spec.packages.iter().filter(|p| p.url.contains("headers")).filter_map(move |p| {
        let (release, kernelversion) = release_and_version(&package_version(file_name_of(&p.url))?);
        let flavour = ubuntu_flavour(&p.url);
        Some(Record {
            kernelversion,
            kernelrelease: format!("{release}-{flavour}"),
            target: format!("ubuntu-{flavour}"),
            headers: vec![p.url.clone()],
            slot,
        })
    })
}

/// The records of `slots`, by kernel-crawler's top-level distribution key,
/// sorted; and how many entries had no rule.
pub fn records(index: &Index, slots: &[u32]) -> (BTreeMap<&'static str, Vec<Record>>, usize) {
    let mut by_distro: BTreeMap<&'static str, Vec<Record>> = BTreeMap::new();
    let mut left_out = 0;
    let mut ubuntu_at = Positions::new();
    for &slot in slots {
        let Some((_, spec, _)) = index.entry(slot) else { continue };
        match spec.kind.as_str() {
            "debian" => match debian(&spec, slot) {
                Some(r) => by_distro.entry("Debian").or_default().push(r),
                None => left_out += 1,
            },
            "ubuntu" => {
                let list = by_distro.entry("Ubuntu").or_default();
                let mut found = 0;
                for r in ubuntu(&spec, slot) {
                    merge(list, &mut ubuntu_at, r, index);
                    found += 1;
                }
                if found == 0 {
                    left_out += 1;
                }
            }
            _ => left_out += 1,
        }
    }
    for list in by_distro.values_mut() {
        list.sort_by(|a, b| {
            (&a.target, &a.kernelrelease, &a.kernelversion).cmp(&(&b.target, &b.kernelrelease, &b.kernelversion))
        });
        for r in list.iter_mut() {
            r.headers.sort();
            r.headers.dedup();
        }
    }
    (by_distro, left_out)
}

/// Where each (target, kernelrelease, kernelversion) is in a list.
type Positions = std::collections::HashMap<(String, String, String), usize>;

/// Entries of one source and upload are one record, as kernel-crawler has
/// them; it stands for the bundle whose name is its kernelrelease, if any.
fn merge(list: &mut Vec<Record>, at: &mut Positions, r: Record, index: &Index) {
    let key = (r.target.clone(), r.kernelrelease.clone(), r.kernelversion.clone());
    match at.get(&key).and_then(|i| list.get_mut(*i)) {
        Some(o) => {
            o.headers.extend(r.headers);
            if index.name(r.slot) == Some(r.kernelrelease.as_str()) {
                o.slot = r.slot;
            }
        }
        None => {
            at.insert(key, list.len());
            list.push(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_split_as_kernel_crawler_splits_them() {
        assert_eq!(release_and_version("5.15.0-1001.2"), ("5.15.0-1001".into(), "2".into()));
        assert_eq!(release_and_version("4.15.0-1087.95~16.04.1"), ("4.15.0-1087".into(), "95~16.04.1".into()));
        assert_eq!(release_and_version("6.1.158-1"), ("6.1.158-1".into(), "1".into()));
        assert_eq!(release_and_version("5.16.12-1~bpo11+1"), ("5.16.12-1~bpo11+1".into(), "1".into()));
        assert_eq!(release_and_version("1:5.4.0-42.46"), ("5.4.0-42".into(), "46".into()));
    }

    #[test]
    fn ubuntu_flavours_come_from_the_source_directory() {
        let url =
            |dir: &str| format!("http://archive.ubuntu.test/ubuntu/pool/main/l/{dir}/linux-headers-x_1_amd64.deb");
        assert_eq!(ubuntu_flavour(&url("linux")), "generic");
        assert_eq!(ubuntu_flavour(&url("linux-oracle")), "oracle");
        assert_eq!(ubuntu_flavour(&url("linux-aws-5.19")), "aws");
        assert_eq!(ubuntu_flavour(&url("linux-hwe-5.15")), "hwe");
    }
}
