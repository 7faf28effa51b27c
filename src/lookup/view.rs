//! The one view of what is served, for every command that names bundles:
//! exactly what a mount with the same settings serves (the shipped or
//! `--manifest` manifest merged with the last crawl in the cache
//! directory), or what a running mount serves (its own index).

use crate::manifest::index::Index;
use crate::namespace::served::Inputs;
use crate::settings::Settings;
use anyhow::{Context, Result};
use std::path::Path;

pub struct View {
    pub index: Index,
    /// Where it comes from, for messages.
    pub origin: String,
}

impl View {
    /// What a mount with `settings` serves. Reads only: the index a mount
    /// keeps in the cache directory when it is current, else one built in
    /// memory from the same inputs.
    pub fn of_settings(settings: &Settings) -> Result<View> {
        let inputs = Inputs::new(settings.manifest.clone(), settings.lists_dir.clone(), &settings.cache_dir);
        let origin = format!("{} (cache {})", inputs.origin(), settings.cache_dir.display());
        Ok(View { index: inputs.index_read_only()?, origin })
    }

    /// What the kpackfs mount at `mountpoint` serves right now.
    pub fn of_mount(mountpoint: &Path) -> Result<View> {
        let status_file = mountpoint.join(".kpackfs/status.json");
        let text = std::fs::read_to_string(&status_file).with_context(|| {
            format!("{} is not a kpackfs mount (reading {})", mountpoint.display(), status_file.display())
        })?;
        let status: serde_json::Value = serde_json::from_str(&text).context("reading the mount's status")?;
        let cache_dir = status["cache_dir"].as_str().context("the mount's status names no cache directory")?;
        let path = Path::new(cache_dir).join("manifest/served.idx");
        let index = Index::open(&path).with_context(|| format!("opening the mount's index {}", path.display()))?;
        let origin = format!("the mount at {}", mountpoint.display());
        Ok(View { index, origin })
    }

    /// `--mount`, else the settings.
    pub fn open(mount: Option<&Path>, settings: &Settings) -> Result<View> {
        match mount {
            Some(m) => View::of_mount(m),
            None => View::of_settings(settings),
        }
    }
}
