//! The kernel's build tree, read out of the image's filesystem:
//! `lib/modules/<release>/build` and `source` (real directories in
//! Flatcar, links to `/var/cache/…` and `/usr/src/linux-…` in the old
//! CoreOS) and whatever their links lead to, resolved inside the image
//! only (ext4-view resolves `/` as the image's root). Everything else of
//! the image (several GB of a developer container) is never read.
//!
//! The walk is iterative with an explicit stack and every count bounded:
//! a directory that lists an ancestor (a loop only a corrupt filesystem
//! has) ends at the depth or entry bound.

use crate::package::{Budget, Item, Member};
use ext4_view::{Ext4, Ext4Error, FileType};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const MODULE_DIRS: [&str; 2] = ["/lib/modules", "/usr/lib/modules"];
const MAX_DEPTH: usize = 64;
/// What one link out of the tree may add (a link to `/usr` must not copy
/// the developer container).
const MAX_EXTRA_ENTRIES: usize = 20_000;
const MAX_EXTRA_ROOTS: usize = 256;

/// What the image's tree gave.
pub struct Found {
    pub release: String,
    /// Image paths (no leading `/`) of the real build and source directories.
    pub build: String,
    pub source: Option<String>,
    pub members: Vec<Member>,
}

fn err(what: impl std::fmt::Display) -> String {
    what.to_string()
}

fn kind_of(fs: &Ext4, path: &str) -> Result<FileType, String> {
    fs.symlink_metadata(path).map(|m| m.file_type()).map_err(|e| format!("{path}: {e}"))
}

