//! Building an index: slots, the served choice, sorted tables, written in
//! sections (the layout is in the parent module).
//!
//! Memory stays bounded at a million entries (docs/performance.md): what
//! only gets copied to the file (package records, alternative URLs, the
//! strings they point at: most of an index) goes to columns as entries
//! arrive, in memory or, for an index written to disk, in unnamed temporary
//! files; what the sorts compare (one record per slot, names, releases,
//! versions) stays in memory. Duplicates and the served choice are settled
//! by sorting slot numbers, not in hash maps.

use super::column::{Column, Out};
use super::settle::{by_id_then_position, choose_served, settle_duplicates, text, valid_names, Pending, NO_VERSION};
use super::*;
use anyhow::bail;
use std::io::{BufWriter, Seek, SeekFrom, Write};

/// Builds an index from manifest entries; the newest entry for an id wins.
pub struct IndexBuilder {
    /// Strings slots point at (names, releases, reasons, keys, versions,
    /// type names): compared by the sorts, written after `cold`.
    hot: Vec<u8>,
    interned: HashMap<String, u64>,
    /// Strings packages point at (URLs, sha512s): first in the string area.
    cold: Column,
    /// 64-byte package records and 8-byte alternative references.
    pkgs: Column,
    alts: Column,
    slots: Vec<Pending>,
    types: Vec<String>,
    type_ids: HashMap<String, u16>,
    /// Slots inherited from an earlier index: their numbers are fixed.
    fixed: usize,
    /// The index file being written (`for_file`), its strings going in as
    /// they come.
    target: Option<crate::files::AtomicFile>,
}

impl Default for IndexBuilder {
    fn default() -> Self {
        IndexBuilder {
            hot: Vec::new(),
            interned: HashMap::new(),
            cold: Column::Memory(Vec::new()),
            pkgs: Column::Memory(Vec::new()),
            alts: Column::Memory(Vec::new()),
            slots: Vec::new(),
            types: Vec::new(),
            type_ids: HashMap::new(),
            fixed: 0,
            target: None,
        }
    }
}

/// The version that orders same-named entries: the newest Debian version
/// among the entry's .deb file names (`linux-headers-…_<version>_<arch>.deb`).
/// An archive that rebuilds a kernel under the same release (Ubuntu's
/// `5.4.0-1085.90+cvm1` then `+cvm2`) serves the rebuild, as apt would.
fn version_of(spec: &BundleSpec) -> Option<String> {
    spec.packages
        .iter()
        .filter_map(|p| {
            let stem = p.file_name().strip_suffix(".deb")?;
            let mut parts = stem.split('_');
            let (_, version) = (parts.next()?, parts.next()?);
            Some(version.replace("%3a", ":"))
        })
        .max_by(|a, b| super::super::debversion::compare(a, b))
}

fn str_ref(off: u64, len: usize) -> u64 {
    (off << 24) | len as u64
}

fn check_len(s: &str) -> Result<()> {
    ensure!(s.len() < 1 << 24, "a manifest string of {} bytes is too long", s.len());
    Ok(())
}

impl IndexBuilder {
    /// A builder that holds everything in memory (small manifests, tests).
    pub fn new() -> IndexBuilder {
        IndexBuilder::default()
    }

    /// A builder for the index file at `path` (written by [`Self::write`]):
    /// the strings of packages go straight into it, package records to
    /// unnamed files beside it, so memory holds only what the sorts need.
    pub fn for_file(path: &Path) -> Result<IndexBuilder> {
        let mut target = crate::files::AtomicFile::create(path)?;
        let mut w = BufWriter::with_capacity(1 << 20, target.file().try_clone()?);
        w.write_all(&[0u8; HEADER_LEN])?;
        let dir = crate::files::parent_dir(path);
        Ok(IndexBuilder {
            cold: Column::InPlace { w, len: 0 },
            pkgs: Column::file_in(dir)?,
            alts: Column::file_in(dir)?,
            target: Some(target),
            ..IndexBuilder::default()
        })
    }

