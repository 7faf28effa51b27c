//! What is served, derived from the manifest: type directories, each
//! bundle as `<type>/<name>` and `<type>/<name>.tgz`, the flat `bundles/`,
//! `by-uname/`; over the memory-mapped manifest index. The filesystem
//! (`fs`) and the HTTP server (`serve`) both serve it.
//!
//! Slots and type numbers are assigned once per id and type and never
//! reused while mounted (a rebuilt namespace inherits them), so the
//! filesystem's inode numbers, made from them, stay valid across
//! manifest refreshes.
//!
//! - [`served`]: where the served manifest comes from, and its index.
//! - [`Current`]: the namespace being served, swapped whole on reload.

mod current;
pub mod served;

pub use current::Current;

use crate::ids::BundleId;
use crate::manifest::index::{self, Index, IndexBuilder};
use crate::manifest::{BundleSpec, Manifest};
use std::sync::{Arc, OnceLock};

pub const BUNDLES_NAME: &str = "bundles";
pub const BY_UNAME_NAME: &str = "by-uname";

/// A directory of the namespace whose entries change on a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    Root,
    Type(u32),
    Bundles,
    ByUname,
}

/// One bundle as the mount shows it.
#[derive(Debug, Clone)]
pub struct BundleInfo {
    pub id: BundleId,
    pub kind: String,
    pub name: String,
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

/// What changed between two namespaces, for the kernel's caches.
#[derive(Debug, Default)]
pub struct Changes {
    /// (directory, name) entries that now exist.
    pub entries: Vec<(Dir, String)>,
    /// Directories whose listings changed.
    pub dirs: Vec<Dir>,
    pub added_bundles: usize,
}

/// The namespace over a manifest index (`manifest::index`): nothing per
/// bundle lives on the heap, so a million entries cost what the kernel
/// pages in of the index file.
pub struct Namespace {
    index: Arc<Index>,
    /// Type numbers of the types that show bundles, sorted by name.
    types: Vec<(String, u32)>,
    pub counts: Counts,
    clashes: OnceLock<Vec<(String, Vec<String>)>>,
    /// `/by-uname/`: the first served slot of each release, in release order.
    by_uname: OnceLock<Vec<u32>>,
}

pub const TGZ_SUFFIX: &str = ".tgz";
const FLAT_PREFIX: &str = "bundle-";

impl Namespace {
    pub fn new(index: Index) -> Namespace {
        let index = Arc::new(index);
        let mut types: Vec<(String, u32)> = (0..index.type_count() as u16)
            .filter(|t| index.type_len(*t).unwrap_or(0) > 0)
            .filter_map(|t| Some((index.type_name(t)?.to_string(), t as u32)))
            .collect();
        types.sort();
        let c = index.counts;
        let counts =
            Counts { shown: c.shown, unnamed: c.unnamed, shadowed: c.shadowed, flat_collisions: c.flat_collisions };
        Namespace { index, types, counts, clashes: OnceLock::new(), by_uname: OnceLock::new() }
    }

    /// Build an in-memory namespace from a manifest, keeping the slots and
    /// type numbers of `prev` (tests and small manifests; the daemon keeps
    /// its index in the cache directory, see [`served`]).
    pub fn build(manifest: &Manifest, prev: Option<&Namespace>) -> Namespace {
        let built = (|| -> anyhow::Result<Index> {
            let mut b = match prev {
                Some(p) => IndexBuilder::with_prev(&p.index)?,
                None => IndexBuilder::new(),
            };
            index::add_manifest(&mut b, manifest)?;
            Index::from_bytes(b.finish([0; 32]))
        })();
        match built {
            Ok(index) => Namespace::new(index),
            Err(e) => {
                log::error!("building the namespace: {e:#}");
                Namespace::new(Index::from_bytes(IndexBuilder::new().finish([0; 32])).expect("an empty index"))
            }
        }
    }

    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// A served bundle's id (reads only its slot record).
    pub fn id(&self, slot: u32) -> Option<BundleId> {
        self.index.is_served(slot).then(|| self.index.id(slot)).flatten()
    }

    /// A served bundle.
    pub fn bundle(&self, slot: u32) -> Option<BundleInfo> {
        if !self.index.is_served(slot) {
            return None;
        }
        Some(BundleInfo {
            id: self.index.id(slot)?,
            kind: self.index.kind(slot)?.to_string(),
            name: self.index.name(slot)?.to_string(),
        })
    }

    /// A served bundle's packages (decoded from the index).
    pub fn spec(&self, slot: u32) -> Option<Arc<BundleSpec>> {
        self.index.entry(slot).map(|(_, spec, _)| Arc::new(spec))
    }

    pub fn slot_of_id(&self, id: &BundleId) -> Option<u32> {
        self.index.find_id(id).filter(|s| self.index.is_served(*s))
    }

