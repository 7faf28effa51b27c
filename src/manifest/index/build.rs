//! Building an index: slots, the served choice, sorted tables, written in
//! sections (the layout is in the parent module).

use super::*;

/// Builds an index from manifest entries; the newest entry for an id wins.
#[derive(Default)]
pub struct IndexBuilder {
    strings: Vec<u8>,
    interned: HashMap<String, u64>,
    slots: Vec<SlotRec>,
    by_id: HashMap<[u8; 32], u32>,
    pkgs: Vec<PkgRec>,
    alts: Vec<u64>,
    types: Vec<String>,
    type_ids: HashMap<String, u16>,
    /// Slots inherited from an earlier index: their numbers are fixed.
    fixed: usize,
    /// Each slot's package version (not written: only the served choice
    /// among same-named entries reads it).
    versions: Vec<Option<String>>,
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

fn str_ref(off: usize, len: usize) -> u64 {
    ((off as u64) << 24) | len as u64
}

impl IndexBuilder {
    pub fn new() -> IndexBuilder {
        IndexBuilder::default()
    }

    /// Every slot of `prev`, in its slot order, so numbers stay the same.
    pub fn with_prev(prev: &Index) -> Result<IndexBuilder> {
        let mut b = IndexBuilder::new();
        for t in 0..prev.type_count() {
            let name = prev.type_name(t as u16).context("damaged index: a type has no name")?;
            b.type_id(name)?;
        }
        for slot in 0..prev.counts.slots as u32 {
            let (id, spec, reason) = prev.entry(slot).context("damaged index: unreadable slot")?;
            b.add(id, &spec, reason.as_deref())?;
        }
        b.fixed = b.slots.len();
        Ok(b)
    }

    fn push_str(&mut self, s: &str) -> Result<u64> {
        ensure!(s.len() < 1 << 24, "a manifest string of {} bytes is too long", s.len());
        let off = self.strings.len();
        self.strings.extend_from_slice(s.as_bytes());
        Ok(str_ref(off, s.len()))
    }

    /// Strings that repeat (types, reasons) are stored once.
    fn intern(&mut self, s: &str) -> Result<u64> {
        if let Some(r) = self.interned.get(s) {
            return Ok(*r);
        }
        let r = self.push_str(s)?;
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
        let kind = self.type_id(&spec.kind)?;
        // A name is enough to be shown; the release may be known only from the contents.
        let named = spec.name.is_some() && unnamed.is_none();
        let verified = spec.packages.iter().all(|p| p.has_digest());
        let mut rec = SlotRec {
            id: id.0,
            kind,
            flags: if named { FLAG_NAMED } else { 0 } | if verified { FLAG_VERIFIED } else { 0 },
            pkgs_start: self.pkgs.len() as u32,
            ..SlotRec::default()
        };
        ensure!(spec.packages.len() <= u16::MAX as usize, "entry {id} has too many packages");
        rec.pkgs_len = spec.packages.len() as u16;
        if let Some(name) = &spec.name {
            rec.name = self.push_str(name)?;
        }
        if let Some(uname) = &spec.uname {
            rec.uname = self.push_str(uname)?;
        }
        if let Some(reason) = unnamed {
            rec.reason = self.intern(reason)?;
        }
        if let Some(key) = &spec.signed_by {
            rec.signed_by = self.intern(key)?;
        }
        for p in &spec.packages {
            let mut pr =
                PkgRec { url: self.push_str(&p.url)?, alts_start: self.alts.len() as u32, ..PkgRec::default() };
            ensure!(p.also.len() <= u16::MAX as usize, "entry {id} has too many alternative URLs");
            pr.alts_len = p.also.len() as u16;
            for alt in &p.also {
                let r = self.push_str(alt)?;
                self.alts.push(r);
            }
            if let Some(sha) = p.sha256.as_deref().and_then(crate::ids::Sha256::parse) {
                pr.sha = sha.0;
                pr.flags |= PKG_SHA;
            }
            if let Some(sha512) = &p.sha512 {
                pr.sha512 = self.push_str(&sha512.to_ascii_lowercase())?;
            }
            if let Some(size) = p.size {
                pr.size = size;
                pr.flags |= PKG_SIZE;
            }
            self.pkgs.push(pr);
        }
        let version = version_of(spec);
        match self.by_id.get(&id.0) {
            Some(&slot) => {
                self.slots[slot as usize] = rec;
                self.versions[slot as usize] = version;
            }
            None => {
                ensure!(self.slots.len() < u32::MAX as usize - 1, "too many bundles");
                self.by_id.insert(id.0, self.slots.len() as u32);
                self.slots.push(rec);
                self.versions.push(version);
            }
        }
        Ok(())
    }

