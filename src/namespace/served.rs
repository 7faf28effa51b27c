//! What a mount serves: the base manifest (the shipped one, or
//! `--manifest`) merged with the last crawl result in the cache directory,
//! as a manifest index (`manifest::index`) kept in `<cache>/manifest/`.
//!
//! The index is keyed by its inputs' identities (file, size, mtime; the
//! shipped manifest's digest), so a mount whose inputs did not change maps
//! the index and never reads the YAML: a million entries mount in about the
//! time of an `mmap` (docs/performance.md). A changed input is streamed
//! into a new index, entry by entry.

use crate::manifest::index::{self, Index, IndexBuilder};
use crate::manifest::{Lists, PackageLists, ParseStats, SHIPPED};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A file's identity for change detection: mtime and length.
pub type Stamp = Option<(SystemTime, u64)>;

pub fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Index format and naming rules: a change here makes every old index stale.
const INDEX_VERSION: &[u8] = b"served-index-1";

/// Where the served manifest comes from.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// `--manifest FILE` (None: the shipped manifest, which cannot change).
    pub manifest: Option<PathBuf>,
    pub lists_dir: Option<PathBuf>,
    /// The last `kpackfs crawl` result in the cache directory.
    pub crawl_result: PathBuf,
    /// Where the index lives.
    pub index_path: PathBuf,
}

impl Inputs {
    pub fn new(manifest: Option<PathBuf>, lists_dir: Option<PathBuf>, cache_dir: &Path) -> Inputs {
        let (_, crawl_result) = crate::crawl::default_paths(cache_dir);
        Inputs { manifest, lists_dir, crawl_result, index_path: cache_dir.join("manifest/served.idx") }
    }

    /// Where the manifest comes from, for status.
    pub fn origin(&self) -> String {
        let mut note = match &self.manifest {
            Some(p) => format!("from {}", p.display()),
            None => "shipped".to_string(),
        };
        if self.crawl_result.exists() {
            note.push_str(", merged with the crawl result");
        }
        note
    }

    pub fn stamps(&self) -> (Stamp, Stamp) {
        (self.manifest.as_deref().and_then(stamp), stamp(&self.crawl_result))
    }

    fn key(&self) -> [u8; 32] {
        let base = match &self.manifest {
            Some(p) => index::file_identity(p),
            None => crate::util::sha256_hex(SHIPPED.as_bytes()).into_bytes(),
        };
        let mut lists = Vec::new();
        if let Some(dir) = &self.lists_dir {
            let mut files: Vec<PathBuf> =
                std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
            files.sort();
            for f in files {
                lists.extend(index::file_identity(&f));
            }
        }
        index::key_of(&[INDEX_VERSION, &base, &lists, &index::file_identity(&self.crawl_result)])
    }

    /// Add the base manifest; an error means it cannot be served.
    /// `sidecar`: read the index beside it when there is one for it (a copy
    /// in the cache: not for the commands that only look). `kept`: the
    /// index being reloaded, whose slots `b` kept.
    fn add_base(&self, b: &mut IndexBuilder, sidecar: bool, kept: Option<&Index>) -> Result<()> {
        match &self.manifest {
            Some(p) => {
                if sidecar && self.add_sidecar(b, p, kept)? {
                    return Ok(());
                }
                index::add_yaml_file(b, p, &mut Lists::near(p, self.lists_dir.as_deref()), kept)
                    .with_context(|| format!("loading manifest {}", p.display()))
                    .map(|_: ParseStats| ())
            }
            None => index::add_yaml(b, SHIPPED, &PackageLists::default(), kept)
                .context("loading the shipped manifest")
                .map(|_| ()),
        }
    }

    /// Add the entries of the index beside `manifest` instead of parsing
    /// it. Ok(false): none for these bytes, or one that cannot be read
    /// (logged): parse the YAML. A sidecar whose entries fail once being
    /// added is the manifest's failure, like YAML that fails to parse.
    fn add_sidecar(&self, b: &mut IndexBuilder, manifest: &Path, kept: Option<&Index>) -> Result<bool> {
        let scratch = crate::files::parent_dir(&self.index_path);
        let Some((_dir, side)) = self.sidecar(manifest, |m| index::sidecar::copy_for(m, scratch)) else {
            return Ok(false);
        };
        index::add_index(b, &side, kept).with_context(|| {
            format!(
                "loading manifest {} from the index beside it (remove it, or rewrite it with `kpackfs index`)",
                manifest.display()
            )
        })?;
        log::info!("read {} from the index beside {}", side.counts.summary(), manifest.display());
        Ok(true)
    }

