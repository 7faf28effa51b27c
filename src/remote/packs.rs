//! Pack objects: the cache's own format beside each bundle's .tgz
//! (`by-id/<id>.pack` and its digest `by-id/<id>.pack.sha256`), so a host
//! installs a bundle from the tier by a verified copy, with no gunzip and
//! no second pass over the tree. The .tgz stays the bundle of record
//! (collector's consumers, `cp` of a .tgz, hosts of older versions).
//!
//! A pack object is hostile input like the .tgz. It is admitted only if
//! - its bytes match its digest;
//! - its structure passes the checks the cache runs on its own packs
//!   (trailer, index and contents CRCs);
//! - its index passes the checks the layout runs on a tree ([`check_index`]);
//! - its BUNDLE_CHECKSUM is the id.
//!
//! A pack that fails any of them is refused with one log line and removed
//! (when this host may write; the next host that builds the bundle puts a
//! good one), and the .tgz is read instead (its own checks apply).

use super::{Put, Remote};
use crate::files::AtomicFile;
use crate::ids::BundleId;
use crate::pack::{Kind, Pack};
use crate::package::Limits;
use anyhow::{anyhow, ensure, Context, Result};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use std::path::Path;

pub fn pack_key(id: &BundleId) -> ObjectPath {
    ObjectPath::from(format!("by-id/{}.pack", id.hex()))
}

pub fn pack_digest_key(id: &BundleId) -> ObjectPath {
    ObjectPath::from(format!("by-id/{}.pack.sha256", id.hex()))
}

/// Link steps [`check_index`] walks over all links of one pack: a real
/// bundle has a few hundred links of a few components.
const MAX_LINK_STEPS: usize = 4 << 20;
/// A name longer than NAME_MAX, or a target longer than PATH_MAX, is no
/// bundle's.
const NAME_MAX: usize = 255;
const TARGET_MAX: usize = 4095;

/// What looking for a bundle's pack object found.
#[derive(Debug)]
pub enum PackGot {
    /// No pack object (a bundle written by an older version, or by a
    /// writer that keeps .tgz objects alone).
    Absent,
    /// Installed at the destination, verified; its size in bytes.
    Installed(Pack, u64),
    /// There, but not this bundle's pack (why).
    Refused(String),
}

/// The largest pack object read for a bundle under `limits`: its contents
/// plus an index of generous records.
fn max_pack_bytes(limits: Limits) -> u64 {
    limits.max_total_bytes.saturating_add((limits.max_entries as u64).saturating_mul(512)).saturating_add(1 << 20)
}

impl Remote {
    /// Fetch bundle `id`'s pack object into a new file of `tmp_dir`, check
    /// it, and install it at `dest` (a cache file name). Nothing is left at
    /// `dest` unless it is installed.
    pub async fn fetch_pack(&self, id: &BundleId, dest: &Path, tmp_dir: &Path, limits: Limits) -> Result<PackGot> {
        let id = *id;
        let work = async {
            let Some(expected) = self.recorded_digest(&pack_digest_key(&id)).await? else {
                return Ok(PackGot::Absent);
            };
            let key = pack_key(&id);
            let limit = max_pack_bytes(limits);
            let Some(got) = self.get_bounded(&key, limit).await? else {
                return Ok(PackGot::Refused("its digest is there but the pack is not".into()));
            };
            let mut out = AtomicFile::create_in(dest, tmp_dir)?;
            let super::Copied::Whole { len, sha256: actual } = self.stream_to(&key, got, out.file(), limit).await?
            else {
                return Ok(PackGot::Refused(format!("it is over {limit} bytes")));
            };
            if actual != expected {
                return Ok(PackGot::Refused(format!("it has sha256 {actual}, its digest says {expected}")));
            }
            let temp = out.temp_path().to_path_buf();
            let checked = crate::cpu::run(1, move |_| open_checked(&temp, id, limits)).await;
            match checked {
                Ok(pack) => {
                    out.commit().context("installing the pack")?;
                    Ok(PackGot::Installed(pack, len))
                }
                Err(e) => Ok(PackGot::Refused(format!("{e:#}"))),
            }
        };
        tokio::time::timeout(self.opts.deadline, work)
            .await
            .map_err(|_| anyhow!("fetching bundle {id}'s pack took over {:?}", self.opts.deadline))?
    }