    fn string(&self, r: u64) -> &str {
        let (off, len) = ((r >> 24) as usize, (r & 0xff_ffff) as usize);
        std::str::from_utf8(&self.strings[off..off + len]).unwrap_or("")
    }

    /// Lay the index out into `w`, choosing what is served.
    pub fn finish_into<W: std::io::Write + std::io::Seek>(mut self, key: [u8; 32], w: &mut W) -> std::io::Result<()> {
        // New slots are numbered by (type name, name): one type's bundles
        // then sit together in the file.
        let fresh_versions: Vec<Option<String>> = self.versions.drain(self.fixed..).collect();
        let mut fresh: Vec<(SlotRec, Option<String>)> = self.slots.drain(self.fixed..).zip(fresh_versions).collect();
        {
            let types = &self.types;
            let strings = &self.strings;
            let text = |r: u64| {
                let (off, len) = ((r >> 24) as usize, (r & 0xff_ffff) as usize);
                &strings[off..off + len]
            };
            fresh.sort_by(|(a, _), (b, _)| {
                (a.flags & FLAG_NAMED == 0, &types[a.kind as usize], text(a.name), a.id).cmp(&(
                    b.flags & FLAG_NAMED == 0,
                    &types[b.kind as usize],
                    text(b.name),
                    b.id,
                ))
            });
        }
        for (slot, version) in fresh {
            self.slots.push(slot);
            self.versions.push(version);
        }
        // Type records by type number: name and range in by_name.
        let mut type_recs: Vec<(u64, u32, u32)> = Vec::new();
        for t in 0..self.types.len() {
            let name = self.types[t].clone();
            let r = self.intern(&name).unwrap_or(0);
            type_recs.push((r, 0, 0));
        }
        // Served: one bundle per (type, name), with valid names; the one
        // whose packages all carry a digest wins, then the newer version,
        // then the smaller id.
        let mut chosen: HashMap<(u16, &str), u32> = HashMap::new();
        let mut named = 0usize;
        for (i, s) in self.slots.iter().enumerate() {
            if s.flags & FLAG_NAMED == 0 {
                continue;
            }
            let (name, uname) = (self.string(s.name), self.string(s.uname));
            let kind = &self.types[s.kind as usize];
            if rules::check_type(kind).is_err()
                || rules::check_name("name", name).is_err()
                || (s.uname != 0 && rules::check_name("uname", uname).is_err())
            {
                continue;
            }
            named += 1;
            // Verified first, then the newer version, then the smaller id.
            let better = |a: usize, b: usize| {
                let (sa, sb) = (&self.slots[a], &self.slots[b]);
                let by_version = match (&self.versions[a], &self.versions[b]) {
                    (Some(va), Some(vb)) => super::super::debversion::compare(va, vb),
                    _ => std::cmp::Ordering::Equal,
                };
                (sa.flags & FLAG_VERIFIED)
                    .cmp(&(sb.flags & FLAG_VERIFIED))
                    .then(by_version)
                    .then(sb.id.cmp(&sa.id))
                    .is_gt()
            };
            chosen
                .entry((s.kind, name))
                .and_modify(|cur| {
                    if better(i, *cur as usize) {
                        *cur = i as u32;
                    }
                })
                .or_insert(i as u32);
        }
        let served: Vec<u32> = chosen.into_values().collect();
        for &s in &served {
            self.slots[s as usize].flags |= FLAG_SERVED;
        }
        let mut type_order: Vec<u16> = (0..self.types.len() as u16).collect();
        type_order.sort_by(|a, b| self.types[*a as usize].cmp(&self.types[*b as usize]));
        let mut rank = vec![0u16; self.types.len()];
        for (r, t) in type_order.iter().enumerate() {
            rank[*t as usize] = r as u16;
        }
        let name_of = |s: u32| self.string(self.slots[s as usize].name);
        let mut by_name = served.clone();
        by_name.sort_by(|a, b| {
            let (sa, sb) = (&self.slots[*a as usize], &self.slots[*b as usize]);
            (rank[sa.kind as usize], name_of(*a)).cmp(&(rank[sb.kind as usize], name_of(*b)))
        });
        let mut pos = 0usize;
        for &t in &type_order {
            let start = pos;
            while pos < by_name.len() && self.slots[by_name[pos] as usize].kind == t {
                pos += 1;
            }
            type_recs[t as usize].1 = start as u32;
            type_recs[t as usize].2 = (pos - start) as u32;
        }
        // The flat view: one bundle per name, the first type by name wins.
        let mut flat: Vec<u32> = Vec::new();
        let mut clashes = 0usize;
        let mut by_flat = by_name.clone();
        by_flat.sort_by(|a, b| {
            let (sa, sb) = (&self.slots[*a as usize], &self.slots[*b as usize]);
            (name_of(*a), rank[sa.kind as usize]).cmp(&(name_of(*b), rank[sb.kind as usize]))
        });
        for s in by_flat {
            match flat.last() {
                Some(&prev) if name_of(prev) == name_of(s) => {
                    if self.slots[prev as usize].kind != self.slots[s as usize].kind {
                        clashes += 1;
                    }
                }
                _ => flat.push(s),
            }
        }
        let mut by_id: Vec<u32> = (0..self.slots.len() as u32).collect();
        by_id.sort_by(|a, b| self.slots[*a as usize].id.cmp(&self.slots[*b as usize].id));
        let mut by_uname: Vec<u32> = by_name.iter().copied().filter(|s| self.slots[*s as usize].uname != 0).collect();
        by_uname.sort_by(|a, b| {
            let (sa, sb) = (&self.slots[*a as usize], &self.slots[*b as usize]);
            (self.string(sa.uname), rank[sa.kind as usize]).cmp(&(self.string(sb.uname), rank[sb.kind as usize]))
        });
        let counts = IndexCounts {
            slots: self.slots.len(),
            shown: served.len(),
            unnamed: self.slots.iter().filter(|s| s.flags & FLAG_NAMED == 0).count(),
            shadowed: named - served.len(),
            flat_collisions: clashes,
        };

        // Sections are written one after the other, each from a small
        // buffer: the index is never held twice in memory.
        let mut out = Out { w, pos: 0 };
        out.put(&[0u8; HEADER_LEN])?;
        let mut offsets = [(0u64, 0u64); SECTIONS];
        let mut section =
            |out: &mut Out<'_, W>, which: Section, bytes: &mut dyn FnMut(&mut Vec<u8>)| -> std::io::Result<()> {
                out.pad8()?;
                let start = out.pos;
                let mut buf = Vec::with_capacity(1 << 16);
                bytes(&mut buf);
                out.put(&buf)?;
                offsets[which as usize] = (start, out.pos - start);
                Ok(())
            };
        section(&mut out, Section::Slots, &mut |o| {
            for s in &self.slots {
                o.extend_from_slice(&s.id);
                o.extend_from_slice(&s.kind.to_le_bytes());
                o.push(s.flags);
                o.push(0);
                o.extend_from_slice(&s.pkgs_len.to_le_bytes());
                o.extend_from_slice(&[0u8; 2]);
                o.extend_from_slice(&s.pkgs_start.to_le_bytes());
                o.extend_from_slice(&[0u8; 4]);
                for v in [s.name, s.uname, s.reason, s.signed_by] {
                    o.extend_from_slice(&v.to_le_bytes());
                }
            }
        })?;
        section(&mut out, Section::Packages, &mut |o| {
            for p in &self.pkgs {
                o.extend_from_slice(&p.url.to_le_bytes());
                o.extend_from_slice(&p.sha);
                o.push(p.flags);
                o.push(0);
                o.extend_from_slice(&p.alts_len.to_le_bytes());
                o.extend_from_slice(&p.alts_start.to_le_bytes());
                o.extend_from_slice(&p.size.to_le_bytes());
                o.extend_from_slice(&p.sha512.to_le_bytes());
            }
        })?;
        section(&mut out, Section::Alts, &mut |o| {
            self.alts.iter().for_each(|a| o.extend_from_slice(&a.to_le_bytes()))
        })?;
        section(&mut out, Section::Types, &mut |o| {
            for (name, start, len) in &type_recs {
                o.extend_from_slice(&name.to_le_bytes());
                o.extend_from_slice(&start.to_le_bytes());
                o.extend_from_slice(&len.to_le_bytes());
            }
        })?;
        let u32s = |v: &[u32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        // Names packed in by_name order; named records point into them.
        let mut names: Vec<u8> = Vec::new();
        let mut name_at: HashMap<u32, (u32, u16)> = HashMap::with_capacity(by_name.len());
        for &s in &by_name {
            let name = name_of(s).as_bytes();
            name_at.insert(s, (names.len() as u32, name.len() as u16));
            names.extend_from_slice(name);
        }
        let named = |v: &[u32]| -> Vec<u8> {
            let mut out = Vec::with_capacity(v.len() * NAMED_LEN);
            for s in v {
                let (off, len) = name_at[s];
                out.extend_from_slice(&s.to_le_bytes());
                out.extend_from_slice(&off.to_le_bytes());
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&[0u8; 2]);
            }
            out
        };
        let (bn, fl, bi, bu) = (named(&by_name), named(&flat), u32s(&by_id), u32s(&by_uname));
        section(&mut out, Section::ByName, &mut |o| o.extend_from_slice(&bn))?;
        section(&mut out, Section::Flat, &mut |o| o.extend_from_slice(&fl))?;
        section(&mut out, Section::ById, &mut |o| o.extend_from_slice(&bi))?;
        section(&mut out, Section::ByUname, &mut |o| o.extend_from_slice(&bu))?;
        section(&mut out, Section::Names, &mut |o| o.extend_from_slice(&names))?;
        let strings = std::mem::take(&mut self.strings);
        out.pad8()?;
        offsets[Section::Strings as usize] = (out.pos, strings.len() as u64);
        out.put(&strings)?;
        drop(strings);
        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&key);
        for c in [counts.slots, counts.shown, counts.unnamed, counts.shadowed, counts.flat_collisions, self.types.len()]
        {
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
        out.w.seek(std::io::SeekFrom::Start(0))?;
        out.w.write_all(&h)?;
        out.w.flush()
    }

    /// Lay the index out in memory.
    pub fn finish(self, key: [u8; 32]) -> Vec<u8> {
        let mut cursor = std::io::Cursor::new(Vec::new());
        self.finish_into(key, &mut cursor).expect("writing to memory");
        cursor.into_inner()
    }

    /// Write the index to `path` (atomically) and open it.
    pub fn write(self, key: [u8; 32], path: &Path) -> Result<Index> {
        let mut out = crate::files::AtomicFile::create(path)?;
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, out.file());
            self.finish_into(key, &mut w).with_context(|| format!("writing {}", path.display()))?;
        }
        out.commit()?;
        Index::open(path)
    }
}

/// A writer that knows where it is.
struct Out<'a, W: std::io::Write + std::io::Seek> {
    w: &'a mut W,
    pos: u64,
}

impl<W: std::io::Write + std::io::Seek> Out<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.w.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn pad8(&mut self) -> std::io::Result<()> {
        let pad = (8 - self.pos % 8) % 8;
        self.put(&[0u8; 8][..pad as usize])
    }
}
