//! The type-independent part of a layout: copy parts of the staging tree
//! ("mounts") into the bundle tree, then settle every symlink:
//! - it resolves inside the bundle: it stays, as a relative link;
//! - it resolves elsewhere in the extracted packages: replaced by a copy of
//!   what it points to (Ubuntu's flavour headers point into the common ones);
//! - it dangles, loops, or escapes the extraction root: dropped.

use super::{BundleTree, ItemKind, TreeItem};
use crate::package::Blob;
use crate::staging::{NodeId, NodeKind, StagingTree};
use anyhow::{bail, Result};
use std::collections::BTreeMap;

/// How a later mount treats a path an earlier one already filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// The later one wins (extraction order).
    Replace,
    /// The earlier one stays if it is newer (`rsync -u`).
    KeepNewer,
}

#[derive(Debug)]
pub(crate) enum OutNode {
    Dir(BTreeMap<String, OutNode>),
    File {
        blob: Blob,
        exec: bool,
        mtime: i64,
    },
    Symlink(String),
    /// A symlink still to settle: the staging node, and the directories
    /// already copied through links on the way here (loop guard).
    Pending {
        link: NodeId,
        chain: Vec<NodeId>,
        mtime: i64,
    },
}

impl OutNode {
    fn mtime(&self) -> i64 {
        match self {
            OutNode::File { mtime, .. } | OutNode::Pending { mtime, .. } => *mtime,
            _ => i64::MIN,
        }
    }
}

/// Directory copies through links, at most this deep (a guard, not a feature).
const MAX_COPY_CHAIN: usize = 8;

pub(crate) struct Engine<'t> {
    pub tree: &'t StagingTree,
    /// staging directory → bundle path prefix ("" is the bundle root).
    mounts: Vec<(NodeId, String)>,
    excluded: Vec<String>,
    pub root: OutNode,
}

fn split(path: &str) -> Vec<&str> {
    path.split('/').filter(|c| !c.is_empty()).collect()
}