    /// Every slot of `prev`, in its slot order, so numbers stay the same.
    pub fn with_prev(prev: &Index) -> Result<IndexBuilder> {
        let mut b = IndexBuilder::new();
        b.keep_slots_of(prev)?;
        Ok(b)
    }

    /// Start from every slot of `prev` (an empty builder only), each at its
    /// number. Read in the order its packages were written: slot order (by
    /// type and name) jumps about the whole file, and a window of slots kept
    /// up to 530 of a million entries' 630 MiB resident between two page
    /// releases (docs/performance.md).
    pub fn keep_slots_of(&mut self, prev: &Index) -> Result<()> {
        ensure!(self.slots.is_empty(), "an index's slots are kept before anything is added");
        for t in 0..prev.type_count() {
            let name = prev.type_name(t as u16).context("damaged index: a type has no name")?;
            self.type_id(name)?;
        }
        // Every number once (a permutation of the slots), each overwritten.
        let placeholder = Pending { rec: SlotRec::default(), version: NO_VERSION };
        let mut kept = vec![placeholder; prev.counts.slots];
        for (i, slot) in prev.slots_in_file_order().into_iter().enumerate() {
            let (id, spec, reason) = prev.entry(slot).context("damaged index: unreadable slot")?;
            let at = kept.get_mut(slot as usize).context("damaged index: a slot out of range")?;
            *at = self.record(id, &spec, reason.as_deref())?;
            if i as u32 % super::RELEASE_EVERY == super::RELEASE_EVERY - 1 {
                prev.release_pages();
            }
        }
        prev.release_pages();
        self.slots = kept;
        self.fixed = self.slots.len();
        Ok(())
    }

    /// How many entries were added so far (duplicates included).
    pub fn added(&self) -> usize {
        self.slots.len()
    }

    fn push_hot(&mut self, s: &str) -> Result<u64> {
        check_len(s)?;
        let off = self.hot.len() as u64;
        self.hot.extend_from_slice(s.as_bytes());
        Ok(str_ref(off, s.len()))
    }

    fn push_cold(&mut self, s: &str) -> Result<u64> {
        check_len(s)?;
        let off = self.cold.len();
        self.cold.push(s.as_bytes())?;
        Ok(str_ref(off, s.len()))
    }

    /// Strings that repeat (types, reasons, keys) are stored once.
    fn intern(&mut self, s: &str) -> Result<u64> {
        if let Some(r) = self.interned.get(s) {
            return Ok(*r);
        }
        let r = self.push_hot(s)?;
        self.interned.insert(s.to_string(), r);
        Ok(r)
    }

    fn type_id(&mut self, kind: &str) -> Result<u16> {
        if let Some(t) = self.type_ids.get(kind) {
            return Ok(*t);
        }
        ensure!(self.types.len() < u16::MAX as usize, "more than {} bundle types", u16::MAX);
        let t = self.types.len() as u16;
        self.types.push(kind.to_string());
        self.type_ids.insert(kind.to_string(), t);
        Ok(t)
    }

    /// Add (or replace) the entry `id`: `spec` with its names derived, or
    /// `unnamed` saying why it has none.
    pub fn add(&mut self, id: BundleId, spec: &BundleSpec, unnamed: Option<&str>) -> Result<()> {
        ensure!(self.slots.len() < u32::MAX as usize - 1, "too many bundles");
        let pending = self.record(id, spec, unnamed)?;
        self.slots.push(pending);
        Ok(())
    }

