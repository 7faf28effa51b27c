//! SUSE: the flavour's `usr/src/linux-<rel>-obj/<arch>/<flavour>` tree merged
//! with the base `usr/src/linux-<rel>` tree, as kernel-packer's
//! `rm Makefile; rsync -ua base/ obj/`: the obj Makefile goes, base files fill
//! in, and an obj file newer than its base counterpart stays.

use super::engine::{Engine, Merge};
use super::pick_one;
use crate::staging::{NodeKind, StagingTree};
use anyhow::{bail, Context, Result};

pub(super) fn layout<'t>(
    tree: &'t StagingTree,
    uname: Option<&str>,
    limits: crate::package::Limits,
) -> Result<(Engine<'t>, String, String)> {
    let usr_src = tree.lookup_nofollow("usr/src").context("the packages hold no usr/src")?;
    let objs = tree.subdirs(usr_src, |n| n.starts_with("linux-") && n.ends_with("-obj"));
    let (obj_name, obj) = pick_one("usr/src/linux-<release>-obj directory", objs, None)?;
    let arches = tree.subdirs(obj, |_| true);
    let (_, arch) = arches
        .iter()
        .find(|(n, _)| n == "x86_64")
        .or(arches.first())
        .cloned()
        .with_context(|| format!("usr/src/{obj_name} holds no architecture directory"))?;
    let flavours: Vec<_> = tree.subdirs(arch, |_| true);
    let wanted_flavour = uname.and_then(|u| u.rsplit_once('-')).map(|(_, f)| f);
    let (flavour, flavour_dir) = pick_one("flavour directory under the -obj tree", flavours, wanted_flavour)?;
    let release_node = tree
        .resolve(flavour_dir, "include/config/kernel.release")
        .with_context(|| format!("the {flavour} tree has no include/config/kernel.release"))?;
    let NodeKind::File(release) = &tree.node(release_node).kind else {
        bail!("include/config/kernel.release is not a file");
    };
    let release = String::from_utf8_lossy(release).trim().to_string();
    if release.is_empty() {
        bail!("include/config/kernel.release is empty");
    }
    let base_name = obj_name.trim_end_matches("-obj");
    let base = tree
        .lookup_nofollow(&format!("usr/src/{base_name}"))
        .with_context(|| format!("the packages hold no usr/src/{base_name} (kernel-devel)"))?;

    let mut engine = Engine::new(tree, limits);
    engine.mount(flavour_dir, "", Merge::Replace)?;
    engine.remove("Makefile");
    engine.mount(base, "", Merge::KeepNewer)?;
    engine.settle_links()?;
    Ok((engine, release, ".".to_string()))
}
