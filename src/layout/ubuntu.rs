//! Ubuntu: the flavour's `usr/src/linux-headers-<uname>`, whose links into the
//! common headers package (`../linux-<src>-headers-<abi>/…`) are replaced by
//! what they point to. `scripts/dtc` and `rust` are left out, as kernel-packer did.

use super::engine::{Engine, Merge};
use super::pick_one;
use crate::staging::StagingTree;
use anyhow::{Context, Result};
use regex::Regex;
use std::sync::OnceLock;

fn is_flavour_release(release: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[0-9]+\.[0-9]+\.[0-9]+-[0-9]+-[a-z]").expect("static regex")).is_match(release)
}

pub(super) fn layout<'t>(
    tree: &'t StagingTree,
    uname: Option<&str>,
    limits: crate::package::Limits,
) -> Result<(Engine<'t>, String, String)> {
    let usr_src = tree.lookup_nofollow("usr/src").context("the packages hold no usr/src")?;
    let candidates = tree
        .subdirs(usr_src, |n| n.strip_prefix("linux-headers-").is_some_and(is_flavour_release))
        .into_iter()
        .map(|(n, id)| (n["linux-headers-".len()..].to_string(), id))
        .collect();
    let (uname, root) = pick_one("usr/src/linux-headers-<release>-<flavour> directory", candidates, uname)?;
    let mut engine = Engine::new(tree, limits);
    engine.exclude("scripts/dtc");
    engine.exclude("rust");
    engine.mount(root, "", Merge::Replace)?;
    engine.settle_links()?;
    Ok((engine, uname, ".".to_string()))
}