    /// Type names with their numbers, sorted by name.
    pub fn type_names(&self) -> Vec<(String, u32)> {
        self.types.clone()
    }

    pub fn type_count(&self) -> usize {
        self.types.len()
    }

    pub fn type_by_name(&self, name: &str) -> Option<u32> {
        self.types.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok().map(|i| self.types[i].1)
    }

    /// Entries in a type directory (two per bundle).
    pub fn type_len(&self, t: u32) -> Option<usize> {
        let t = u16::try_from(t).ok()?;
        self.index.type_len(t).filter(|n| *n > 0).map(|n| n * 2)
    }

    /// Entries of a type directory from position `from`: each bundle shows
    /// as `<name>` (even positions) and `<name>.tgz` (odd ones).
    pub fn type_children(&self, t: u32, from: usize, limit: usize) -> Option<Vec<(String, TypeChild)>> {
        let len = self.type_len(t)?;
        let t = t as u16;
        Some(
            (from..len.min(from.saturating_add(limit)))
                .filter_map(|pos| {
                    let (slot, name) = self.index.type_at(t, pos / 2)?;
                    Some(if pos % 2 == 0 {
                        (name.to_string(), TypeChild::Dir(slot))
                    } else {
                        (format!("{name}{TGZ_SUFFIX}"), TypeChild::Tgz(slot))
                    })
                })
                .collect(),
        )
    }

    pub fn type_child(&self, t: u32, name: &str) -> Option<TypeChild> {
        let t = u16::try_from(t).ok()?;
        // Names never end in .tgz (manifest::rules), so the suffix decides.
        match name.strip_suffix(TGZ_SUFFIX) {
            Some(bundle) => self.index.find_in_type(t, bundle).map(TypeChild::Tgz),
            None => self.index.find_in_type(t, name).map(TypeChild::Dir),
        }
    }

    pub fn flat_children(&self, from: usize, limit: usize) -> Vec<(String, u32)> {
        (from..self.index.flat_len().min(from.saturating_add(limit)))
            .filter_map(|i| {
                let (slot, name) = self.index.flat_at(i)?;
                Some((format!("{FLAT_PREFIX}{name}{TGZ_SUFFIX}"), slot))
            })
            .collect()
    }

    pub fn flat_child(&self, name: &str) -> Option<u32> {
        let bare = name.strip_prefix(FLAT_PREFIX)?.strip_suffix(TGZ_SUFFIX)?;
        self.index.find_flat(bare)
    }

    /// One slot per kernel release: where two types serve the same release,
    /// the type whose name sorts first (docs/semantics.md). Computed on the
    /// first listing of `/by-uname/`.
    fn uname_slots(&self) -> &[u32] {
        // One link per release: the bundle `uname_child` picks (this
        // machine's architecture first), so listing and lookup agree.
        self.by_uname.get_or_init(|| {
            let mut out: Vec<u32> = Vec::new();
            let mut group: Vec<u32> = Vec::new();
            let mut last: Option<&str> = None;
            let close = |group: &mut Vec<u32>, out: &mut Vec<u32>| {
                let chosen = crate::manifest::arch::prefer_this_machine(&self.index, std::mem::take(group));
                out.extend(chosen.first());
            };
            for i in 0..self.index.uname_len() {
                let Some(slot) = self.index.uname_at(i) else { continue };
                let Some(uname) = self.index.uname(slot) else { continue };
                if last.is_some_and(|l| l != uname) {
                    close(&mut group, &mut out);
                }
                group.push(slot);
                last = Some(uname);
            }
            close(&mut group, &mut out);
            out
        })
    }

    pub fn uname_len(&self) -> usize {
        self.uname_slots().len()
    }

    /// `/by-uname/` from position `from`: (release, slot).
    pub fn uname_children(&self, from: usize, limit: usize) -> Vec<(String, u32)> {
        let slots = self.uname_slots();
        slots.iter().skip(from).take(limit).filter_map(|s| Some((self.index.uname(*s)?.to_string(), *s))).collect()
    }

    /// The bundle `/by-uname/<uname>` points to.
    pub fn uname_child(&self, uname: &str) -> Option<u32> {
        crate::manifest::arch::prefer_this_machine(&self.index, self.index.find_uname(uname)).first().copied()
    }

    /// The link target of `/by-uname/<uname>`: `../<type>/<name>`.
    pub fn uname_target(&self, slot: u32) -> Option<String> {
        let b = self.bundle(slot)?;
        Some(format!("../{}/{}", b.kind, b.name))
    }