    /// Create-only write of bundle `id`'s pack and its digest. A pack
    /// another host wrote first is kept (any valid pack of the bundle
    /// serves, and readers check it).
    pub async fn publish_pack(&self, id: &BundleId, pack: &Pack) -> Result<Put> {
        let bytes = pack.read_all().context("reading the pack")?;
        let sha256 = crate::util::sha256_hex(&bytes);
        let (key, digest) = (pack_key(id), pack_digest_key(id));
        let first = self.put_new(&key, bytes).await?;
        let vouched = match first {
            Put::Created => sha256,
            // Written before, its digest maybe not (that host died between
            // the two writes): the digest must describe what is there.
            Put::Present => match self.recorded_digest(&digest).await? {
                Some(_) => return Ok(Put::Present),
                None => self.fetch_unverified_sha(&key).await?,
            },
        };
        let line = format!("{vouched}  {}.pack\n", id.hex());
        self.put_new(&digest, line.into_bytes()).await?;
        Ok(first)
    }
}

impl Remote {
    /// Remove bundle `id`'s pack object, its digest first (a reader never
    /// finds a digest without its pack). Best effort; not on a read-only tier.
    pub async fn remove_pack(&self, id: &BundleId) {
        if self.read_only {
            return;
        }
        for key in [pack_digest_key(id), pack_key(id)] {
            let _ = tokio::time::timeout(self.opts.stall, self.store.delete(&key)).await;
        }
    }
}

fn open_checked(path: &Path, id: BundleId, limits: Limits) -> Result<Pack> {
    let pack = Pack::open_verified_as(path, &id)?;
    check_index(&pack, limits)?;
    ensure!(pack.meta().is_some(), "it has no BUNDLE_* files");
    Ok(pack)
}

/// What the layout guarantees of every tree, checked over a pack's index
/// (the cache's own packs are made from such trees; a tier's may not be):
/// the bundle limits; names a directory can hold, each directory's sorted
/// and unique (lookups are binary searches); permission bits alone (no
/// setuid, setgid or sticky bit); links that are relative and name a file
/// or directory inside the bundle that is not their own ancestor.
pub fn check_index(pack: &Pack, limits: Limits) -> Result<()> {
    ensure!(pack.len() <= limits.max_entries, "{} entries, over the limit of {}", pack.len(), limits.max_entries);
    let mut total = 0u64;
    let mut steps = 0usize;
    for i in 0..pack.len() as u32 {
        let e = pack.entry(i).context("an entry out of range")?;
        ensure!(e.mode & !0o777 == 0, "entry {i} has mode {:o}", e.mode);
        if i > 0 {
            check_name(pack.name(e)).with_context(|| format!("entry {i}"))?;
        }
        match e.kind {
            Kind::File => {
                ensure!(e.size <= limits.max_file_bytes, "entry {i} is {} bytes, over the file limit", e.size);
                total = total.saturating_add(e.size);
                ensure!(total <= limits.max_total_bytes, "over {} bytes of contents", limits.max_total_bytes);
            }
            Kind::Dir => {
                let kids = pack.children(i);
                for pair in kids.windows(2) {
                    let name = |k: u32| pack.entry(k).map(|e| pack.name(e)).unwrap_or_default();
                    ensure!(name(pair[0]) < name(pair[1]), "directory {i} has names out of order or twice");
                }
            }
            Kind::Symlink => check_link(pack, i, &mut steps).with_context(|| format!("link {i}"))?,
        }
    }
    Ok(())
}

fn check_name(name: &[u8]) -> Result<()> {
    ensure!(!name.is_empty() && name.len() <= NAME_MAX, "a name of {} bytes", name.len());
    ensure!(name != b"." && name != b"..", "the name {:?}", String::from_utf8_lossy(name));
    ensure!(!name.contains(&b'/') && !name.contains(&0), "a name with '/' or NUL");
    Ok(())
}

/// Count one step of link resolution against the pack's budget.
fn step(steps: &mut usize) -> Result<()> {
    *steps += 1;
    ensure!(*steps <= MAX_LINK_STEPS, "more than {MAX_LINK_STEPS} steps over the pack's links");
    Ok(())
}

