//! The mount's namespace, derived from the manifest, and its inode numbers.
//!
//! ```text
//! /                               ino 1
//! /<type>/                        ino 16 + type number
//! /<type>/<name>/                 ino (slot+1) << 32 | 0     the bundle's tree (pack record 0)
//! /<type>/<name>/<path>           ino (slot+1) << 32 | record index in the pack
//! /<type>/<name>.tgz              ino (slot+1) << 32 | 0xffff_ffff
//! /bundles/bundle-<name>.tgz      the same inode as /<type>/<name>.tgz
//! /.kpackfs/status, status.json   ino 4, 5
//! ```
//! Slots and type numbers are assigned once per id and type and never
//! reused while mounted (a rebuilt namespace inherits them), so inode
//! numbers stay valid across manifest refreshes. A bundle's pack is
//! deterministic, so record indexes stay valid across eviction and rebuild.

use crate::ids::BundleId;
use crate::manifest::{rules, BundleSpec, Manifest};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const ROOT: u64 = 1;
const BUNDLES_DIR: u64 = 2;
const META_DIR: u64 = 3;
const STATUS: u64 = 4;
const STATUS_JSON: u64 = 5;
const TYPE_BASE: u64 = 16;
const TGZ: u32 = u32::MAX;

pub const BUNDLES_NAME: &str = "bundles";
pub const META_NAME: &str = ".kpackfs";

/// What an inode number denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ino {
    Root,
    BundlesDir,
    MetaDir,
    Status,
    StatusJson,
    TypeDir(u32),
    /// A node of a bundle's tree (index 0 is the bundle directory).
    Node {
        slot: u32,
        index: u32,
    },
    Tgz {
        slot: u32,
    },
}

impl Ino {
    pub fn decode(ino: u64) -> Option<Ino> {
        let high = (ino >> 32) as u32;
        let low = ino as u32;
        if high == 0 {
            return Some(match ino {
                ROOT => Ino::Root,
                BUNDLES_DIR => Ino::BundlesDir,
                META_DIR => Ino::MetaDir,
                STATUS => Ino::Status,
                STATUS_JSON => Ino::StatusJson,
                n if n >= TYPE_BASE => Ino::TypeDir((n - TYPE_BASE) as u32),
                _ => return None,
            });
        }
        let slot = high - 1;
        Some(if low == TGZ { Ino::Tgz { slot } } else { Ino::Node { slot, index: low } })
    }

    pub fn encode(self) -> u64 {
        match self {
            Ino::Root => ROOT,
            Ino::BundlesDir => BUNDLES_DIR,
            Ino::MetaDir => META_DIR,
            Ino::Status => STATUS,
            Ino::StatusJson => STATUS_JSON,
            Ino::TypeDir(t) => TYPE_BASE + t as u64,
            Ino::Node { slot, index } => ((slot as u64 + 1) << 32) | index as u64,
            Ino::Tgz { slot } => ((slot as u64 + 1) << 32) | TGZ as u64,
        }
    }
}

/// One bundle as the mount shows it.
#[derive(Debug, Clone)]
pub struct BundleInfo {
    pub id: BundleId,
    pub kind: String,
    pub name: String,
    pub spec: Arc<BundleSpec>,
}

impl BundleInfo {
    /// `type/name`, for logs and status.
    pub fn label(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// A child of a type directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeChild {
    Dir(u32),
    Tgz(u32),
}

/// How many manifest entries are shown, and why the others are not.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub shown: usize,
    /// Entries without a name (see docs/manifest.md).
    pub unnamed: usize,
    /// Entries hidden because another entry has the same type and name.
    pub shadowed: usize,
    /// `bundle-<name>.tgz` names claimed by bundles of two types: one is shown.
    pub flat_collisions: usize,
}

#[derive(Debug, Clone)]
struct TypeDir {
    name: String,
    /// Children sorted by name: `<name>` and `<name>.tgz` per bundle.
    children: Vec<(String, TypeChild)>,
}

/// What changed between two namespaces, for the kernel's caches.
#[derive(Debug, Default)]
pub struct Changes {
    /// (parent inode, name) entries that now exist.
    pub entries: Vec<(u64, String)>,
    /// Directories whose listings changed.
    pub dirs: Vec<u64>,
    pub added_bundles: usize,
}