/// A relative link from directory `from_dir` to `to` (both bundle paths).
pub fn relative_path(from_dir: &str, to: &str) -> String {
    let from = split(from_dir);
    let to = split(to);
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend(&to[common..]);
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

impl<'t> Engine<'t> {
    pub fn new(tree: &'t StagingTree) -> Self {
        Engine { tree, mounts: Vec::new(), excluded: Vec::new(), root: OutNode::Dir(BTreeMap::new()) }
    }

    /// Leave `path` (and everything under it) out of the bundle.
    pub fn exclude(&mut self, path: &str) {
        self.excluded.push(path.trim_matches('/').to_string());
    }

    fn is_excluded(&self, path: &str) -> bool {
        self.excluded.iter().any(|e| path == e || path.strip_prefix(e.as_str()).is_some_and(|r| r.starts_with('/')))
    }

    /// Copy the staging directory `src` to bundle path `prefix`.
    pub fn mount(&mut self, src: NodeId, prefix: &str, merge: Merge) -> Result<()> {
        self.mounts.push((src, prefix.trim_matches('/').to_string()));
        let prefix = prefix.trim_matches('/').to_string();
        self.copy_dir(src, &prefix, merge, &[])
    }

    fn copy_dir(&mut self, src: NodeId, dest: &str, merge: Merge, chain: &[NodeId]) -> Result<()> {
        self.ensure_dir(dest)?;
        let Some(children) = self.tree.children(src) else { return Ok(()) };
        for (name, &child) in children {
            let path = if dest.is_empty() { name.clone() } else { format!("{dest}/{name}") };
            if self.is_excluded(&path) {
                continue;
            }
            let node = self.tree.node(child);
            match &node.kind {
                NodeKind::Dir(_) => self.copy_dir(child, &path, merge, chain)?,
                NodeKind::File(blob) => {
                    let exec = node.mode & 0o111 != 0;
                    self.put(&path, OutNode::File { blob: blob.clone(), exec, mtime: node.mtime }, merge)?
                }
                NodeKind::Symlink(_) => {
                    self.put(&path, OutNode::Pending { link: child, chain: chain.to_vec(), mtime: node.mtime }, merge)?
                }
            }
        }
        Ok(())
    }

    fn ensure_dir(&mut self, path: &str) -> Result<()> {
        let mut cur = &mut self.root;
        for comp in split(path) {
            let OutNode::Dir(children) = cur else { bail!("bundle path {path} crosses a non-directory") };
            let slot = children.entry(comp.to_string()).or_insert_with(|| OutNode::Dir(BTreeMap::new()));
            if !matches!(slot, OutNode::Dir(_)) {
                *slot = OutNode::Dir(BTreeMap::new());
            }
            cur = slot;
        }
        Ok(())
    }

    /// Place a non-directory at `path`, under the merge rule.
    fn put(&mut self, path: &str, node: OutNode, merge: Merge) -> Result<()> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        self.ensure_dir(dir)?;
        let OutNode::Dir(children) = self.get_mut(dir).expect("directory just ensured") else { unreachable!() };
        if let Some(old) = children.get(name) {
            if matches!(old, OutNode::Dir(_)) {
                log::debug!("layout: {path} stays a directory");
                return Ok(());
            }
            if merge == Merge::KeepNewer && old.mtime() > node.mtime() {
                return Ok(());
            }
        }
        children.insert(name.to_string(), node);
        Ok(())
    }

    pub(crate) fn get(&self, path: &str) -> Option<&OutNode> {
        let mut cur = &self.root;
        for comp in split(path) {
            let OutNode::Dir(children) = cur else { return None };
            cur = children.get(comp)?;
        }
        Some(cur)
    }

    pub(crate) fn get_mut(&mut self, path: &str) -> Option<&mut OutNode> {
        let mut cur = &mut self.root;
        for comp in split(path) {
            let OutNode::Dir(children) = cur else { return None };
            cur = children.get_mut(comp)?;
        }
        Some(cur)
    }

    pub(crate) fn remove(&mut self, path: &str) {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        if let Some(OutNode::Dir(children)) = self.get_mut(dir) {
            children.remove(name);
        }
    }

    /// The bundle path of a staging node, if a mount covers it.
    pub fn bundle_path_of(&self, mut node: NodeId) -> Option<String> {
        let mut rel: Vec<&str> = Vec::new();
        loop {
            if let Some((_, prefix)) = self.mounts.iter().rev().find(|(src, _)| *src == node) {
                rel.reverse();
                let mut parts = split(prefix);
                parts.extend(rel);
                return Some(parts.join("/"));
            }
            if node == crate::staging::ROOT {
                return None;
            }
            let n = self.tree.node(node);
            rel.push(n.name.as_str());
            node = n.parent;
        }
    }

    /// Map an absolute path of the installed system to a bundle path.
    pub fn map_absolute(&self, abs: &str) -> Option<String> {
        let node = self.tree.resolve(crate::staging::ROOT, abs)?;
        let path = self.bundle_path_of(node)?;
        (!self.is_excluded(&path) && self.get(&path).is_some()).then_some(path)
    }

    /// Settle all pending links; copies through links may add more.
    pub fn settle_links(&mut self) -> Result<()> {
        for _round in 0..=MAX_COPY_CHAIN + 1 {
            let mut pending = Vec::new();
            collect_pending(&self.root, String::new(), &mut pending);
            if pending.is_empty() {
                return Ok(());
            }
            for (path, link, chain) in pending {
                self.settle(&path, link, chain)?;
            }
        }
        bail!("symlinks did not settle (copy loop)")
    }

    fn settle(&mut self, path: &str, link: NodeId, chain: Vec<NodeId>) -> Result<()> {
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        let Some(target) = self.tree.resolve_link(link) else {
            log::debug!("layout: dropping dangling or escaping symlink {path}");
            self.remove(path);
            return Ok(());
        };
        let mapped = self.bundle_path_of(target).filter(|p| !self.is_excluded(p) && self.get(p).is_some());
        if let Some(to) = mapped {
            let to_parts = split(&to);
            let dir_parts = split(dir);
            if dir_parts.starts_with(&to_parts) || to == path {
                log::debug!("layout: dropping symlink {path} to its own ancestor {to} (a loop)");
                self.remove(path);
            } else if let Some(slot) = self.get_mut(path) {
                *slot = OutNode::Symlink(relative_path(dir, &to));
            }
            return Ok(());
        }
        // Outside the bundle: replace the link by what it points to.
        let target_node = self.tree.node(target);
        match &target_node.kind {
            NodeKind::File(blob) => {
                let exec = target_node.mode & 0o111 != 0;
                if let Some(slot) = self.get_mut(path) {
                    *slot = OutNode::File { blob: blob.clone(), exec, mtime: target_node.mtime };
                }
            }
            NodeKind::Dir(_) => {
                if chain.contains(&target) || chain.len() >= MAX_COPY_CHAIN {
                    log::debug!("layout: dropping symlink {path}: copying it would loop");
                    self.remove(path);
                    return Ok(());
                }
                self.remove(path);
                let mut chain = chain;
                chain.push(target);
                self.copy_dir(target, path, Merge::Replace, &chain)?;
            }
            NodeKind::Symlink(_) => unreachable!("resolve follows every link"),
        }
        Ok(())
    }

    /// Flatten into the bundle's canonical order: depth first, names sorted
    /// bytewise, each directory before its contents.
    pub fn into_tree(self) -> BundleTree {
        let mut entries = Vec::new();
        flatten(&self.root, String::new(), &mut entries);
        BundleTree { items: entries }
    }
}

fn collect_pending(node: &OutNode, path: String, out: &mut Vec<(String, NodeId, Vec<NodeId>)>) {
    match node {
        OutNode::Dir(children) => {
            for (name, child) in children {
                let p = if path.is_empty() { name.clone() } else { format!("{path}/{name}") };
                collect_pending(child, p, out);
            }
        }
        OutNode::Pending { link, chain, .. } => out.push((path, *link, chain.clone())),
        _ => {}
    }
}

fn flatten(node: &OutNode, path: String, out: &mut Vec<TreeItem>) {
    match node {
        OutNode::Dir(children) => {
            out.push(TreeItem { path: path.clone(), kind: ItemKind::Dir, mode: 0o755 });
            for (name, child) in children {
                let p = if path.is_empty() { name.clone() } else { format!("{path}/{name}") };
                flatten(child, p, out);
            }
        }
        OutNode::File { blob, exec, .. } => {
            out.push(TreeItem { path, kind: ItemKind::File(blob.clone()), mode: if *exec { 0o755 } else { 0o644 } })
        }
        OutNode::Symlink(target) => out.push(TreeItem { path, kind: ItemKind::Symlink(target.clone()), mode: 0o777 }),
        OutNode::Pending { .. } => unreachable!("links are settled before flattening"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(relative_path("lib/modules/6.1", "usr/src/linux-headers-6.1"), "../../../usr/src/linux-headers-6.1");
        assert_eq!(relative_path("usr/src/a", "usr/src/b/Makefile"), "../b/Makefile");
        assert_eq!(relative_path("", "x/y"), "x/y");
        assert_eq!(relative_path("a/b", "a/b/c"), "c");
    }
}