/// Resolve link `link`'s target over the pack's directories, without
/// following links (the layout makes links to files and directories
/// alone), never above the root.
fn check_link(pack: &Pack, link: u32, steps: &mut usize) -> Result<()> {
    let e = pack.entry(link).context("an entry out of range")?;
    let target = pack.link_target(e);
    ensure!(!target.is_empty() && target.len() <= TARGET_MAX, "a target of {} bytes", target.len());
    ensure!(!target.starts_with(b"/") && !target.contains(&0), "an absolute target, or one with NUL");
    let dir = e.parent;
    let mut at = dir;
    for part in target.split(|b| *b == b'/') {
        step(steps)?;
        match part {
            b"" | b"." => continue,
            b".." => {
                ensure!(at != 0, "its target leaves the bundle");
                at = pack.entry(at).context("an entry out of range")?.parent;
            }
            name => {
                let here = pack.entry(at).context("an entry out of range")?;
                ensure!(here.kind == Kind::Dir, "its target passes through a file or link");
                at = pack.lookup(at, name).context("its target is not in the bundle")?;
            }
        }
    }
    let to = pack.entry(at).context("an entry out of range")?;
    ensure!(to.kind != Kind::Symlink, "its target is a link");
    if to.kind == Kind::Dir {
        // A link to its own directory or an ancestor loops any walk.
        let mut up = dir;
        loop {
            ensure!(up != at, "its target is its own ancestor");
            if up == 0 {
                break;
            }
            step(steps)?;
            up = pack.entry(up).context("an entry out of range")?.parent;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{BundleTree, ItemKind, TreeItem};
    use std::sync::Arc;

    fn item(path: &str, kind: ItemKind, mode: u32) -> TreeItem {
        TreeItem { path: path.into(), kind, mode }
    }
    fn file(path: &str) -> TreeItem {
        item(path, ItemKind::File(Arc::new(path.as_bytes().to_vec())), 0o644)
    }
    fn dir(path: &str) -> TreeItem {
        item(path, ItemKind::Dir, 0o755)
    }
    fn link(path: &str, target: &str) -> TreeItem {
        item(path, ItemKind::Symlink(target.into()), 0o777)
    }

    /// A bundle's shape: files, directories, a link to a file and one to a
    /// sibling directory, as the layout makes them.
    fn good() -> Vec<TreeItem> {
        vec![
            dir(""),
            file("BUNDLE_UNAME"),
            dir("a"),
            dir("a/b"),
            file("a/b/one"),
            link("a/b/up", "../c"),
            dir("a/c"),
            link("a/link", "b/one"),
            file("z"),
        ]
    }

    fn checked(items: Vec<TreeItem>, limits: Limits) -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.pack");
        crate::pack::write(&BundleTree { items }, std::fs::File::create(&path)?)?;
        check_index(&Pack::open(&path)?, limits)
    }

    fn refused(items: Vec<TreeItem>) -> String {
        match checked(items, Limits::default()) {
            Ok(()) => panic!("accepted"),
            Err(e) => format!("{e:#}"),
        }
    }

    fn with(mut items: Vec<TreeItem>, extra: TreeItem) -> Vec<TreeItem> {
        items.push(extra);
        items
    }

    #[test]
    fn a_bundle_shaped_pack_passes() {
        checked(good(), Limits::default()).unwrap();
    }

    #[test]
    fn links_that_leave_the_bundle_or_name_nothing_in_it_are_refused() {
        for (target, why) in [
            ("/etc/passwd", "absolute"),
            ("../etc", "leaves the bundle"),
            ("a/../../x", "leaves the bundle"),
            ("nothing", "not in the bundle"),
            ("a/link", "is a link"),
            ("a/link/x", "through a file or link"),
            ("z/x", "through a file or link"),
            (".", "own ancestor"),
            ("a/..", "own ancestor"),
            ("", "a target of 0 bytes"),
        ] {
            let err = refused(with(good(), link("zz", target)));
            assert!(err.contains(why), "{target:?}: {err}");
        }
        // Nested: a link in a/b to its own directory's parent.
        let mut items = good();
        items.insert(4, link("a/b/loop", ".."));
        assert!(refused(items).contains("own ancestor"));
    }

    #[test]
    fn names_a_directory_cannot_hold_are_refused() {
        for name in ["..", "."] {
            let mut items = good();
            items.insert(7, file(&format!("a/c/{name}")));
            let err = refused(items);
            assert!(err.contains("the name"), "{name}: {err}");
        }
        let long = "z".repeat(256);
        assert!(refused(with(good(), file(&long))).contains("a name of 256 bytes"));
    }

    #[test]
    fn names_out_of_order_or_twice_are_refused() {
        let mut items = good();
        items.push(file("y"));
        assert!(refused(items).contains("out of order or twice"));
        let mut items = good();
        items.push(file("z"));
        assert!(refused(items).contains("out of order or twice"));
    }

    #[test]
    fn special_mode_bits_are_refused() {
        let mut items = good();
        items[8] = item("z", ItemKind::File(Arc::new(b"x".to_vec())), 0o4755);
        assert!(refused(items).contains("mode 4755"));
        let mut items = good();
        items[6] = item("a/c", ItemKind::Dir, 0o1777);
        assert!(refused(items).contains("mode 1777"));
    }

    #[test]
    fn the_bundle_limits_apply() {
        let tight = |f: fn(&mut Limits)| {
            let mut l = Limits::default();
            f(&mut l);
            l
        };
        let err = checked(good(), tight(|l| l.max_entries = 5)).unwrap_err();
        assert!(format!("{err}").contains("over the limit of 5"), "{err}");
        let err = checked(good(), tight(|l| l.max_file_bytes = 2)).unwrap_err();
        assert!(format!("{err}").contains("over the file limit"), "{err}");
        let err = checked(good(), tight(|l| l.max_total_bytes = 12)).unwrap_err();
        assert!(format!("{err}").contains("bytes of contents"), "{err}");
    }

    /// What the tier's reader admits: a sound pack of the bundle, never
    /// one whose CRCs pass but whose index a layout could not have made.
    #[test]
    fn a_tier_pack_is_admitted_only_with_a_sound_index_and_its_own_id() {
        let hex = "ab".repeat(32);
        let id = BundleId::parse(&hex).unwrap();
        let bundle = |extra: Option<TreeItem>| {
            let mut items = vec![dir("")];
            for (name, value) in
                [("BUNDLE_BUILD_DIR", "usr/src/x"), ("BUNDLE_CHECKSUM", hex.as_str()), ("BUNDLE_DISTRO", "debian")]
            {
                items.push(item(name, ItemKind::File(Arc::new(value.as_bytes().to_vec())), 0o644));
            }
            items.push(item("BUNDLE_UNAME", ItemKind::File(Arc::new(b"9.9.0-1-amd64".to_vec())), 0o644));
            items.extend(extra);
            items
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pack");
        let opened = |items: Vec<TreeItem>| {
            crate::pack::write(&BundleTree { items }, std::fs::File::create(&path).unwrap()).unwrap();
            open_checked(&path, id, Limits::default()).map(|_| ()).map_err(|e| format!("{e:#}"))
        };
        opened(bundle(None)).unwrap();
        let err = opened(bundle(Some(link("zz", "/etc/shadow")))).unwrap_err();
        assert!(err.contains("absolute"), "{err}");
        let other = BundleId::parse(&"cd".repeat(32)).unwrap();
        crate::pack::write(&BundleTree { items: bundle(None) }, std::fs::File::create(&path).unwrap()).unwrap();
        assert!(open_checked(&path, other, Limits::default()).is_err(), "another bundle's pack");
    }

    /// A name with '/' cannot be written by the pack writer; a hostile
    /// writer patches one in (and fixes the index CRC).
    #[test]
    fn a_name_with_a_slash_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pack");
        crate::pack::write(&BundleTree { items: good() }, std::fs::File::create(&path).unwrap()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        let (index_off, index_len) = (
            u64::from_le_bytes(bytes[n - 48..n - 40].try_into().unwrap()) as usize,
            u64::from_le_bytes(bytes[n - 40..n - 32].try_into().unwrap()) as usize,
        );
        let index = &mut bytes[index_off..index_off + index_len];
        let at = index.windows(3).position(|w| w == b"one").unwrap();
        index[at + 1] = b'/';
        let crc = crc32fast::hash(index);
        bytes[n - 24..n - 20].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let err = check_index(&Pack::open(&path).unwrap(), Limits::default()).unwrap_err();
        assert!(format!("{err:#}").contains("'/'"), "{err:#}");
    }
}