    /// The flat names claimed by more than one type, with the types (the
    /// first one is shown). Computed once per namespace.
    pub fn flat_clashes(&self) -> &[(String, Vec<String>)] {
        self.clashes.get_or_init(|| {
            if self.counts.flat_collisions == 0 {
                return Vec::new();
            }
            let mut out = Vec::new();
            for i in 0..self.index.flat_len() {
                let Some((_, name)) = self.index.flat_at(i) else { continue };
                let kinds: Vec<String> = self
                    .types
                    .iter()
                    .filter(|(_, t)| self.index.find_in_type(*t as u16, name).is_some())
                    .map(|(n, _)| n.clone())
                    .collect();
                if kinds.len() > 1 {
                    out.push((format!("{FLAT_PREFIX}{name}{TGZ_SUFFIX}"), kinds));
                }
            }
            out
        })
    }

    /// What `self` shows that `old` did not.
    pub fn changes_since(&self, old: &Namespace) -> Changes {
        let mut changes = Changes::default();
        let mut root_changed = false;
        for (type_name, t) in &self.types {
            if old.type_len(*t).is_none() {
                changes.entries.push((Dir::Root, type_name.clone()));
                root_changed = true;
            }
            let mut changed = false;
            let len = self.index.type_len(*t as u16).unwrap_or(0);
            for i in 0..len {
                let Some((_, name)) = self.index.type_at(*t as u16, i) else { continue };
                if old.index.find_in_type(*t as u16, name).is_none() {
                    changes.entries.push((Dir::Type(*t), name.to_string()));
                    changes.entries.push((Dir::Type(*t), format!("{name}{TGZ_SUFFIX}")));
                    changes.added_bundles += 1;
                    changed = true;
                }
            }
            if changed {
                changes.dirs.push(Dir::Type(*t));
            }
        }
        let mut flat_changed = false;
        for i in 0..self.index.flat_len() {
            let Some((_, name)) = self.index.flat_at(i) else { continue };
            if old.index.find_flat(name).is_none() {
                changes.entries.push((Dir::Bundles, format!("{FLAT_PREFIX}{name}{TGZ_SUFFIX}")));
                flat_changed = true;
            }
        }
        if flat_changed {
            changes.dirs.push(Dir::Bundles);
        }
        let mut uname_changed = false;
        for i in 0..self.index.uname_len() {
            let Some(uname) = self.index.uname_at(i).and_then(|s| self.index.uname(s)) else { continue };
            if old.index.find_uname(uname).is_empty() {
                changes.entries.push((Dir::ByUname, uname.to_string()));
                uname_changed = true;
            }
        }
        if uname_changed {
            changes.dirs.push(Dir::ByUname);
        }
        if root_changed {
            changes.dirs.push(Dir::Root);
        }
        changes
    }
}

/// The served slots of `index`, in (type, name) order.
pub fn served_slots(index: &Index) -> Vec<u32> {
    let mut types: Vec<(String, u16)> =
        (0..index.type_count() as u16).filter_map(|t| Some((index.type_name(t)?.to_string(), t))).collect();
    types.sort();
    types
        .iter()
        .flat_map(|(_, t)| (0..index.type_len(*t).unwrap_or(0)).filter_map(move |i| index.type_at(*t, i)))
        .map(|(slot, _)| slot)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Package;

    fn deb(dir: &str, sha: bool) -> BundleSpec {
        let mut p = Package::new(format!("http://x/{dir}/linux-headers-1.0-1-amd64_1_amd64.deb"));
        p.sha256 = sha.then(|| "0".repeat(64));
        BundleSpec { kind: "debian".into(), name: None, uname: None, signed_by: None, packages: vec![p] }
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
        assert!(changes.entries.contains(&(Dir::Type(t), "2.0-1-amd64".to_string())));
        assert!(changes.dirs.contains(&Dir::Bundles));
        assert!(changes.entries.contains(&(Dir::ByUname, "2.0-1-amd64".to_string())), "/by-uname/ too");
        assert!(changes.dirs.contains(&Dir::ByUname));
    }

    #[test]
    fn one_flat_name_for_two_types_is_reported() {
        let mut m = Manifest::default();
        m.insert(deb("a", true));
        let mut garden = deb("g", true);
        garden.kind = "garden".into();
        m.insert(garden);
        let ns = Namespace::build(&m, None);
        assert_eq!(ns.counts.flat_collisions, 1);
        assert_eq!(ns.flat_clashes()[0].1, vec!["debian".to_string(), "garden".to_string()]);
        // The type directories both show their bundle.
        assert!(ns.type_child(ns.type_by_name("garden").unwrap(), "1.0-1-amd64").is_some());
        // /by-uname/ shows the release once, pointing at the type that sorts first.
        assert_eq!(ns.uname_len(), 1);
        let slot = ns.uname_child("1.0-1-amd64").unwrap();
        assert_eq!(ns.uname_target(slot).as_deref(), Some("../debian/1.0-1-amd64"));
    }
}
