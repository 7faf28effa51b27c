//! The type-independent part of a layout: copy parts of the staging tree
//! ("mounts") into the bundle tree, then settle every symlink:
//! - it resolves inside the bundle: it stays, as a relative link;
//! - it resolves elsewhere in the extracted packages: replaced by a copy of
//!   what it points to (Ubuntu's flavour headers point into the common ones);
//! - it dangles, loops, or escapes the extraction root: dropped.

use super::{BundleTree, ItemKind, TreeItem};
use crate::package::{Blob, Limits};
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
    /// Children by name: indexes into the engine's node arena.
    Dir(BTreeMap<String, usize>),
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

/// The bundle tree being laid out: an arena of nodes (index 0 is the root),
/// walked with explicit stacks. No walk here recurses: archive depth is
/// input, and input must not choose our stack depth.
pub(crate) struct Engine<'t> {
    pub tree: &'t StagingTree,
    /// staging directory → bundle path prefix ("" is the bundle root).
    mounts: Vec<(NodeId, String)>,
    excluded: Vec<String>,
    nodes: Vec<OutNode>,
    /// The bounds of what the layout makes (not only of what the archives
    /// hold: a few hundred bytes of links copied through each other can
    /// make millions of entries).
    limits: Limits,
    /// File bytes placed so far, copies counted.
    bytes: u64,
}

/// Path bounds of the bundle tree, as the archive readers apply to input.
const MAX_PATH_BYTES: usize = 4096;
const MAX_PATH_DEPTH: usize = 256;

