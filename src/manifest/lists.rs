//! kernel-packer's package lists, which map the simplified package names
//! of its manifest back to URLs.

use super::simplify;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Maps kernel-packer's simplified package names back to URLs.
#[derive(Debug, Default)]
pub struct PackageLists {
    by_simplified: HashMap<String, String>,
}

impl PackageLists {
    /// Read every `*.txt` package list in `dir` (one URL per line).
    pub fn read_dir(dir: &Path) -> Result<Self> {
        let mut lists = PackageLists::default();
        let read = std::fs::read_dir(dir).with_context(|| format!("reading package lists in {}", dir.display()))?;
        let mut files: Vec<PathBuf> = read
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            lists.add_urls(text.lines());
        }
        Ok(lists)
    }

    pub fn add_urls<'a>(&mut self, urls: impl IntoIterator<Item = &'a str>) {
        for url in urls {
            let url = url.trim();
            if !url.is_empty() && !url.starts_with('#') {
                self.by_simplified.insert(simplify(url), url.to_string());
            }
        }
    }

    fn extend(&mut self, other: PackageLists) {
        self.by_simplified.extend(other.by_simplified);
    }

    pub fn len(&self) -> usize {
        self.by_simplified.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_simplified.is_empty()
    }

    pub(super) fn resolve(&self, name: &str) -> Option<&str> {
        self.by_simplified.get(name).map(String::as_str)
    }
}

/// The package lists a manifest's bare names are mapped through, loaded
/// when the first bare name is seen (a manifest of URLs needs none).
pub enum Lists<'a> {
    Given(&'a PackageLists),
    /// From `dir`, else the manifest's own directory and its
    /// `kernel-package-lists/` subdirectory.
    Near {
        manifest: &'a Path,
        dir: Option<&'a Path>,
        loaded: Option<PackageLists>,
    },
    /// Bare names are refused, saying why.
    Refused(&'static str),
}

impl<'a> Lists<'a> {
    pub fn near(manifest: &'a Path, dir: Option<&'a Path>) -> Lists<'a> {
        Lists::Near { manifest, dir, loaded: None }
    }

    pub(super) fn resolve(&mut self, name: &str) -> Result<Option<String>> {
        let lists = match self {
            Lists::Given(lists) => *lists,
            Lists::Near { manifest, dir, loaded } => match loaded {
                Some(lists) => &*lists,
                None => &*loaded.insert(load_lists_near(manifest, *dir)?),
            },
            Lists::Refused(why) => bail!("package {} is a bare name: {why}", super::rules::shown(name)),
        };
        Ok(lists.resolve(name).map(str::to_string))
    }
}

fn load_lists_near(manifest: &Path, lists_dir: Option<&Path>) -> Result<PackageLists> {
    if let Some(dir) = lists_dir {
        return PackageLists::read_dir(dir);
    }
    let base = manifest.parent().unwrap_or(Path::new("."));
    let base = if base.as_os_str().is_empty() { Path::new(".") } else { base };
    let mut lists = PackageLists::default();
    for dir in [base.to_path_buf(), base.join("kernel-package-lists")] {
        if dir.is_dir() {
            let more = PackageLists::read_dir(&dir)?;
            lists.extend(more);
        }
    }
    Ok(lists)
}
