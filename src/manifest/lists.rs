//! Manifest files as the mount and the commands read them: the YAML text
//! (mapped, not read into the heap) and kernel-packer's package lists,
//! which map the simplified package names of its manifest back to URLs.

use super::{simplify, MAX_MANIFEST_BYTES};
use anyhow::{anyhow, bail, Context, Result};
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

/// A manifest file's text, mapped rather than read (a million entries are
/// 700 MB of YAML; mapped, they cost page cache, not heap).
pub struct ManifestText {
    map: Option<crate::files::Mapping>,
}

impl ManifestText {
    pub fn as_str(&self) -> &str {
        // Checked as UTF-8 when opened.
        self.map.as_ref().and_then(|m| std::str::from_utf8(m.bytes()).ok()).unwrap_or("")
    }
}

/// A manifest file's text and the package lists it needs (see [`Manifest::load`]).
pub fn read_file(path: &Path, lists_dir: Option<&Path>) -> Result<(ManifestText, PackageLists)> {
    let file = std::fs::File::open(path).with_context(|| format!("reading manifest {}", path.display()))?;
    let size = file.metadata().with_context(|| format!("reading manifest {}", path.display()))?.len();
    if size > MAX_MANIFEST_BYTES as u64 {
        bail!("manifest {} is {size} bytes, over the limit of {MAX_MANIFEST_BYTES}", path.display());
    }
    let map = crate::files::Mapping::new(&file, size);
    if let Some(m) = &map {
        std::str::from_utf8(m.bytes()).map_err(|e| anyhow!("manifest {} is not UTF-8: {e}", path.display()))?;
    }
    let text = ManifestText { map };
    let lists = if needs_lists(text.as_str()) { load_lists_near(path, lists_dir)? } else { PackageLists::default() };
    Ok((text, lists))
}

/// Whether the text has bare package names that need package lists.
fn needs_lists(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim_start();
        t.starts_with("- ") && !t.starts_with("- url:") && !t.contains("://")
    })
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
