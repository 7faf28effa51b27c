//! RHEL family (redhat: RHEL, CentOS, Fedora, Amazon, Rocky, Alma; and
//! oracle): the kernel-devel tree `usr/src/kernels/<uname>`.
//! Oracle, as kernel-packer did, also drops `scripts/dtc` and every `*.c`
//! outside `scripts/`.

use super::engine::{Engine, Merge, OutNode};
use super::pick_one;
use crate::staging::StagingTree;
use anyhow::{Context, Result};

pub(super) fn layout<'t>(
    tree: &'t StagingTree,
    uname: Option<&str>,
    oracle: bool,
    limits: crate::package::Limits,
) -> Result<(Engine<'t>, String, String)> {
    let kernels = tree.lookup_nofollow("usr/src/kernels").context("the packages hold no usr/src/kernels")?;
    let (uname, root) = pick_one("usr/src/kernels/<uname> directory", tree.subdirs(kernels, |_| true), uname)?;
    let mut engine = Engine::new(tree, limits);
    if oracle {
        engine.exclude("scripts/dtc");
    }
    engine.mount(root, "", Merge::Replace)?;
    engine.settle_links()?;
    if oracle {
        let c_outside_scripts = |path: &str, node: &OutNode| {
            !(path == "scripts" || path.starts_with("scripts/"))
                && path.ends_with(".c")
                && matches!(node, OutNode::File { .. } | OutNode::Symlink(_))
        };
        for path in engine.paths_where(c_outside_scripts) {
            engine.remove(&path);
        }
    }
    Ok((engine, uname, ".".to_string()))
}