    /// An entry's strings and packages written, its slot record returned.
    fn record(&mut self, id: BundleId, spec: &BundleSpec, unnamed: Option<&str>) -> Result<Pending> {
        let kind = self.type_id(&spec.kind)?;
        // A name is enough to be shown; the release may be known only from the contents.
        let named = spec.name.is_some() && unnamed.is_none();
        let verified = spec.packages.iter().all(|p| p.has_digest());
        let pkgs_start = self.pkgs.len() / PKG_LEN as u64;
        ensure!(pkgs_start + (spec.packages.len() as u64) < u32::MAX as u64, "too many packages");
        let mut rec = SlotRec {
            id: id.0,
            kind,
            flags: if named { FLAG_NAMED } else { 0 } | if verified { FLAG_VERIFIED } else { 0 },
            pkgs_start: pkgs_start as u32,
            ..SlotRec::default()
        };
        ensure!(spec.packages.len() <= u16::MAX as usize, "entry {id} has too many packages");
        rec.pkgs_len = spec.packages.len() as u16;
        if let Some(name) = &spec.name {
            rec.name = self.push_hot(name)?;
        }
        if let Some(uname) = &spec.uname {
            rec.uname = self.push_hot(uname)?;
        }
        if let Some(reason) = unnamed {
            rec.reason = self.intern(reason)?;
        }
        if let Some(key) = &spec.signed_by {
            rec.signed_by = self.intern(key)?;
        }
        let mut record = [0u8; PKG_LEN];
        for p in &spec.packages {
            let alts_start = self.alts.len() / 8;
            ensure!(alts_start + (p.also.len() as u64) < u32::MAX as u64, "too many alternative URLs");
            ensure!(p.also.len() <= u16::MAX as usize, "entry {id} has too many alternative URLs");
            let mut pr = PkgRec {
                url: self.push_cold(&p.url)?,
                alts_start: alts_start as u32,
                alts_len: p.also.len() as u16,
                ..PkgRec::default()
            };
            for alt in &p.also {
                let r = self.push_cold(alt)?;
                self.alts.push(&r.to_le_bytes())?;
            }
            if let Some(sha) = p.sha256.as_deref().and_then(crate::ids::Sha256::parse) {
                pr.sha = sha.0;
                pr.flags |= PKG_SHA;
            }
            if let Some(sha512) = &p.sha512 {
                pr.sha512 = self.push_cold(&sha512.to_ascii_lowercase())?;
            }
            if let Some(size) = p.size {
                pr.size = size;
                pr.flags |= PKG_SIZE;
            }
            pr.encode(&mut record);
            self.pkgs.push(&record)?;
        }
        let version = match version_of(spec) {
            Some(v) => self.push_hot(&v)?,
            None => NO_VERSION,
        };
        Ok(Pending { rec, version })
    }

    /// Refuse an id added twice since entry `start` (one manifest file:
    /// YAML does not allow a key twice, and the line reader does not look).
    pub fn check_unique_since(&self, start: usize) -> Result<()> {
        let slots = self.slots.get(start..).unwrap_or_default();
        let order = by_id_then_position(slots);
        if let Some(w) = order.windows(2).find(|w| slots[w[0] as usize].rec.id == slots[w[1] as usize].rec.id) {
            bail!("malformed manifest: entry {} appears twice", BundleId(slots[w[0] as usize].rec.id));
        }
        Ok(())
    }