#[derive(Debug, Default)]
pub struct Namespace {
    /// Indexed by slot; `None` for a slot whose id is not served now.
    bundles: Vec<Option<BundleInfo>>,
    by_id: HashMap<BundleId, u32>,
    /// Indexed by type number.
    types: Vec<TypeDir>,
    /// Type numbers sorted by name.
    type_order: Vec<u32>,
    /// `bundle-<name>.tgz` → slot, sorted.
    flat: Vec<(String, u32)>,
    /// The flat names claimed by more than one type, with the types.
    pub flat_clashes: Vec<(String, Vec<String>)>,
    pub counts: Counts,
}

impl Namespace {
    /// Build from a manifest, keeping the slots and type numbers of `prev`.
    /// Two entries with the same type and name: the one whose packages all
    /// carry sha256 wins, then the smaller id.
    pub fn build(manifest: &Manifest, prev: Option<&Namespace>) -> Namespace {
        let mut ns = Namespace { ..Namespace::default() };
        ns.counts.unnamed = manifest.unnamed.len();
        if let Some(prev) = prev {
            ns.by_id = prev.by_id.clone();
            ns.bundles = vec![None; prev.bundles.len()];
            ns.types = prev.types.iter().map(|t| TypeDir { name: t.name.clone(), children: Vec::new() }).collect();
        }
        let mut chosen: BTreeMap<(&str, &str), (&String, &BundleSpec)> = BTreeMap::new();
        let verified = |e: &BundleSpec| e.packages.iter().all(|p| p.sha256.is_some());
        for (id, entry) in &manifest.entries {
            let Some(name) = entry.name.as_deref() else { continue };
            let key = (entry.kind.as_str(), name);
            match chosen.get(&key) {
                Some((other, current))
                    if (verified(current), std::cmp::Reverse(*other)) >= (verified(entry), std::cmp::Reverse(id)) => {}
                _ => {
                    chosen.insert(key, (id, entry));
                }
            }
        }
        ns.counts.shadowed = manifest.entries.values().filter(|e| e.name.is_some()).count() - chosen.len();
        let mut flat: BTreeMap<String, (u32, Vec<String>)> = BTreeMap::new();
        for ((kind, name), (id, entry)) in chosen {
            let Some(bid) = BundleId::parse(id) else { continue };
            if rules::check_type(kind).is_err() || rules::check_name("name", name).is_err() {
                continue; // manifests are validated on load; this guards hand-built ones
            }
            let slot = ns.slot(bid);
            let t = ns.type_number(kind);
            ns.bundles[slot as usize] = Some(BundleInfo {
                id: bid,
                kind: kind.to_string(),
                name: name.to_string(),
                spec: Arc::new(entry.clone()),
            });
            let children = &mut ns.types[t as usize].children;
            children.push((name.to_string(), TypeChild::Dir(slot)));
            children.push((format!("{name}.tgz"), TypeChild::Tgz(slot)));
            let claim = flat.entry(format!("bundle-{name}.tgz")).or_insert_with(|| (slot, Vec::new()));
            claim.1.push(kind.to_string());
            ns.counts.shown += 1;
        }
        for t in ns.types.iter_mut() {
            t.children.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let mut order: Vec<u32> =
            (0..ns.types.len() as u32).filter(|t| !ns.types[*t as usize].children.is_empty()).collect();
        order.sort_by(|a, b| ns.types[*a as usize].name.cmp(&ns.types[*b as usize].name));
        ns.type_order = order;
        for (name, (slot, kinds)) in flat {
            if kinds.len() > 1 {
                ns.flat_clashes.push((name.clone(), kinds));
            }
            ns.flat.push((name, slot));
        }
        ns.counts.flat_collisions = ns.flat_clashes.len();
        if ns.counts.shadowed > 0 {
            log::info!(
                "{} manifest entries share a type and name with another; one of each is shown",
                ns.counts.shadowed
            );
        }
        for (name, kinds) in &ns.flat_clashes {
            log::warn!(
                "{name} is claimed by bundles of types {}; /bundles/ shows the {} one",
                kinds.join(", "),
                kinds[0]
            );
        }
        ns
    }

    fn slot(&mut self, id: BundleId) -> u32 {
        let next = self.by_id.len() as u32;
        let slot = *self.by_id.entry(id).or_insert(next);
        if self.bundles.len() <= slot as usize {
            self.bundles.resize(slot as usize + 1, None);
        }
        slot
    }

    fn type_number(&mut self, kind: &str) -> u32 {
        if let Some(t) = self.types.iter().position(|t| t.name == kind) {
            return t as u32;
        }
        self.types.push(TypeDir { name: kind.to_string(), children: Vec::new() });
        (self.types.len() - 1) as u32
    }

    pub fn bundle(&self, slot: u32) -> Option<BundleInfo> {
        self.bundles.get(slot as usize).and_then(Option::clone)
    }

    pub fn bundles(&self) -> impl Iterator<Item = (u32, &BundleInfo)> {
        self.bundles.iter().enumerate().filter_map(|(s, b)| b.as_ref().map(|b| (s as u32, b)))
    }

    pub fn slot_of_id(&self, id: &BundleId) -> Option<u32> {
        self.by_id.get(id).copied().filter(|s| self.bundles.get(*s as usize).is_some_and(Option::is_some))
    }

    /// Type names with their numbers, sorted by name.
    pub fn type_names(&self) -> Vec<(String, u32)> {
        self.type_order.iter().map(|t| (self.types[*t as usize].name.clone(), *t)).collect()
    }

    pub fn type_count(&self) -> usize {
        self.type_order.len()
    }

    pub fn type_by_name(&self, name: &str) -> Option<u32> {
        self.type_order.iter().copied().find(|t| self.types[*t as usize].name == name)
    }

    fn type_dir(&self, t: u32) -> Option<&TypeDir> {
        self.types.get(t as usize).filter(|d| !d.children.is_empty())
    }

    /// Entries in a type directory (two per bundle).
    pub fn type_len(&self, t: u32) -> Option<usize> {
        self.type_dir(t).map(|d| d.children.len())
    }

    pub fn type_children(&self, t: u32, from: usize, limit: usize) -> Option<Vec<(String, TypeChild)>> {
        Some(self.type_dir(t)?.children.iter().skip(from).take(limit).cloned().collect())
    }

    pub fn type_child(&self, t: u32, name: &str) -> Option<TypeChild> {
        let children = &self.type_dir(t)?.children;
        children.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok().map(|i| children[i].1)
    }

    pub fn flat_children(&self, from: usize, limit: usize) -> Vec<(String, u32)> {
        self.flat.iter().skip(from).take(limit).cloned().collect()
    }

    pub fn flat_child(&self, name: &str) -> Option<u32> {
        self.flat.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok().map(|i| self.flat[i].1)
    }

    /// What `self` shows that `old` did not.
    pub fn changes_since(&self, old: &Namespace) -> Changes {
        let mut changes = Changes::default();
        let mut root_changed = false;
        for (type_name, t) in self.type_names() {
            if old.type_dir(t).is_none() {
                changes.entries.push((ROOT, type_name));
                root_changed = true;
            }
            let mut changed = false;
            for (name, child) in &self.types[t as usize].children {
                if old.type_child(t, name).is_none() {
                    changes.entries.push((Ino::TypeDir(t).encode(), name.clone()));
                    changed = true;
                    if matches!(child, TypeChild::Dir(_)) {
                        changes.added_bundles += 1;
                    }
                }
            }
            if changed {
                changes.dirs.push(Ino::TypeDir(t).encode());
            }
        }
        let mut flat_changed = false;
        for (name, _) in &self.flat {
            if old.flat_child(name).is_none() {
                changes.entries.push((BUNDLES_DIR, name.clone()));
                flat_changed = true;
            }
        }
        if flat_changed {
            changes.dirs.push(BUNDLES_DIR);
        }
        if root_changed {
            changes.dirs.push(ROOT);
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Package;

    #[test]
    fn inode_numbers_round_trip() {
        for ino in [
            Ino::Root,
            Ino::Status,
            Ino::TypeDir(3),
            Ino::Node { slot: 0, index: 0 },
            Ino::Node { slot: 6472, index: 99 },
            Ino::Tgz { slot: 5 },
        ] {
            assert_eq!(Ino::decode(ino.encode()), Some(ino));
        }
    }

    fn deb(dir: &str, sha: bool) -> BundleSpec {
        let mut p = Package::new(format!("http://x/{dir}/linux-headers-1.0-1-amd64_1_amd64.deb"));
        p.sha256 = sha.then(|| "0".repeat(64));
        BundleSpec { kind: "debian".into(), name: None, uname: None, packages: vec![p] }
    }

    /// Two entries with one name: the one with sha256 everywhere wins even
    /// when its id is the larger, so the test tells the two rules apart.
    #[test]
    fn names_collide_by_the_sha256_rule_first_then_the_id() {
        let candidates = ["a", "b", "c", "d", "e", "f"];
        let ids: Vec<(String, String)> =
            candidates.iter().map(|d| (d.to_string(), deb(d, false).compute_id())).collect();
        // Pick the pair where the verified entry has the larger id.
        let (small, large) = ids
            .iter()
            .flat_map(|a| ids.iter().map(move |b| (a, b)))
            .find(|(a, b)| a.1 < b.1)
            .map(|(a, b)| (a.0.clone(), b.0.clone()))
            .unwrap();
        let mut m = Manifest::default();
        let loser = m.insert(deb(&small, false));
        let winner = m.insert(deb(&large, true));
        assert!(loser < winner, "the winner has the larger id");
        let ns = Namespace::build(&m, None);
        assert_eq!(ns.counts.shadowed, 1);
        let t = ns.type_by_name("debian").unwrap();
        let Some(TypeChild::Dir(slot)) = ns.type_child(t, "1.0-1-amd64") else { panic!() };
        assert_eq!(ns.bundle(slot).unwrap().id.hex(), winner);
        // With neither verified, the smaller id wins.
        let mut m2 = Manifest::default();
        let smaller = m2.insert(deb(&small, false));
        m2.insert(deb(&large, false));
        let ns2 = Namespace::build(&m2, None);
        let Some(TypeChild::Dir(slot)) = ns2.type_child(ns2.type_by_name("debian").unwrap(), "1.0-1-amd64") else {
            panic!()
        };
        assert_eq!(ns2.bundle(slot).unwrap().id.hex(), smaller);
    }

    #[test]
    fn a_refresh_keeps_slots_and_reports_what_is_new() {
        let mut m = Manifest::default();
        m.insert(deb("a", true));
        let ns = Namespace::build(&m, None);
        let t = ns.type_by_name("debian").unwrap();
        let slot = ns.flat_child("bundle-1.0-1-amd64.tgz").unwrap();
        let mut other = deb("z", true);
        other.packages[0].url = "http://x/z/linux-headers-2.0-1-amd64_1_amd64.deb".into();
        m.insert(other);
        let ns2 = Namespace::build(&m, Some(&ns));
        assert_eq!(ns2.type_child(t, "1.0-1-amd64.tgz"), Some(TypeChild::Tgz(slot)));
        let changes = ns2.changes_since(&ns);
        assert_eq!(changes.added_bundles, 1);
        assert!(changes.entries.contains(&(Ino::TypeDir(t).encode(), "2.0-1-amd64".to_string())));
        assert!(changes.dirs.contains(&BUNDLES_DIR));
    }

    #[test]
    fn item9_one_flat_name_for_two_types_is_reported() {
        let mut m = Manifest::default();
        m.insert(deb("a", true));
        let mut garden = deb("g", true);
        garden.kind = "garden".into();
        m.insert(garden);
        let ns = Namespace::build(&m, None);
        assert_eq!(ns.counts.flat_collisions, 1);
        assert_eq!(ns.flat_clashes[0].1, vec!["debian".to_string(), "garden".to_string()]);
        // The type directories both show their bundle.
        assert!(ns.type_child(ns.type_by_name("garden").unwrap(), "1.0-1-amd64").is_some());
    }
}
