//! Debian family (debian, garden, kops): the whole `usr/` and `lib/` trees,
//! built from `usr/src/linux-headers-<uname>`.
//!
//! Relocatable, unlike kernel-packer's `include $(BUILD_ROOT)/…`: absolute
//! paths in Makefiles (`include /usr/src/…-common/Makefile`, the older
//! `MAKEARGS := -C /usr/src/…`) become paths relative to the Makefile, which
//! is make's working directory under `make -C`.

use super::engine::{relative_path, Engine, Merge, OutNode};
use super::pick_one;
use crate::staging::StagingTree;
use anyhow::{Context, Result};
use std::sync::Arc;

pub(super) fn layout<'t>(
    tree: &'t StagingTree,
    uname: Option<&str>,
    limits: crate::package::Limits,
) -> Result<(Engine<'t>, String, String)> {
    let usr_src = tree.lookup_nofollow("usr/src").context("the packages hold no usr/src")?;
    let candidates = tree
        .subdirs(usr_src, |n| n.starts_with("linux-headers-") && !n.ends_with("-common") && !n.contains("-common-"))
        .into_iter()
        .map(|(n, id)| (n["linux-headers-".len()..].to_string(), id))
        .collect();
    let (uname, _) = pick_one("usr/src/linux-headers-<uname> directory", candidates, uname)?;
    let mut engine = Engine::new(tree, limits);
    for top in ["usr", "lib"] {
        if let Some(id) = tree.lookup_nofollow(top) {
            engine.mount(id, top, Merge::Replace)?;
        }
    }
    engine.settle_links()?;
    relocate_makefiles(&mut engine);
    let build_dir = format!("./usr/src/linux-headers-{uname}");
    Ok((engine, uname, build_dir))
}

fn relocate_makefiles(engine: &mut Engine<'_>) {
    let is_makefile = |path: &str, node: &OutNode| {
        matches!(node, OutNode::File { .. }) && path.rsplit('/').next() == Some("Makefile")
    };
    for path in engine.paths_where(is_makefile) {
        let Some(OutNode::File { blob, .. }) = engine.get(&path) else { continue };
        let Ok(text) = std::str::from_utf8(blob) else { continue };
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        let Some(new_text) = relocate_text(text, |abs| engine.map_absolute(abs).map(|to| relative_path(dir, &to)))
        else {
            continue;
        };
        log::debug!("layout: made {path} relocatable");
        if let Some(OutNode::File { blob, .. }) = engine.get_mut(&path) {
            *blob = Arc::new(new_text.into_bytes());
        }
    }
}

/// Rewrite absolute paths on `include /…` and `MAKEARGS := -C /…` lines.
/// `None` when nothing changed.
pub(super) fn relocate_text(text: &str, mut map: impl FnMut(&str) -> Option<String>) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let eligible = line.starts_with("include /") || (line.starts_with("MAKEARGS") && line.contains(" -C /"));
        if !eligible {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(pos) = rest.find(" /") {
            out.push_str(&rest[..pos + 1]);
            let tail = &rest[pos + 1..];
            let end = tail.find(|c: char| c.is_whitespace()).unwrap_or(tail.len());
            let abs = &tail[..end];
            match map(abs) {
                Some(rel) => {
                    out.push_str(&rel);
                    changed = true;
                }
                None => out.push_str(abs),
            }
            rest = &tail[end..];
        }
        out.push_str(rest);
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_include_and_makeargs() {
        let map = |abs: &str| abs.strip_prefix("/usr/src/").map(|r| format!("../{r}"));
        let text = "include /usr/src/linux-headers-6.1.0-56-common/Makefile\n";
        assert_eq!(relocate_text(text, map).unwrap(), "include ../linux-headers-6.1.0-56-common/Makefile\n");
        let text = "MAKEARGS := -C /usr/src/linux-headers-4.9.0-3-common O=$(CURDIR)\nall:\n";
        assert_eq!(
            relocate_text(text, map).unwrap(),
            "MAKEARGS := -C ../linux-headers-4.9.0-3-common O=$(CURDIR)\nall:\n"
        );
        assert!(relocate_text("obj-m := x.o\n", map).is_none());
    }
}