    /// Lay the index out into `w`, choosing what is served. With the
    /// strings in place (`for_file`), `w` writes to the same open file.
    fn finish_into<W: Write + Seek>(mut self, key: [u8; 32], w: &mut W) -> std::io::Result<()> {
        let invalid = |e: anyhow::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{e:#}"));
        // Type records by type number: name and range in by_name.
        let mut type_recs: Vec<(u64, u32, u32)> = Vec::with_capacity(self.types.len());
        for t in 0..self.types.len() {
            let name = self.types[t].clone();
            type_recs.push((self.intern(&name).map_err(invalid)?, 0, 0));
        }
        let IndexBuilder { hot, cold, pkgs, alts, mut slots, types, fixed, .. } = self;
        let fixed = settle_duplicates(&mut slots, fixed);
        let name_of = |p: &Pending| text(&hot, p.rec.name);
        // New slots are numbered by (type name, name): one type's bundles
        // then sit together in the file.
        slots[fixed..].sort_unstable_by(|a, b| {
            (a.rec.flags & FLAG_NAMED == 0, &types[a.rec.kind as usize], name_of(a), a.rec.id).cmp(&(
                b.rec.flags & FLAG_NAMED == 0,
                &types[b.rec.kind as usize],
                name_of(b),
                b.rec.id,
            ))
        });
        let mut type_order: Vec<u16> = (0..types.len() as u16).collect();
        type_order.sort_by(|a, b| types[*a as usize].cmp(&types[*b as usize]));
        let mut rank = vec![0u16; types.len()];
        for (r, t) in type_order.iter().enumerate() {
            rank[*t as usize] = r as u16;
        }
        let by_name = choose_served(&mut slots, &hot, &types, &rank);
        let named = slots.iter().filter(|s| s.rec.flags & FLAG_NAMED != 0 && valid_names(s, &hot, &types)).count();
        let mut pos = 0usize;
        for &t in &type_order {
            let start = pos;
            while pos < by_name.len() && slots[by_name[pos] as usize].rec.kind == t {
                pos += 1;
            }
            type_recs[t as usize].1 = start as u32;
            type_recs[t as usize].2 = (pos - start) as u32;
        }
        let slot_name = |s: u32| name_of(&slots[s as usize]);
        // The flat view: one bundle per name, the first type by name wins.
        // Held as positions in by_name, whose names are packed in order.
        let mut by_flat: Vec<u32> = (0..by_name.len() as u32).collect();
        by_flat.sort_unstable_by(|a, b| {
            let (sa, sb) = (by_name[*a as usize], by_name[*b as usize]);
            (slot_name(sa), rank[slots[sa as usize].rec.kind as usize])
                .cmp(&(slot_name(sb), rank[slots[sb as usize].rec.kind as usize]))
        });
        let mut flat: Vec<u32> = Vec::new();
        let mut clashes = 0usize;
        for p in by_flat {
            let s = by_name[p as usize];
            match flat.last() {
                Some(&prev) if slot_name(by_name[prev as usize]) == slot_name(s) => {
                    if slots[by_name[prev as usize] as usize].rec.kind != slots[s as usize].rec.kind {
                        clashes += 1;
                    }
                }
                _ => flat.push(p),
            }
        }
        let by_id = by_id_then_position(&slots);
        let mut by_uname: Vec<u32> = by_name.iter().copied().filter(|s| slots[*s as usize].rec.uname != 0).collect();
        by_uname.sort_by(|a, b| {
            let (sa, sb) = (&slots[*a as usize].rec, &slots[*b as usize].rec);
            (text(&hot, sa.uname), rank[sa.kind as usize]).cmp(&(text(&hot, sb.uname), rank[sb.kind as usize]))
        });
        let counts = IndexCounts {
            slots: slots.len(),
            shown: by_name.len(),
            unnamed: slots.iter().filter(|s| s.rec.flags & FLAG_NAMED == 0).count(),
            shadowed: named - by_name.len(),
            flat_collisions: clashes,
        };
        // Where each served name sits in `names` (by_name order).
        let mut name_at: Vec<u32> = Vec::with_capacity(by_name.len());
        let mut names_len = 0u64;
        for &s in &by_name {
            ensure_io(names_len < u32::MAX as u64, "the served names pass 4 GiB")?;
            name_at.push(names_len as u32);
            names_len += slot_name(s).len() as u64;
        }

        // Sections are streamed in record by record: the index is never
        // held in memory. The string area comes first: `cold` (packages'
        // strings, their references final as written), then `hot`, whose
        // references move past `cold`.
        let mut out = Out { w, pos: 0 };
        if matches!(cold, Column::InPlace { .. }) {
            out.pos = HEADER_LEN as u64; // the builder wrote the header's place
        } else {
            out.put(&[0u8; HEADER_LEN])?;
        }
        let mut offsets = [(0u64, 0u64); SECTIONS];
        let cold_len = cold.len();
        let shift = |r: u64| if r == 0 { 0 } else { r + (cold_len << 24) };
        let start = out.pos;
        cold.copy_to(&mut out)?;
        out.put(&hot)?;
        offsets[Section::Strings as usize] = (start, out.pos - start);

        let start = out.begin()?;
        for p in &slots {
            let s = &p.rec;
            let mut o = [0u8; SLOT_LEN];
            o[..32].copy_from_slice(&s.id);
            o[32..34].copy_from_slice(&s.kind.to_le_bytes());
            o[34] = s.flags;
            o[36..38].copy_from_slice(&s.pkgs_len.to_le_bytes());
            o[40..44].copy_from_slice(&s.pkgs_start.to_le_bytes());
            for (i, v) in [s.name, s.uname, s.reason, s.signed_by].into_iter().enumerate() {
                o[48 + i * 8..56 + i * 8].copy_from_slice(&shift(v).to_le_bytes());
            }
            out.put(&o)?;
        }
        offsets[Section::Slots as usize] = out.since(start);
        let start = out.begin()?;
        pkgs.copy_to(&mut out)?;
        offsets[Section::Packages as usize] = out.since(start);
        let start = out.begin()?;
        alts.copy_to(&mut out)?;
        offsets[Section::Alts as usize] = out.since(start);
        let start = out.begin()?;
        for (name, first, len) in &type_recs {
            out.put(&shift(*name).to_le_bytes())?;
            out.put(&first.to_le_bytes())?;
            out.put(&len.to_le_bytes())?;
        }
        offsets[Section::Types as usize] = out.since(start);
        let named_rec = |out: &mut Out<'_, W>, p: u32| -> std::io::Result<()> {
            let s = by_name[p as usize];
            let mut o = [0u8; NAMED_LEN];
            o[..4].copy_from_slice(&s.to_le_bytes());
            o[4..8].copy_from_slice(&name_at[p as usize].to_le_bytes());
            o[8..10].copy_from_slice(&(slot_name(s).len() as u16).to_le_bytes());
            out.put(&o)
        };
        let start = out.begin()?;
        for p in 0..by_name.len() as u32 {
            named_rec(&mut out, p)?;
        }
        offsets[Section::ByName as usize] = out.since(start);
        let start = out.begin()?;
        for &p in &flat {
            named_rec(&mut out, p)?;
        }
        offsets[Section::Flat as usize] = out.since(start);
        for (section, list) in [(Section::ById, &by_id), (Section::ByUname, &by_uname)] {
            let start = out.begin()?;
            for s in list {
                out.put(&s.to_le_bytes())?;
            }
            offsets[section as usize] = out.since(start);
        }
        let start = out.begin()?;
        for &s in &by_name {
            out.put(slot_name(s))?;
        }
        offsets[Section::Names as usize] = out.since(start);

        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&key);
        for c in [counts.slots, counts.shown, counts.unnamed, counts.shadowed, counts.flat_collisions, types.len()] {
            h.extend_from_slice(&(c as u32).to_le_bytes());
        }
        for (off, len) in offsets {
            h.extend_from_slice(&off.to_le_bytes());
            h.extend_from_slice(&len.to_le_bytes());
        }
        debug_assert_eq!(h.len(), HEADER_FIXED);
        let crc = crc32fast::hash(&h);
        h.extend_from_slice(&crc.to_le_bytes());
        h.resize(HEADER_LEN, 0);
        out.w.seek(SeekFrom::Start(0))?;
        out.w.write_all(&h)?;
        out.w.flush()
    }

    /// Lay the index out in memory (a builder from [`Self::new`]).
    pub fn finish(self, key: [u8; 32]) -> Vec<u8> {
        assert!(self.target.is_none(), "a builder for a file is written with write()");
        let mut cursor = std::io::Cursor::new(Vec::new());
        self.finish_into(key, &mut cursor).expect("writing to memory");
        cursor.into_inner()
    }

    /// Write the index (a builder from [`Self::for_file`]) into place,
    /// atomically, and open it.
    pub fn write(mut self, key: [u8; 32]) -> Result<Index> {
        let mut out = self.target.take().context("an index builder in memory has no file to write")?;
        let path = out.dest().to_path_buf();
        {
            let mut w = BufWriter::with_capacity(1 << 20, out.file());
            self.finish_into(key, &mut w).with_context(|| format!("writing {}", path.display()))?;
        }
        out.commit()?;
        Index::open(&path)
    }
}

fn ensure_io(ok: bool, what: &str) -> std::io::Result<()> {
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::other(what.to_string()))
    }
}
