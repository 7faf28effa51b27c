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
) -> Result<(Engine<'t>, String, String)> {
    let kernels = tree.lookup_nofollow("usr/src/kernels").context("the packages hold no usr/src/kernels")?;
    let (uname, root) = pick_one("usr/src/kernels/<uname> directory", tree.subdirs(kernels, |_| true), uname)?;
    let mut engine = Engine::new(tree);
    if oracle {
        engine.exclude("scripts/dtc");
    }
    engine.mount(root, "", Merge::Replace)?;
    engine.settle_links()?;
    if oracle {
        let mut c_files = Vec::new();
        c_sources_outside_scripts(&engine.root, String::new(), &mut c_files);
        for path in c_files {
            engine.remove(&path);
        }
    }
    Ok((engine, uname, ".".to_string()))
}

fn c_sources_outside_scripts(node: &OutNode, path: String, out: &mut Vec<String>) {
    if let OutNode::Dir(children) = node {
        for (name, child) in children {
            let p = if path.is_empty() { name.clone() } else { format!("{path}/{name}") };
            if p == "scripts" {
                continue;
            }
            match child {
                OutNode::Dir(_) => c_sources_outside_scripts(child, p, out),
                OutNode::File { .. } | OutNode::Symlink(_) if name.ends_with(".c") => out.push(p),
                _ => {}
            }
        }
    }
}
