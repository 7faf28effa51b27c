//! Per-distribution normalisation: extracted packages → a relocatable bundle
//! tree with kernel-packer's root, `BUNDLE_BUILD_DIR` and `BUNDLE_*` files.
//!
//! | type                  | root                                  | BUNDLE_BUILD_DIR                 |
//! |-----------------------|---------------------------------------|----------------------------------|
//! | debian, garden, kops  | the extraction root (`usr/`, `lib/`)  | `./usr/src/linux-headers-<uname>` |
//! | ubuntu                | `usr/src/linux-headers-<uname>`       | `.`                              |
//! | redhat, oracle        | `usr/src/kernels/<uname>`             | `.`                              |
//! | suse                  | `-obj/<arch>/<flavour>` merged with the base tree | `.`                  |
//!
//! See docs/layouts.md.

pub mod coreos;
mod debian;
mod engine;
mod meta;
mod rpm;
mod suse;
mod ubuntu;

pub use engine::relative_path;
pub use meta::Meta;

use crate::package::{Blob, Member};
use crate::staging::StagingTree;
use anyhow::{bail, Context, Result};
use std::sync::Arc;

/// What one bundle entry is.
#[derive(Debug, Clone)]
pub enum ItemKind {
    Dir,
    File(Blob),
    Symlink(String),
}

/// One entry of a bundle tree. `path` is relative to the bundle root ("" is the root).
#[derive(Debug, Clone)]
pub struct TreeItem {
    pub path: String,
    pub kind: ItemKind,
    pub mode: u32,
}

/// A bundle tree in canonical order (depth first, names sorted bytewise).
#[derive(Debug, Clone, Default)]
pub struct BundleTree {
    pub items: Vec<TreeItem>,
}

/// The layout family of a manifest type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Debian,
    Ubuntu,
    RedHat,
    Oracle,
    Suse,
}

impl Family {
    pub fn of(kind: &str) -> Result<Family> {
        Ok(match kind {
            "debian" | "garden" | "kops" => Family::Debian,
            "ubuntu" => Family::Ubuntu,
            "redhat" => Family::RedHat,
            "oracle" => Family::Oracle,
            "suse" => Family::Suse,
            other => {
                bail!("no layout for type {other} (supported: debian, garden, kops, ubuntu, redhat, oracle, suse)")
            }
        })
    }
}

/// One extracted package, named for error messages.
pub struct Extracted {
    pub file_name: String,
    pub members: Vec<Member>,
}

/// What a layout needs to know besides the packages.
pub struct Request<'a> {
    pub kind: &'a str,
    /// BUNDLE_CHECKSUM: the manifest id.
    pub checksum: &'a str,
    /// The manifest's uname, used to pick the headers when several are present.
    pub uname: Option<&'a str>,
    /// Bounds on what the layout makes (entries, bytes, depth).
    pub limits: crate::package::Limits,
}

/// The result of a layout: the tree (BUNDLE_* files included) and its meta values.
pub struct LaidOut {
    pub tree: BundleTree,
    pub meta: Meta,
}

/// Stage the packages (in the given order, later ones over earlier ones, as
/// successive `dpkg -x` would) and lay them out for `req.kind`.
pub fn lay_out(req: &Request<'_>, packages: Vec<Extracted>) -> Result<LaidOut> {
    let family = Family::of(req.kind)?;
    let mut tree = StagingTree::new();
    for package in packages {
        let name = package.file_name;
        for member in package.members {
            tree.add(member).with_context(|| format!("package {name}"))?;
        }
    }
    let (engine, uname, build_dir) = match family {
        Family::Debian => debian::layout(&tree, req.uname, req.limits)?,
        Family::Ubuntu => ubuntu::layout(&tree, req.uname, req.limits)?,
        Family::RedHat => rpm::layout(&tree, req.uname, false, req.limits)?,
        Family::Oracle => rpm::layout(&tree, req.uname, true, req.limits)?,
        Family::Suse => suse::layout(&tree, req.uname, req.limits)?,
    };
    if let Some(expected) = req.uname {
        if expected != uname {
            log::warn!(
                "bundle {}: the manifest says uname {expected}, the packages say {uname}; using {uname}",
                req.checksum
            );
        }
    }
    let meta = Meta { checksum: req.checksum.to_string(), distro: req.kind.to_string(), uname, build_dir };
    let mut tree = engine.into_tree();
    insert_meta_files(&mut tree, &meta);
    Ok(LaidOut { tree, meta })
}

/// A tree that is already a bundle (a `.tgz` from the remote tier): staged
/// as it is, in canonical order, links kept where they resolve inside it.
/// The input is hostile: the staging tree's checks apply.
pub fn from_bundle(members: Vec<Member>, limits: crate::package::Limits) -> Result<BundleTree> {
    let mut tree = StagingTree::new();
    for member in members {
        tree.add(member)?;
    }
    let mut engine = engine::Engine::new(&tree, limits);
    engine.mount(crate::staging::ROOT, "", engine::Merge::Replace)?;
    engine.settle_links()?;
    Ok(engine.into_tree())
}

/// Put the BUNDLE_* files at the root, keeping the canonical order.
/// A tree a build made (a prepared kernel source tree): staged like a
/// bundle from the tier, with its BUNDLE_* files added.
pub fn from_prepared(members: Vec<Member>, meta: Meta, limits: crate::package::Limits) -> Result<LaidOut> {
    let mut tree = from_bundle(members, limits)?;
    insert_meta_files(&mut tree, &meta);
    Ok(LaidOut { tree, meta })
}

fn insert_meta_files(tree: &mut BundleTree, meta: &Meta) {
    // A package's own root-level BUNDLE_* files never shadow ours.
    tree.items.retain(|e| !e.path.starts_with("BUNDLE_") || e.path.contains('/'));
    for (name, value) in meta.files() {
        let entry =
            TreeItem { path: name.to_string(), kind: ItemKind::File(Arc::new(value.into_bytes())), mode: 0o644 };
        // Root-level names: find the first root child that sorts after it.
        let pos = tree.items[1..]
            .iter()
            .position(|e| !e.path.contains('/') && e.path.as_str() > name)
            .map_or(tree.items.len(), |p| p + 1);
        tree.items.insert(pos, entry);
    }
}

/// Pick one directory among candidates: the manifest's choice if present,
/// else the only one.
fn pick_one(
    what: &str,
    candidates: Vec<(String, crate::staging::NodeId)>,
    wanted: Option<&str>,
) -> Result<(String, crate::staging::NodeId)> {
    if let Some(w) = wanted {
        if let Some(hit) = candidates.iter().find(|(n, _)| n == w) {
            return Ok(hit.clone());
        }
    }
    match candidates.len() {
        1 => Ok(candidates.into_iter().next().expect("one candidate")),
        0 => bail!("the packages hold no {what}"),
        _ => bail!(
            "the packages hold several {what}: {} (the manifest's uname picks one)",
            candidates.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}