/// The releases under the module directories that have a `build`. A
/// directory that is absent is no error; one that cannot be read is.
fn releases(fs: &Ext4) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    for dir in MODULE_DIRS {
        let entries = match fs.read_dir(dir) {
            Ok(entries) => entries,
            Err(Ext4Error::NotFound | Ext4Error::NotADirectory) => continue,
            Err(e) => return Err(format!("{dir}: {e}")),
        };
        for entry in entries.take(1024).flatten() {
            let Ok(name) = entry.file_name().as_str().map(str::to_string) else { continue };
            if name == "." || name == ".." || !crate::build::source::valid_release(&name) {
                continue;
            }
            if fs.exists(format!("{dir}/{name}/build").as_str()).unwrap_or(false) && !found.contains(&name) {
                found.push(name);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The path's canonical form inside the image, without the leading `/`.
fn canonical(fs: &Ext4, path: &str) -> Option<String> {
    let p = fs.canonicalize(path).ok()?;
    Some(p.to_str().ok()?.trim_start_matches('/').to_string())
}

fn under(path: &str, root: &str) -> bool {
    root.is_empty() || path == root || path.starts_with(&format!("{root}/"))
}

/// Find the release's tree and read it.
pub fn read(fs: &Ext4, wanted: Option<&str>, budget: &Budget, cancel: &AtomicBool) -> Result<Found, String> {
    let all = releases(fs)?;
    let release = match (wanted, all.as_slice()) {
        (Some(w), _) if all.iter().any(|r| r == w) => w.to_string(),
        (_, [one]) => one.clone(),
        (_, []) => return Err("the image has no lib/modules/<release>/build".into()),
        (_, many) => return Err(format!("the image has several kernels: {}", many.join(", "))),
    };
    let link_dir = MODULE_DIRS
        .iter()
        .find(|d| fs.exists(format!("{d}/{release}/build").as_str()).unwrap_or(false))
        .copied()
        .unwrap_or(MODULE_DIRS[0]);
    let build = canonical(fs, &format!("{link_dir}/{release}/build"))
        .ok_or_else(|| format!("{link_dir}/{release}/build does not resolve inside the image"))?;
    if build.is_empty() {
        return Err(format!("{link_dir}/{release}/build leads to the image's root"));
    }
    let source = canonical(fs, &format!("{link_dir}/{release}/source")).filter(|s| !s.is_empty());
    let mut walk = Walk { fs, budget, cancel, members: Vec::new(), roots: Vec::new() };
    // The links on the way (lib → usr/lib, build → /var/cache/…) go in
    // too, so absolute paths through them resolve in the staging tree.
    for leaf in ["build", "source"] {
        walk.links_on_the_way(&format!("{link_dir}/{release}/{leaf}"))?;
    }
    walk.root(&build, None)?;
    if let Some(source) = &source {
        if !under(source, &build) {
            walk.root(source, None)?;
        }
    }
    walk.follow_links()?;
    Ok(Found { release, build, source, members: walk.members })
}

struct Walk<'a> {
    fs: &'a Ext4,
    budget: &'a Budget,
    cancel: &'a AtomicBool,
    members: Vec<Member>,
    roots: Vec<String>,
}

impl Walk<'_> {
    fn links_on_the_way(&mut self, path: &str) -> Result<(), String> {
        let mut prefix = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            prefix = if prefix.is_empty() { part.to_string() } else { format!("{prefix}/{part}") };
            let abs = format!("/{prefix}");
            if matches!(kind_of(self.fs, &abs), Ok(FileType::Symlink)) {
                let target = self.fs.read_link(abs.as_str()).map_err(err)?;
                let target = target.to_str().map_err(err)?.to_string();
                if !self.members.iter().any(|m| m.path == prefix) {
                    self.push(Member { path: prefix.clone(), item: Item::Symlink(target), mode: 0o777, mtime: 0 })?;
                }
                // Go on from where it leads.
                match canonical(self.fs, &abs) {
                    Some(real) => prefix = real,
                    None => return Ok(()),
                }
            }
        }
        Ok(())
    }

    /// Count the entry against the bundle's limits (a file before it is read).
    fn push(&mut self, member: Member) -> Result<(), String> {
        if !matches!(member.item, Item::File(_)) {
            self.budget.take(&member.path, 0).map_err(err)?;
        }
        self.members.push(member);
        Ok(())
    }

    /// Read the tree at `root` (an image path without `/`); with a bound,
    /// give up (and add nothing) past that many entries.
    fn root(&mut self, root: &str, bound: Option<usize>) -> Result<bool, String> {
        self.roots.push(root.to_string());
        let start = self.members.len();
        let mut stack = vec![(root.to_string(), 0usize)];
        while let Some((path, depth)) = stack.pop() {
            if self.cancel.load(Ordering::Relaxed) {
                return Err("cancelled".into());
            }
            if bound.is_some_and(|b| self.members.len() - start > b) {
                self.members.truncate(start);
                return Ok(false);
            }
            let abs = format!("/{path}");
            let meta = self.fs.symlink_metadata(abs.as_str()).map_err(|e| format!("{abs}: {e}"))?;
            let mode = u32::from(meta.mode()) & 0o777;
            match meta.file_type() {
                FileType::Directory => {
                    if depth >= MAX_DEPTH {
                        return Err(format!("{abs}: directories nest deeper than {MAX_DEPTH}"));
                    }
                    self.push(Member { path: path.clone(), item: Item::Dir, mode, mtime: 0 })?;
                    let entries = self.fs.read_dir(abs.as_str()).map_err(|e| format!("{abs}: {e}"))?;
                    for entry in entries {
                        let entry = entry.map_err(|e| format!("{abs}: {e}"))?;
                        let name = entry.file_name();
                        let Ok(name) = name.as_str() else {
                            log::debug!("image: skipping a name that is not UTF-8 in {abs}");
                            continue;
                        };
                        if name != "." && name != ".." {
                            stack.push((format!("{path}/{name}"), depth + 1));
                        }
                    }
                }
                FileType::Regular => {
                    self.budget.take(&path, meta.len()).map_err(err)?;
                    let data = self.fs.read(abs.as_str()).map_err(|e| format!("{abs}: {e}"))?;
                    self.push(Member { path, item: Item::File(Arc::new(data)), mode, mtime: 0 })?;
                }
                FileType::Symlink => {
                    // A link to the tree itself or above it (`.`, `/`) would
                    // copy the tree into itself: left out.
                    if let Some(to) = canonical(self.fs, &abs) {
                        if self.roots.iter().any(|r| under(r, &to)) {
                            log::debug!("image: {abs} leads to /{to}, which holds the tree: left out");
                            continue;
                        }
                    }
                    let target = self.fs.read_link(abs.as_str()).map_err(|e| format!("{abs}: {e}"))?;
                    let target = target.to_str().map_err(err)?.to_string();
                    self.push(Member { path, item: Item::Symlink(target), mode: 0o777, mtime: 0 })?;
                }
                other => log::debug!("image: skipping {abs} ({other:?})"),
            }
        }
        Ok(true)
    }

    /// Links whose targets lie outside the trees read so far: read the
    /// target (a file, or a directory within a bound) so the layout can
    /// copy it; a target that is too large is left out and its link
    /// dropped by the layout.
    fn follow_links(&mut self) -> Result<(), String> {
        let mut next = 0;
        while next < self.members.len() {
            let member = &self.members[next];
            next += 1;
            if !matches!(member.item, Item::Symlink(_)) {
                continue;
            }
            let Some(target) = canonical(self.fs, &format!("/{}", member.path)) else { continue };
            if self.roots.iter().any(|r| under(&target, r)) || self.members.iter().any(|m| m.path == target) {
                continue;
            }
            if self.roots.len() >= MAX_EXTRA_ROOTS {
                return Err(format!("more than {MAX_EXTRA_ROOTS} links lead out of the kernel's tree"));
            }
            let link = member.path.clone();
            if !self.root(&target, Some(MAX_EXTRA_ENTRIES))? {
                log::debug!("image: {link} leads to /{target}, more than {MAX_EXTRA_ENTRIES} entries: left out");
            }
        }
        Ok(())
    }
}
