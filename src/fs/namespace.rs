//! The mount's namespace, derived from the manifest, and its inode numbers.
//!
//! ```text
//! /                               ino 1
//! /<type>/                        ino 16 + type number
//! /<type>/<name>/                 ino (slot+1) << 32 | 0     the bundle's tree (pack entry 0)
//! /<type>/<name>/<path>           ino (slot+1) << 32 | entry index in the pack
//! /<type>/<name>.tgz              ino (slot+1) << 32 | 0xffff_ffff
//! /bundles/bundle-<name>.tgz      the same inode as /<type>/<name>.tgz
//! /.kpackfs/status, status.json   ino 4, 5
//! ```
//! Slots and type numbers are assigned once per id and type and never
//! reused while mounted, so inode numbers stay valid across manifest
//! refreshes. A bundle's pack is deterministic, so entry indexes stay valid
//! across eviction and rebuild.

use crate::manifest::{Entry, Manifest};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub const ROOT: u64 = 1;
pub const BUNDLES_DIR: u64 = 2;
pub const META_DIR: u64 = 3;
pub const STATUS: u64 = 4;
pub const STATUS_JSON: u64 = 5;
const TYPE_BASE: u64 = 16;
const TGZ: u32 = u32::MAX;

pub const BUNDLES_NAME: &str = "bundles";
pub const META_NAME: &str = ".kpackfs";

/// What an inode number denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ino {
    Root,
    BundlesDir,
    MetaDir,
    Status,
    StatusJson,
    TypeDir(u32),
    /// An entry of a bundle's tree (index 0 is the bundle directory).
    Entry {
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
        Some(if low == TGZ { Ino::Tgz { slot } } else { Ino::Entry { slot, index: low } })
    }

    pub fn encode(self) -> u64 {
        match self {
            Ino::Root => ROOT,
            Ino::BundlesDir => BUNDLES_DIR,
            Ino::MetaDir => META_DIR,
            Ino::Status => STATUS,
            Ino::StatusJson => STATUS_JSON,
            Ino::TypeDir(t) => TYPE_BASE + t as u64,
            Ino::Entry { slot, index } => ((slot as u64 + 1) << 32) | index as u64,
            Ino::Tgz { slot } => ((slot as u64 + 1) << 32) | TGZ as u64,
        }
    }
}

/// One bundle as the mount shows it.
#[derive(Debug, Clone)]
pub struct BundleInfo {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub entry: Arc<Entry>,
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

/// Stable numbering, append-only for the life of the mount.
#[derive(Debug, Default)]
pub struct Slots {
    by_id: HashMap<String, u32>,
    types: HashMap<String, u32>,
}

impl Slots {
    fn slot(&mut self, id: &str) -> u32 {
        let n = self.by_id.len() as u32;
        *self.by_id.entry(id.to_string()).or_insert(n)
    }

    fn type_number(&mut self, kind: &str) -> u32 {
        let n = self.types.len() as u32;
        *self.types.entry(kind.to_string()).or_insert(n)
    }
}

#[derive(Debug, Default)]
pub struct Namespace {
    /// Indexed by slot; `None` for a slot not in this manifest.
    bundles: Vec<Option<BundleInfo>>,
    /// Type number → (name, children sorted by name).
    types: BTreeMap<u32, (String, Vec<(String, TypeChild)>)>,
    /// Root listing: type names sorted, with their numbers.
    type_names: Vec<(String, u32)>,
    /// `bundle-<name>.tgz` → slot, sorted.
    flat: Vec<(String, u32)>,
    pub named: usize,
    pub unnamed: usize,
    /// Entries hidden because another entry has the same type and name.
    pub shadowed: usize,
}

impl Namespace {
    /// Build from a manifest. Two entries with the same type and name: the
    /// one whose packages all carry sha256 wins, then the smaller id.
    pub fn build(manifest: &Manifest, slots: &mut Slots) -> Namespace {
        let mut ns = Namespace { unnamed: manifest.unnamed.len(), ..Namespace::default() };
        let mut chosen: BTreeMap<(String, String), (&String, &Entry)> = BTreeMap::new();
        for (id, entry) in &manifest.entries {
            let Some(name) = entry.name.as_ref().filter(|n| crate::manifest::is_valid_component(n)) else { continue };
            let key = (entry.kind.clone(), name.clone());
            let verified = |e: &Entry| e.packages.iter().all(|p| p.sha256.is_some());
            match chosen.get(&key) {
                Some((_, current)) if verified(current) && !verified(entry) => ns.shadowed += 1,
                Some((other_id, current)) if verified(current) == verified(entry) && *other_id < id => ns.shadowed += 1,
                Some(_) => {
                    ns.shadowed += 1;
                    chosen.insert(key, (id, entry));
                }
                None => {
                    chosen.insert(key, (id, entry));
                }
            }
        }
        if ns.shadowed > 0 {
            log::info!("{} manifest entries share a type and name with another; one of each is shown", ns.shadowed);
        }
        let mut flat: BTreeMap<String, u32> = BTreeMap::new();
        for ((kind, name), (id, entry)) in chosen {
            let slot = slots.slot(id);
            let t = slots.type_number(&kind);
            if ns.bundles.len() <= slot as usize {
                ns.bundles.resize(slot as usize + 1, None);
            }
            ns.bundles[slot as usize] = Some(BundleInfo {
                id: id.clone(),
                kind: kind.clone(),
                name: name.clone(),
                entry: Arc::new(entry.clone()),
            });
            let (_, children) = ns.types.entry(t).or_insert_with(|| (kind.clone(), Vec::new()));
            children.push((name.clone(), TypeChild::Dir(slot)));
            children.push((format!("{name}.tgz"), TypeChild::Tgz(slot)));
            flat.entry(format!("bundle-{name}.tgz")).or_insert(slot);
            ns.named += 1;
        }
        for (t, (name, children)) in ns.types.iter_mut() {
            children.sort_by(|a, b| a.0.cmp(&b.0));
            children.dedup_by(|a, b| a.0 == b.0);
            ns.type_names.push((name.clone(), *t));
        }
        ns.type_names.sort();
        ns.flat = flat.into_iter().collect();
        ns
    }