    /// What `take` makes of the sidecar of `manifest` (adopted, or copied
    /// to be read), in the index's directory (made here). None: no package
    /// lists allowed (the sidecar does not know them), none for these
    /// bytes, or one that cannot be used (logged).
    fn sidecar<T>(&self, manifest: &Path, take: impl FnOnce(&Path) -> Result<Option<T>>) -> Option<T> {
        if self.lists_dir.is_some() {
            return None;
        }
        let taken = crate::files::create_private_dir_all(crate::files::parent_dir(&self.index_path))
            .and_then(|_| take(manifest));
        match taken {
            Ok(found) => found,
            Err(e) => {
                log::warn!("not using the index beside {}: {e:#}; parsing the YAML", manifest.display());
                None
            }
        }
    }

    /// Add the crawl result, if there is one; a bad one is logged and skipped.
    fn add_crawl(&self, b: &mut IndexBuilder) {
        if !self.crawl_result.exists() {
            return;
        }
        let added = index::add_yaml_file(b, &self.crawl_result, &mut Lists::near(&self.crawl_result, None), None);
        if let Err(e) = added {
            log::warn!("ignoring the crawl result {}: {e:#}", self.crawl_result.display());
        }
    }

    /// The index written beside the manifest (`<manifest>.idx`), when it
    /// alone is served: a first index (no slots to keep), no package lists,
    /// no crawl result to merge. With those, its entries are read instead
    /// of the YAML ([`Inputs::add_sidecar`]).
    fn adopt_sidecar(&self, key: [u8; 32]) -> Option<Index> {
        let manifest = self.manifest.as_deref()?;
        self.sidecar(manifest, |m| index::sidecar::adopt(m, &self.index_path, key))
    }

    /// The index for these inputs without writing anything: the one on
    /// disk when it is current (a mount keeps it), else built in memory.
    /// For commands that only look (list, bundle, which).
    pub fn index_read_only(&self) -> Result<Index> {
        if let Ok(index) = Index::open(&self.index_path) {
            if index.key() == self.key() {
                return Ok(index);
            }
        }
        let mut b = IndexBuilder::new();
        self.add_base(&mut b, false, None)?;
        self.add_crawl(&mut b);
        Index::from_bytes(b.finish(self.key()))
    }