fn split(path: &str) -> Vec<&str> {
    path.split('/').filter(|c| !c.is_empty()).collect()
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
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
    pub fn new(tree: &'t StagingTree, limits: Limits) -> Self {
        Engine {
            tree,
            mounts: Vec::new(),
            excluded: Vec::new(),
            nodes: vec![OutNode::Dir(BTreeMap::new())],
            limits,
            bytes: 0,
        }
    }

    /// Add a node, within the bundle's entry and byte limits.
    fn push_node(&mut self, node: OutNode, path: &str) -> Result<usize> {
        if self.nodes.len() >= self.limits.max_entries {
            bail!(
                "the layout makes more than {} entries (at {}; links copied into each other?)",
                self.limits.max_entries,
                crate::manifest::rules::shown(path)
            );
        }
        if path.len() > MAX_PATH_BYTES || path.split('/').count() > MAX_PATH_DEPTH {
            bail!(
                "the layout makes a path deeper than {MAX_PATH_DEPTH} levels or longer than {MAX_PATH_BYTES} bytes ({}…)",
                crate::manifest::rules::shown(&path[..path.len().min(200)])
            );
        }
        if let OutNode::File { blob, .. } = &node {
            self.bytes += blob.len() as u64;
            if self.bytes > self.limits.max_total_bytes {
                bail!(
                    "the layout makes more than {} bytes of contents (links copied into each other?)",
                    self.limits.max_total_bytes
                );
            }
        }
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
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
        let prefix = prefix.trim_matches('/').to_string();
        self.mounts.push((src, prefix.clone()));
        self.copy_dir(src, &prefix, merge, &[])
    }

    fn copy_dir(&mut self, src: NodeId, dest: &str, merge: Merge, chain: &[NodeId]) -> Result<()> {
        let mut stack = vec![(src, dest.to_string())];
        while let Some((src, dest)) = stack.pop() {
            self.ensure_dir(&dest)?;
            let Some(children) = self.tree.children(src) else { continue };
            for (name, &child) in children {
                let path = join(&dest, name);
                if self.is_excluded(&path) {
                    continue;
                }
                let node = self.tree.node(child);
                match &node.kind {
                    NodeKind::Dir(_) => stack.push((child, path)),
                    NodeKind::File(blob) => {
                        let exec = node.mode & 0o111 != 0;
                        self.put(&path, OutNode::File { blob: blob.clone(), exec, mtime: node.mtime }, merge)?
                    }
                    NodeKind::Symlink(_) => self.put(
                        &path,
                        OutNode::Pending { link: child, chain: chain.to_vec(), mtime: node.mtime },
                        merge,
                    )?,
                }
            }
        }
        Ok(())
    }

    fn children_mut(&mut self, dir: usize) -> Option<&mut BTreeMap<String, usize>> {
        match self.nodes.get_mut(dir) {
            Some(OutNode::Dir(children)) => Some(children),
            _ => None,
        }
    }

    fn ensure_dir(&mut self, path: &str) -> Result<usize> {
        let mut cur = 0;
        for comp in split(path) {
            let next = self.children_mut(cur).and_then(|c| c.get(comp)).copied();
            cur = match next {
                Some(id) if matches!(self.nodes[id], OutNode::Dir(_)) => id,
                _ => {
                    let id = self.push_node(OutNode::Dir(BTreeMap::new()), path)?;
                    let Some(children) = self.children_mut(cur) else {
                        bail!("bundle path {path} crosses a non-directory")
                    };
                    children.insert(comp.to_string(), id);
                    id
                }
            };
        }
        Ok(cur)
    }

    /// Place a non-directory at `path`, under the merge rule.
    fn put(&mut self, path: &str, node: OutNode, merge: Merge) -> Result<()> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let parent = self.ensure_dir(dir)?;
        let existing = self.children_mut(parent).and_then(|c| c.get(name)).copied();
        if let Some(old) = existing {
            if matches!(self.nodes[old], OutNode::Dir(_)) {
                log::debug!("layout: {path} stays a directory");
                return Ok(());
            }
            if merge == Merge::KeepNewer && self.nodes[old].mtime() > node.mtime() {
                return Ok(());
            }
        }
        let id = self.push_node(node, path)?;
        if let Some(children) = self.children_mut(parent) {
            children.insert(name.to_string(), id);
        }
        Ok(())
    }

    fn lookup(&self, path: &str) -> Option<usize> {
        let mut cur = 0;
        for comp in split(path) {
            let OutNode::Dir(children) = &self.nodes[cur] else { return None };
            cur = *children.get(comp)?;
        }
        Some(cur)
    }

    pub(crate) fn get(&self, path: &str) -> Option<&OutNode> {
        self.lookup(path).map(|id| &self.nodes[id])
    }

    pub(crate) fn get_mut(&mut self, path: &str) -> Option<&mut OutNode> {
        self.lookup(path).map(|id| &mut self.nodes[id])
    }

    pub(crate) fn remove(&mut self, path: &str) {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        if let Some(parent) = self.lookup(dir) {
            if let Some(children) = self.children_mut(parent) {
                children.remove(name);
            }
        }
    }

    /// Every node with its path, in the bundle's canonical order: depth
    /// first, names sorted bytewise, each directory before its contents.
    fn walk(&self) -> Vec<(String, usize)> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack = vec![(String::new(), 0usize)];
        while let Some((path, id)) = stack.pop() {
            if let OutNode::Dir(children) = &self.nodes[id] {
                for (name, &child) in children.iter().rev() {
                    stack.push((join(&path, name), child));
                }
            }
            out.push((path, id));
        }
        out
    }

    /// Paths of the nodes `keep` selects, in canonical order.
    pub(crate) fn paths_where(&self, keep: impl Fn(&str, &OutNode) -> bool) -> Vec<String> {
        self.walk().into_iter().filter(|(p, id)| keep(p, &self.nodes[*id])).map(|(p, _)| p).collect()
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
            let pending: Vec<(String, NodeId, Vec<NodeId>)> = self
                .walk()
                .into_iter()
                .filter_map(|(path, id)| match &self.nodes[id] {
                    OutNode::Pending { link, chain, .. } => Some((path, *link, chain.clone())),
                    _ => None,
                })
                .collect();
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
                self.bytes += blob.len() as u64;
                if self.bytes > self.limits.max_total_bytes {
                    bail!(
                        "the layout makes more than {} bytes of contents (links copied into each other?)",
                        self.limits.max_total_bytes
                    );
                }
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

    /// Flatten into the bundle's canonical order.
    pub fn into_tree(self) -> BundleTree {
        let mut items = Vec::with_capacity(self.nodes.len());
        for (path, id) in self.walk() {
            let item = match &self.nodes[id] {
                OutNode::Dir(_) => TreeItem { path, kind: ItemKind::Dir, mode: 0o755 },
                OutNode::File { blob, exec, .. } => {
                    TreeItem { path, kind: ItemKind::File(blob.clone()), mode: if *exec { 0o755 } else { 0o644 } }
                }
                OutNode::Symlink(target) => TreeItem { path, kind: ItemKind::Symlink(target.clone()), mode: 0o777 },
                OutNode::Pending { .. } => continue, // settle_links leaves none
            };
            items.push(item);
        }
        BundleTree { items }
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