    pub fn bundle(&self, slot: u32) -> Option<&BundleInfo> {
        self.bundles.get(slot as usize).and_then(Option::as_ref)
    }

    pub fn bundles(&self) -> impl Iterator<Item = (u32, &BundleInfo)> {
        self.bundles.iter().enumerate().filter_map(|(s, b)| b.as_ref().map(|b| (s as u32, b)))
    }

    pub fn slot_of_id(&self, id: &str) -> Option<u32> {
        self.bundles().find(|(_, b)| b.id == id).map(|(s, _)| s)
    }

    pub fn type_names(&self) -> &[(String, u32)] {
        &self.type_names
    }

    pub fn type_dir(&self, t: u32) -> Option<(&str, &[(String, TypeChild)])> {
        self.types.get(&t).map(|(n, c)| (n.as_str(), c.as_slice()))
    }

    pub fn type_by_name(&self, name: &str) -> Option<u32> {
        self.type_names.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok().map(|i| self.type_names[i].1)
    }

    pub fn type_child(&self, t: u32, name: &str) -> Option<TypeChild> {
        let (_, children) = self.types.get(&t)?;
        children.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok().map(|i| children[i].1)
    }

    pub fn flat(&self) -> &[(String, u32)] {
        &self.flat
    }

    pub fn flat_child(&self, name: &str) -> Option<u32> {
        self.flat.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok().map(|i| self.flat[i].1)
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
            Ino::Entry { slot: 0, index: 0 },
            Ino::Entry { slot: 6472, index: 99 },
            Ino::Tgz { slot: 5 },
        ] {
            assert_eq!(Ino::decode(ino.encode()), Some(ino));
        }
    }

    #[test]
    fn names_collide_deterministically_and_slots_stay() {
        let mut m = Manifest::default();
        let deb = |u: &str| Package::new(format!("http://x/{u}/linux-headers-1.0-1-amd64_1_amd64.deb"));
        m.insert(Entry { kind: "debian".into(), name: None, uname: None, packages: vec![deb("a")] });
        let mut verified = deb("b");
        verified.sha256 = Some("0".repeat(64));
        let winner = m.insert(Entry { kind: "debian".into(), name: None, uname: None, packages: vec![verified] });
        let mut slots = Slots::default();
        let ns = Namespace::build(&m, &mut slots);
        assert_eq!(ns.shadowed, 1);
        let t = ns.type_by_name("debian").unwrap();
        let Some(TypeChild::Dir(slot)) = ns.type_child(t, "1.0-1-amd64") else { panic!() };
        assert_eq!(ns.bundle(slot).unwrap().id, winner);
        assert_eq!(ns.flat_child("bundle-1.0-1-amd64.tgz"), Some(slot));
        // A refresh keeps the numbering.
        let ns2 = Namespace::build(&m, &mut slots);
        assert_eq!(ns2.type_child(t, "1.0-1-amd64.tgz"), Some(TypeChild::Tgz(slot)));
    }
}