    /// The index for these inputs: reused from disk when its key matches,
    /// else built (on top of `prev`, keeping its slots) and saved.
    pub fn index(&self, prev: Option<&Index>, base_must_load: bool) -> Result<Index> {
        let key = self.key();
        if prev.is_none() {
            match Index::open(&self.index_path) {
                Ok(index) if index.key() == key => return Ok(index),
                Ok(_) => {}
                Err(e) if self.index_path.exists() => log::warn!("rebuilding the served index: {e:#}"),
                Err(_) => {}
            }
        }
        let started = std::time::Instant::now();
        // Served alone, the sidecar is adopted whole; else (or if it is not
        // for these bytes: asked once) the YAML's entries come from it.
        let alone = prev.is_none() && !self.crawl_result.exists();
        if let Some(index) = alone.then(|| self.adopt_sidecar(key)).flatten() {
            log::info!(
                "mapped the index beside the manifest: {} in {:.2}s",
                index.counts.summary(),
                started.elapsed().as_secs_f64()
            );
            return Ok(index);
        }
        // Written as it is read, in the directory kpackfs made.
        crate::files::create_private_dir_all(crate::files::parent_dir(&self.index_path))?;
        let mut b = IndexBuilder::for_file(&self.index_path)?;
        if let Some(p) = prev {
            b.keep_slots_of(p)?;
        }
        match self.add_base(&mut b, !alone, prev) {
            Ok(_) => {}
            Err(e) if base_must_load => return Err(e),
            Err(e) => log::warn!("reload: keeping the served manifest: {e:#}"),
        }
        self.add_crawl(&mut b);
        let index = b.write(key)?;
        log::info!("indexed the manifest: {} in {:.2}s", index.counts.summary(), started.elapsed().as_secs_f64());
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::BundleId;
    use crate::manifest::index::sidecar::{self, YAML_ENTRIES_PARSED};
    use crate::manifest::{BundleSpec, Manifest, Package};
    use std::sync::atomic::Ordering;

    fn entry(n: u32) -> BundleSpec {
        let url = format!("http://x.test/linux-headers-6.1.0-{n}-amd64_6.1.1-1_amd64.deb");
        BundleSpec {
            kind: "debian".into(),
            name: None,
            uname: None,
            signed_by: None,
            packages: vec![Package::new(url)],
        }
    }

    fn parsed() -> u64 {
        YAML_ENTRIES_PARSED.load(Ordering::Relaxed)
    }

    fn size_of(index: &Index, spec: &BundleSpec) -> Option<u64> {
        let slot = index.find_id(&BundleId::parse(&spec.compute_id()).unwrap()).unwrap();
        index.entry(slot).unwrap().1.packages[0].size
    }

    #[test]
    fn a_crawl_result_and_a_reload_merge_onto_the_index_beside_the_manifest_without_parsing_its_yaml() {
        let dir = tempfile::tempdir().unwrap();
        let mut base = Manifest::default();
        for n in 1..=50 {
            base.insert(entry(n));
        }
        let manifest = dir.path().join("m.yml");
        base.save(&manifest).unwrap();
        sidecar::write(&manifest).unwrap();
        let inputs = Inputs::new(Some(manifest.clone()), None, &dir.path().join("cache"));
        // The crawl result: one new kernel, and one of the base's with a size.
        let mut crawl = Manifest::default();
        let mut first = entry(1);
        first.packages[0].size = Some(4242);
        crawl.insert(first.clone());
        crawl.insert(entry(51));
        std::fs::create_dir_all(inputs.crawl_result.parent().unwrap()).unwrap();
        crawl.save(&inputs.crawl_result).unwrap();

        let before = parsed();
        let index = inputs.index(None, true).unwrap();
        assert_eq!(parsed() - before, 2, "the crawl result alone was parsed");
        assert_eq!(index.counts.slots, 51);
        assert_eq!(size_of(&index, &first), Some(4242), "the crawl result wins");
        let left: Vec<_> = std::fs::read_dir(inputs.index_path.parent().unwrap()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "the sidecar's copy is gone: {left:?}");

        // A reload after a new crawl: the kept slots, the base from its
        // sidecar again, the new crawl result parsed.
        crawl.insert(entry(52));
        crawl.save(&inputs.crawl_result).unwrap();
        let before = parsed();
        let first_size = std::fs::metadata(&inputs.index_path).unwrap().len();
        let reloaded = inputs.index(Some(&index), false).unwrap();
        assert_eq!(parsed() - before, 3);
        assert_eq!(reloaded.counts.slots, 52);
        // The base's entries the kept slots hold unchanged are not added
        // again: the new file is not a second copy of every package record.
        let reloaded_size = std::fs::metadata(&inputs.index_path).unwrap().len();
        assert!(reloaded_size < first_size * 5 / 4, "{first_size} bytes, then {reloaded_size} after the reload");
        for n in [1, 7, 51] {
            let id = BundleId::parse(&entry(n).compute_id()).unwrap();
            assert_eq!(reloaded.find_id(&id), index.find_id(&id), "slot numbers stay");
        }

        // Without the sidecar the YAML is parsed, to the same entries.
        std::fs::remove_file(sidecar::path_for(&manifest)).unwrap();
        let before = parsed();
        let from_yaml = inputs.index(Some(&index), false).unwrap();
        assert_eq!(parsed() - before, 53);
        assert_eq!(from_yaml.counts.slots, 52);
        let from_yaml_size = std::fs::metadata(&inputs.index_path).unwrap().len();
        assert!(from_yaml_size < first_size * 5 / 4, "{first_size} bytes, then {from_yaml_size} from the YAML");
        for n in 1..=52 {
            let id = BundleId::parse(&entry(n).compute_id()).unwrap();
            let (a, b) = (from_yaml.find_id(&id).unwrap(), reloaded.find_id(&id).unwrap());
            assert_eq!(from_yaml.entry(a), reloaded.entry(b));
        }
    }
}
