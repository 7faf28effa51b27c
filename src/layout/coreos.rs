//! CoreOS and Flatcar (type coreos): the kernel's `build` and `source`
//! trees read out of a developer container image, as kernel-packer
//! shipped them: `./build` and `./source` at the root, BUNDLE_BUILD_DIR
//! `./build`, links settled like every layout's.
//!
//! `build/Makefile` is kbuild's wrapper for an out-of-tree object
//! directory and names the source tree by its absolute path at build time:
//! `/usr/src/linux-<version>` in the old CoreOS (inside the image, mapped
//! like Debian's), Portage's work directory in Flatcar (not in the image).
//! The latter becomes `../source`, which is what kernel-packer got by
//! running the image's `mkmakefile ../source` as root; nothing of the
//! image runs here.

use super::debian::relocate_text;
use super::engine::{relative_path, Engine, Merge, OutNode};
use super::{insert_meta_files, LaidOut, Meta};
use crate::package::{Limits, Member};
use crate::staging::StagingTree;
use anyhow::{Context, Result};
use std::sync::Arc;

/// Where the image's trees are, as the image reader found them.
pub struct Trees<'a> {
    pub release: &'a str,
    /// Image paths of the real build and source directories.
    pub build: &'a str,
    pub source: Option<&'a str>,
}

pub fn lay_out(members: Vec<Member>, trees: Trees<'_>, checksum: &str, limits: Limits) -> Result<LaidOut> {
    let mut staging = StagingTree::new();
    for member in members {
        staging.add(member)?;
    }
    let mut engine = Engine::new(&staging, limits);
    let build = staging.lookup_nofollow(trees.build).context("the image's build directory was not read")?;
    engine.mount(build, "build", Merge::Replace)?;
    if let Some(source) = trees.source.and_then(|s| staging.lookup_nofollow(s)) {
        if trees.source != Some(trees.build) {
            engine.mount(source, "source", Merge::Replace)?;
        }
    }
    engine.settle_links()?;
    relocate_wrapper(&mut engine);
    let meta = Meta {
        checksum: checksum.to_string(),
        distro: "coreos".into(),
        uname: trees.release.to_string(),
        build_dir: "./build".into(),
    };
    let mut tree = engine.into_tree();
    insert_meta_files(&mut tree, &meta);
    Ok(LaidOut { tree, meta })
}

/// Make `build/Makefile` name the source tree relatively.
fn relocate_wrapper(engine: &mut Engine<'_>) {
    let path = "build/Makefile";
    let Some(OutNode::File { blob, .. }) = engine.get(path) else { return };
    let Ok(text) = std::str::from_utf8(blob) else { return };
    let has_source = matches!(engine.get("source/Makefile"), Some(OutNode::File { .. }));
    let new_text = relocate_text(text, |abs| {
        if let Some(to) = engine.map_absolute(abs) {
            return Some(relative_path("build", &to));
        }
        // A path of the machine that built the image: the source tree it
        // was, by the wrapper's own shape (`include <src>/Makefile`, `-C <src>`).
        has_source.then(|| if abs.ends_with("/Makefile") { "../source/Makefile" } else { "../source" }.to_string())
    });
    if let Some(new_text) = new_text {
        log::debug!("layout: made build/Makefile relocatable");
        if let Some(OutNode::File { blob, .. }) = engine.get_mut(path) {
            *blob = Arc::new(new_text.into_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::Item;

    fn file(path: &str, text: &str) -> Member {
        Member { path: path.into(), item: Item::File(Arc::new(text.as_bytes().to_vec())), mode: 0o644, mtime: 0 }
    }

    fn link(path: &str, to: &str) -> Member {
        Member { path: path.into(), item: Item::Symlink(to.into()), mode: 0o777, mtime: 0 }
    }

    fn text_of(laid: &LaidOut, path: &str) -> String {
        laid.tree
            .items
            .iter()
            .find(|i| i.path == path)
            .and_then(|i| match &i.kind {
                super::super::ItemKind::File(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no file {path}"))
    }

    #[test]
    fn flatcar_wrapper_naming_the_build_machine_points_at_source() {
        let members = vec![
            file(
                "usr/lib/modules/6.1.0-flatcar/build/Makefile",
                "include /build/amd64-usr/var/tmp/portage/work/source/Makefile\n",
            ),
            file("usr/lib/modules/6.1.0-flatcar/build/.config", "CONFIG_X=y\n"),
            file("usr/lib/modules/6.1.0-flatcar/source/Makefile", "VERSION = 6\n"),
            link("lib", "usr/lib"),
        ];
        let trees = Trees {
            release: "6.1.0-flatcar",
            build: "usr/lib/modules/6.1.0-flatcar/build",
            source: Some("usr/lib/modules/6.1.0-flatcar/source"),
        };
        let laid = lay_out(members, trees, "abc", Limits::default()).unwrap();
        assert_eq!(text_of(&laid, "build/Makefile"), "include ../source/Makefile\n");
        assert_eq!(text_of(&laid, "BUNDLE_BUILD_DIR").trim(), "./build");
        assert_eq!(text_of(&laid, "BUNDLE_UNAME").trim(), "6.1.0-flatcar");
        assert_eq!(text_of(&laid, "source/Makefile"), "VERSION = 6\n");
    }

    #[test]
    fn old_coreos_wrapper_inside_the_image_is_mapped() {
        let members = vec![
            file(
                "var/cache/portage/sys-kernel/coreos-kernel/Makefile",
                "MAKEARGS := -C /usr/src/linux-4.14.11-coreos\n",
            ),
            file("usr/src/linux-4.14.11-coreos/Makefile", "VERSION = 4\n"),
            link("lib/modules/4.14.11-coreos/build", "/var/cache/portage/sys-kernel/coreos-kernel"),
            link("lib/modules/4.14.11-coreos/source", "/usr/src/linux-4.14.11-coreos"),
        ];
        let trees = Trees {
            release: "4.14.11-coreos",
            build: "var/cache/portage/sys-kernel/coreos-kernel",
            source: Some("usr/src/linux-4.14.11-coreos"),
        };
        let laid = lay_out(members, trees, "abc", Limits::default()).unwrap();
        assert_eq!(text_of(&laid, "build/Makefile"), "MAKEARGS := -C ../source\n");
    }
}
