//! One entry per kernel: entries whose packages are the same files (the
//! same sha256 set, type and key) reached through different archives —
//! Debian's main and security hosts carry the same .debs — become one
//! entry, every other URL kept as an alternative location the fetcher tries
//! in order. The entry that keeps its id (kernel-packer's id over its
//! primary URLs) is one that existed before, so an id users already see
//! does not change; among equals, the smaller id, as the served-name rule
//! picks. Entries with a package lacking a sha256 are never merged: nothing
//! proves they are the same files.

use super::{BundleSpec, Manifest};
use std::collections::{BTreeMap, BTreeSet};

/// What identifies "the same packages".
fn identity(spec: &BundleSpec) -> Option<(String, Option<String>, Vec<String>)> {
    let mut shas: Vec<String> = spec.packages.iter().map(|p| p.digest_key()).collect::<Option<_>>()?;
    shas.sort();
    let len = shas.len();
    shas.dedup();
    (shas.len() == len).then(|| (spec.kind.clone(), spec.signed_by.clone(), shas))
}

/// One entry merged into another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    pub removed: String,
    pub kept: String,
    /// Whether the kept entry gained a location: false when a re-crawl
    /// gave again what an earlier merge already holds.
    pub added_locations: bool,
}

/// Collapse duplicates in `manifest`; `existing` holds the ids that were
/// there before (they keep their id).
pub fn collapse(manifest: &mut Manifest, existing: &BTreeSet<String>) -> Vec<Merge> {
    let mut groups: BTreeMap<_, Vec<String>> = BTreeMap::new();
    for (id, spec) in &manifest.entries {
        if let Some(key) = identity(spec) {
            groups.entry(key).or_default().push(id.clone());
        }
    }
    let mut merged = Vec::new();
    for mut ids in groups.into_values().filter(|ids| ids.len() > 1) {
        ids.sort_by_key(|id| (!existing.contains(id), id.clone()));
        let keeper_id = ids.remove(0);
        for other_id in ids {
            let Some(other) = manifest.entries.remove(&other_id) else { continue };
            manifest.unnamed.remove(&other_id);
            let Some(keeper) = manifest.entries.get_mut(&keeper_id) else { continue };
            let mut added_locations = false;
            for p in other.packages {
                let Some(into) = keeper.packages.iter_mut().find(|k| k.digest_key() == p.digest_key()) else {
                    continue;
                };
                for url in std::iter::once(p.url).chain(p.also) {
                    if into.url != url && !into.also.contains(&url) {
                        into.also.push(url);
                        added_locations = true;
                    }
                }
            }
            merged.push(Merge { removed: other_id, kept: keeper_id.clone(), added_locations });
        }
    }
    merged
}

/// A re-crawled entry keeps the alternative locations an earlier collapse
/// gave it, for packages that are still the same files.
pub fn keep_locations(old: &BundleSpec, new: &mut BundleSpec) {
    for p in &mut new.packages {
        let Some(before) =
            old.packages.iter().find(|o| o.url == p.url && o.has_digest() && o.digest_key() == p.digest_key())
        else {
            continue;
        };
        for url in &before.also {
            if !p.also.contains(url) && *url != p.url {
                p.also.push(url.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Package;

    /// `archive` is a URL prefix: Debian's main and security archives put
    /// the same files under different paths (pool/main, pool/updates/main).
    fn deb(archive: &str, files: &[(&str, char)]) -> BundleSpec {
        let packages = files
            .iter()
            .map(|(f, sha)| {
                let mut p = Package::new(format!("http://{archive}/main/l/linux/{f}"));
                p.sha256 = Some(sha.to_string().repeat(64));
                p
            })
            .collect();
        BundleSpec { kind: "debian".into(), name: None, uname: None, signed_by: None, packages }
    }

    const FILES: [(&str, char); 2] =
        [("linux-headers-6.1.0-9-amd64_6.1.1-1_amd64.deb", 'a'), ("linux-kbuild-6.1_6.1.1-1_amd64.deb", 'b')];

    #[test]
    fn same_files_through_two_archives_are_one_entry_with_fallbacks() {
        let mut m = Manifest::default();
        let security = m.insert(deb("security.test/debian-security/pool/updates", &FILES));
        let existing: BTreeSet<String> = m.entries.keys().cloned().collect();
        let main = m.insert(deb("main.test/debian/pool", &FILES));
        let other = m.insert(deb("main.test/debian/pool", &[FILES[0], ("linux-kbuild-6.1_6.1.1-2_amd64.deb", 'c')]));
        let merged = collapse(&mut m, &existing);
        let merge = Merge { removed: main.clone(), kept: security.clone(), added_locations: true };
        assert_eq!(merged, vec![merge], "the entry that was there keeps its id");
        assert_eq!(m.entries.len(), 2, "a different package set stays apart (shadowing)");
        let kept = &m.entries[&security];
        assert_eq!(kept.compute_id(), security, "the id is still kernel-packer's over the primary URLs");
        for p in &kept.packages {
            assert!(p.url.contains("security.test"));
            assert_eq!(p.also.len(), 1);
            assert!(p.also[0].contains("main.test") && p.also[0].ends_with(p.file_name()));
        }
        assert!(m.entries.contains_key(&other));
        assert!(collapse(&mut m, &existing).is_empty(), "idempotent");
        let mut again = deb("security.test/debian-security/pool/updates", &FILES);
        keep_locations(&m.entries[&security], &mut again);
        assert_eq!(
            again.packages, m.entries[&security].packages,
            "a re-crawl of one archive keeps the other's locations"
        );
        m.insert(again);
        m.insert(deb("main.test/debian/pool", &FILES));
        let existing: BTreeSet<String> = m.entries.keys().filter(|id| **id != main).cloned().collect();
        let merged = collapse(&mut m, &existing);
        let merge = Merge { removed: main.clone(), kept: security.clone(), added_locations: false };
        assert_eq!(merged, vec![merge], "a re-crawl of both archives merges again and adds nothing");
    }

    #[test]
    fn without_checksums_or_history_the_rule_is_the_smaller_id() {
        let mut m = Manifest::default();
        let a = m.insert(deb("a.test/a/pool", &FILES));
        let b = m.insert(deb("b.test/b/pool", &FILES));
        let merged = collapse(&mut m, &BTreeSet::new());
        let (keep, drop) = if a < b { (a, b) } else { (b, a) };
        assert_eq!(merged, vec![Merge { removed: drop, kept: keep, added_locations: true }]);
        let mut unsummed = deb("c.test/c/pool", &FILES);
        let mut twin = deb("d.test/d/pool", &FILES);
        unsummed.packages[0].sha256 = None;
        twin.packages[0].sha256 = None;
        let mut m = Manifest::default();
        m.insert(unsummed);
        m.insert(twin);
        assert!(collapse(&mut m, &BTreeSet::new()).is_empty(), "no sha256, no proof of sameness");
    }
}
