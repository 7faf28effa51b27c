//! The staging tree: packages extracted in memory, as `dpkg -x` or
//! `rpm2cpio | cpio -id` would lay them out on disk, but with no disk writes.
//!
//! Insertion refuses what would let an archive write outside its target on a
//! real filesystem: an entry under an in-archive symlink, a hard link that does
//! not name an earlier regular file, replacing a non-empty directory.

use crate::package::{Blob, Item, Member};
use anyhow::{bail, Result};
use std::collections::BTreeMap;

pub type NodeId = u32;
pub const ROOT: NodeId = 0;
/// Symlinks followed while resolving one path, as the kernel's MAXSYMLINKS.
const MAX_HOPS: u32 = 40;

#[derive(Debug, Clone)]
pub enum NodeKind {
    Dir(BTreeMap<String, NodeId>),
    File(Blob),
    Symlink(String),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub parent: NodeId,
    pub kind: NodeKind,
    pub mode: u32,
    pub mtime: i64,
}

#[derive(Debug, Clone)]
pub struct StagingTree {
    nodes: Vec<Node>,
}

impl Default for StagingTree {
    fn default() -> Self {
        StagingTree::new()
    }
}

impl StagingTree {
    pub fn new() -> Self {
        let root =
            Node { name: String::new(), parent: ROOT, kind: NodeKind::Dir(BTreeMap::new()), mode: 0o755, mtime: 0 };
        StagingTree { nodes: vec![root] }
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }

    pub fn children(&self, id: NodeId) -> Option<&BTreeMap<String, NodeId>> {
        match &self.node(id).kind {
            NodeKind::Dir(c) => Some(c),
            _ => None,
        }
    }

    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        (self.nodes.len() - 1) as NodeId
    }

    /// Add one archive entry, as extracting it over what is already there.
    pub fn add(&mut self, entry: Member) -> Result<()> {
        let (dir_path, name) = match entry.path.rsplit_once('/') {
            Some((d, n)) => (d, n),
            None => ("", entry.path.as_str()),
        };
        let parent = self.make_dirs(dir_path, &entry.path, entry.mtime)?;
        let existing = self.children(parent).and_then(|c| c.get(name)).copied();
        let kind = match entry.item {
            Item::Dir => {
                if let Some(id) = existing {
                    if matches!(self.node(id).kind, NodeKind::Dir(_)) {
                        let node = &mut self.nodes[id as usize];
                        node.mode = entry.mode;
                        node.mtime = entry.mtime;
                        return Ok(());
                    }
                }
                NodeKind::Dir(BTreeMap::new())
            }
            Item::File(blob) => NodeKind::File(blob),
            Item::Symlink(target) => NodeKind::Symlink(target),
            Item::Hardlink(target) => match self.lookup_nofollow(&target).map(|id| &self.node(id).kind) {
                Some(NodeKind::File(blob)) => NodeKind::File(blob.clone()),
                _ => bail!("hard link {} points at {target}, which is not a regular file of the archive", entry.path),
            },
        };
        if let Some(id) = existing {
            if let Some(children) = self.children(id) {
                if !children.is_empty() && !matches!(kind, NodeKind::Dir(_)) {
                    bail!("entry {} would replace a non-empty directory", entry.path);
                }
            }
        }
        let id = self.push(Node { name: name.to_string(), parent, kind, mode: entry.mode, mtime: entry.mtime });
        if let NodeKind::Dir(children) = &mut self.nodes[parent as usize].kind {
            children.insert(name.to_string(), id);
        }
        Ok(())
    }

    /// Walk (creating) the directories of `dir_path`. A symlink or file on the
    /// way is refused: on disk the entry would land wherever the link points.
    fn make_dirs(&mut self, dir_path: &str, entry_path: &str, mtime: i64) -> Result<NodeId> {
        let mut cur = ROOT;
        if dir_path.is_empty() {
            return Ok(cur);
        }
        for (i, comp) in dir_path.split('/').enumerate() {
            let next = self.children(cur).and_then(|c| c.get(comp)).copied();
            cur = match next {
                Some(id) => {
                    match &self.node(id).kind {
                        NodeKind::Dir(_) => id,
                        NodeKind::Symlink(_) => {
                            let prefix: Vec<&str> = dir_path.split('/').take(i + 1).collect();
                            bail!("entry {entry_path} lies under the symlink {} (refused: it could write outside the target)", prefix.join("/"))
                        }
                        NodeKind::File(_) => bail!("entry {entry_path} lies under a regular file"),
                    }
                }
                None => {
                    let id = self.push(Node {
                        name: comp.to_string(),
                        parent: cur,
                        kind: NodeKind::Dir(BTreeMap::new()),
                        mode: 0o755,
                        mtime,
                    });
                    if let NodeKind::Dir(children) = &mut self.nodes[cur as usize].kind {
                        children.insert(comp.to_string(), id);
                    }
                    id
                }
            };
        }
        Ok(cur)
    }

    /// Find a path without following symlinks in any component.
    pub fn lookup_nofollow(&self, path: &str) -> Option<NodeId> {
        let mut cur = ROOT;
        for comp in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            cur = *self.children(cur)?.get(comp)?;
        }
        Some(cur)
    }

    /// Resolve `path` as the kernel would from directory `start`, following
    /// every symlink. Absolute paths start at the tree root (the root of the
    /// installed system). `None`: dangling, a loop, or `..` above the root.
    pub fn resolve(&self, start: NodeId, path: &str) -> Option<NodeId> {
        let mut hops = 0;
        self.resolve_inner(start, path, &mut hops)
    }

    fn resolve_inner(&self, start: NodeId, path: &str, hops: &mut u32) -> Option<NodeId> {
        let mut cur = if path.starts_with('/') { ROOT } else { start };
        for comp in path.split('/') {
            match comp {
                "" | "." => {}
                ".." => {
                    if cur == ROOT {
                        return None; // escapes the extraction root
                    }
                    cur = self.node(cur).parent;
                }
                name => {
                    let child = *self.children(cur)?.get(name)?;
                    cur = match &self.node(child).kind {
                        NodeKind::Symlink(target) => {
                            *hops += 1;
                            if *hops > MAX_HOPS {
                                return None;
                            }
                            self.resolve_inner(cur, target, hops)?
                        }
                        _ => child,
                    };
                }
            }
        }
        Some(cur)
    }

    /// Resolve what the symlink node `link` points at.
    pub fn resolve_link(&self, link: NodeId) -> Option<NodeId> {
        match &self.node(link).kind {
            NodeKind::Symlink(target) => self.resolve(self.node(link).parent, target),
            _ => Some(link),
        }
    }

    /// The path of a node from the root ("" for the root).
    pub fn path_of(&self, mut id: NodeId) -> String {
        let mut parts = Vec::new();
        while id != ROOT {
            let node = self.node(id);
            parts.push(node.name.as_str());
            id = node.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    /// Direct subdirectories of `dir` (not symlinks) whose names match.
    pub fn subdirs(&self, dir: NodeId, mut pred: impl FnMut(&str) -> bool) -> Vec<(String, NodeId)> {
        self.children(dir)
            .into_iter()
            .flatten()
            .filter(|(name, id)| pred(name) && matches!(self.node(**id).kind, NodeKind::Dir(_)))
            .map(|(name, id)| (name.clone(), *id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn file(path: &str) -> Member {
        Member { path: path.into(), item: Item::File(Arc::new(b"x".to_vec())), mode: 0o644, mtime: 0 }
    }
    fn link(path: &str, target: &str) -> Member {
        Member { path: path.into(), item: Item::Symlink(target.into()), mode: 0o777, mtime: 0 }
    }

    #[test]
    fn resolves_relative_and_absolute_links() {
        let mut t = StagingTree::new();
        t.add(file("usr/src/common/Makefile")).unwrap();
        t.add(link("usr/src/flavour/Makefile", "../common/Makefile")).unwrap();
        t.add(link("lib/modules/x/build", "/usr/src/flavour")).unwrap();
        let build = t.lookup_nofollow("lib/modules/x/build").unwrap();
        let target = t.resolve_link(build).unwrap();
        assert_eq!(t.path_of(target), "usr/src/flavour");
        let mk = t.resolve(ROOT, "lib/modules/x/build/Makefile").unwrap();
        assert_eq!(t.path_of(mk), "usr/src/common/Makefile");
    }

    #[test]
    fn refuses_entries_under_symlinks_and_bad_hardlinks() {
        let mut t = StagingTree::new();
        t.add(link("evil", "/etc")).unwrap();
        let err = t.add(file("evil/passwd")).unwrap_err().to_string();
        assert!(err.contains("lies under the symlink evil"), "{err}");
        let err = t
            .add(Member { path: "h".into(), item: Item::Hardlink("nothere".into()), mode: 0o644, mtime: 0 })
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn loops_and_escapes_do_not_resolve() {
        let mut t = StagingTree::new();
        t.add(link("a", "b")).unwrap();
        t.add(link("b", "a")).unwrap();
        t.add(link("up", "../../outside")).unwrap();
        assert!(t.resolve_link(t.lookup_nofollow("a").unwrap()).is_none());
        assert!(t.resolve_link(t.lookup_nofollow("up").unwrap()).is_none());
    }
}
