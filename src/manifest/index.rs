//! The served manifest in a compact, memory-mapped form.
//!
//! YAML stays the interchange format, but reading it costs about 30 µs and
//! 2 KB of heap per entry (3 s and 215 MB at 100,000 entries,
//! docs/performance.md). The mount serves from this index instead: fixed-size
//! records and sorted tables over one string area, built once from the YAML
//! (kept in the cache directory, rebuilt when an input changes) and mapped
//! read-only, so start-up is an `mmap` and memory is what the kernel pages
//! in for the names actually looked up.
//!
//! ```text
//! header (232 bytes)   magic "KPKIDX02", counts, section offsets, key, CRC
//! slots                one 80-byte record per bundle id, in slot order (slots
//!                      only grow: a rebuilt index keeps every earlier slot)
//! packages             56-byte records; each slot owns a range
//! alternatives         8-byte string references; each package owns a range
//! types                16-byte records by type number: name, range in by_name
//! by_name              12-byte named records (slot, name in `names`) of the
//!                      served bundles, by (type, name)
//! flat                 named records by name, one per name (bundles/ view)
//! by_id                every slot number, by id
//! by_uname             served slot numbers, by (uname, type name)
//! names                the served names, in by_name order
//! strings              every name, URL and reason
//! ```
//! Locality decides memory at scale: a directory listing or a lookup reads
//! only its type's named records and the packed `names` area, and the slots
//! of a first build are numbered by (type, name), so one type's slots sit
//! together (`ls -l` of 100,000 entries touches a few MB, not the whole file).
//! A string reference is a u64: offset << 24 | length. Every read is bounds
//! checked: a damaged index yields missing entries or a rebuild, never a
//! crash.

use super::{rules, BundleSpec, Package};
use crate::ids::BundleId;
use anyhow::{ensure, Context, Result};
use std::collections::HashMap;
use std::path::Path;

const MAGIC: &[u8; 8] = b"KPKIDX02";
const HEADER_LEN: usize = 232;
const SLOT_LEN: usize = 80;
const PKG_LEN: usize = 56;
const TYPE_LEN: usize = 16;

const FLAG_NAMED: u8 = 1;
const FLAG_VERIFIED: u8 = 2;
const FLAG_SERVED: u8 = 4;
const PKG_SHA: u8 = 1;
const PKG_SIZE: u8 = 2;

/// Sections, in file order, after the header.
#[derive(Clone, Copy)]
enum Section {
    Slots,
    Packages,
    Alts,
    Types,
    ByName,
    Flat,
    ById,
    ByUname,
    Names,
    Strings,
}

const SECTIONS: usize = 10;
const NAMED_LEN: usize = 12;

/// Counts the mount reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexCounts {
    pub slots: usize,
    pub shown: usize,
    pub unnamed: usize,
    pub shadowed: usize,
    pub flat_collisions: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct SlotRec {
    id: [u8; 32],
    kind: u16,
    flags: u8,
    name: u64,
    uname: u64,
    reason: u64,
    signed_by: u64,
    pkgs_start: u32,
    pkgs_len: u16,
}

#[derive(Debug, Clone, Copy, Default)]
struct PkgRec {
    url: u64,
    sha: [u8; 32],
    flags: u8,
    size: u64,
    alts_start: u32,
    alts_len: u16,
}

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
        let verified = spec.packages.iter().all(|p| p.sha256.is_some());
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
            if let Some(size) = p.size {
                pr.size = size;
                pr.flags |= PKG_SIZE;
            }
            self.pkgs.push(pr);
        }
        match self.by_id.get(&id.0) {
            Some(&slot) => self.slots[slot as usize] = rec,
            None => {
                ensure!(self.slots.len() < u32::MAX as usize - 1, "too many bundles");
                self.by_id.insert(id.0, self.slots.len() as u32);
                self.slots.push(rec);
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
        let mut fresh: Vec<SlotRec> = self.slots.drain(self.fixed..).collect();
        {
            let types = &self.types;
            let strings = &self.strings;
            let text = |r: u64| {
                let (off, len) = ((r >> 24) as usize, (r & 0xff_ffff) as usize);
                &strings[off..off + len]
            };
            fresh.sort_by(|a, b| {
                (a.flags & FLAG_NAMED == 0, &types[a.kind as usize], text(a.name), a.id).cmp(&(
                    b.flags & FLAG_NAMED == 0,
                    &types[b.kind as usize],
                    text(b.name),
                    b.id,
                ))
            });
        }
        self.slots.extend(fresh);
        // Type records by type number: name and range in by_name.
        let mut type_recs: Vec<(u64, u32, u32)> = Vec::new();
        for t in 0..self.types.len() {
            let name = self.types[t].clone();
            let r = self.intern(&name).unwrap_or(0);
            type_recs.push((r, 0, 0));
        }
        // Served: one bundle per (type, name), with valid names; the one
        // whose packages all carry sha256 wins, then the smaller id.
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
            let better = |a: &SlotRec, b: &SlotRec| {
                (a.flags & FLAG_VERIFIED, std::cmp::Reverse(a.id)) > (b.flags & FLAG_VERIFIED, std::cmp::Reverse(b.id))
            };
            chosen
                .entry((s.kind, name))
                .and_modify(|cur| {
                    if better(s, &self.slots[*cur as usize]) {
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
        debug_assert!(h.len() + 4 <= HEADER_LEN);
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

/// Where an index's bytes live.
enum Backing {
    Mapped(crate::files::Mapping),
    Owned(Vec<u8>),
}

/// A read-only index: every accessor is bounds checked.
pub struct Index {
    backing: Backing,
    key: [u8; 32],
    pub counts: IndexCounts,
    types: usize,
    sections: [(usize, usize); SECTIONS],
}

impl Index {
    /// Map an index file; a damaged header or section table is an error.
    pub fn open(path: &Path) -> Result<Index> {
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let len = file.metadata()?.len();
        let map = crate::files::Mapping::new(&file, len).with_context(|| format!("mapping {}", path.display()))?;
        Index::parse(Backing::Mapped(map)).with_context(|| format!("index {}", path.display()))
    }

    /// An index held in memory (tests, small manifests).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Index> {
        Index::parse(Backing::Owned(bytes))
    }

    fn parse(backing: Backing) -> Result<Index> {
        let bytes: &[u8] = match &backing {
            Backing::Mapped(m) => m.bytes(),
            Backing::Owned(v) => v,
        };
        ensure!(bytes.len() >= HEADER_LEN && &bytes[..8] == MAGIC, "not a kpackfs manifest index");
        let h = &bytes[..HEADER_LEN];
        let fixed = 8 + 32 + 6 * 4 + SECTIONS * 16;
        let crc = u32::from_le_bytes(h[fixed..fixed + 4].try_into()?);
        ensure!(crc32fast::hash(&h[..fixed]) == crc, "header checksum mismatch");
        let mut key = [0u8; 32];
        key.copy_from_slice(&h[8..40]);
        let n = |i: usize| u32::from_le_bytes(h[40 + i * 4..44 + i * 4].try_into().unwrap_or_default()) as usize;
        let counts = IndexCounts { slots: n(0), shown: n(1), unnamed: n(2), shadowed: n(3), flat_collisions: n(4) };
        let types = n(5);
        let mut sections = [(0usize, 0usize); SECTIONS];
        for (i, s) in sections.iter_mut().enumerate() {
            let at = 64 + i * 16;
            let start = u64::from_le_bytes(h[at..at + 8].try_into()?) as usize;
            let len = u64::from_le_bytes(h[at + 8..at + 16].try_into()?) as usize;
            let end = start.checked_add(len).filter(|e| *e <= bytes.len());
            ensure!(start >= HEADER_LEN && end.is_some(), "section {i} is out of place");
            *s = (start, len);
        }
        let want = |s: Section, n: usize, size: usize| sections[s as usize].1 >= n.saturating_mul(size);
        ensure!(
            want(Section::Slots, counts.slots, SLOT_LEN)
                && want(Section::Types, types, TYPE_LEN)
                && want(Section::ById, counts.slots, 4)
                && want(Section::ByName, counts.shown, NAMED_LEN),
            "sections are shorter than their counts"
        );
        Ok(Index { backing, key, counts, types, sections })
    }

    fn bytes(&self) -> &[u8] {
        match &self.backing {
            Backing::Mapped(m) => m.bytes(),
            Backing::Owned(v) => v,
        }
    }

    fn section(&self, s: Section) -> &[u8] {
        let (start, len) = self.sections[s as usize];
        &self.bytes()[start..start + len]
    }

    fn record(&self, s: Section, i: usize, size: usize) -> Option<&[u8]> {
        self.section(s).get(i.checked_mul(size)?..i.checked_mul(size)?.checked_add(size)?)
    }

    fn u32_at(&self, s: Section, i: usize) -> Option<u32> {
        Some(u32::from_le_bytes(self.record(s, i, 4)?.try_into().ok()?))
    }

    fn string(&self, r: u64) -> Option<&str> {
        let (off, len) = ((r >> 24) as usize, (r & 0xff_ffff) as usize);
        std::str::from_utf8(self.section(Section::Strings).get(off..off.checked_add(len)?)?).ok()
    }

    pub fn key(&self) -> [u8; 32] {
        self.key
    }

    fn slot(&self, slot: u32) -> Option<SlotRec> {
        let b = self.record(Section::Slots, slot as usize, SLOT_LEN)?;
        let u64_at = |at: usize| b.get(at..at + 8).and_then(|x| x.try_into().ok()).map(u64::from_le_bytes);
        Some(SlotRec {
            id: b[..32].try_into().ok()?,
            kind: u16::from_le_bytes([b[32], b[33]]),
            flags: b[34],
            pkgs_len: u16::from_le_bytes([b[36], b[37]]),
            pkgs_start: u32::from_le_bytes(b[40..44].try_into().ok()?),
            name: u64_at(48)?,
            uname: u64_at(56)?,
            reason: u64_at(64)?,
            signed_by: u64_at(72)?,
        })
    }

    fn package(&self, i: usize) -> Option<PkgRec> {
        let b = self.record(Section::Packages, i, PKG_LEN)?;
        Some(PkgRec {
            url: u64::from_le_bytes(b[0..8].try_into().ok()?),
            sha: b[8..40].try_into().ok()?,
            flags: b[40],
            alts_len: u16::from_le_bytes([b[42], b[43]]),
            alts_start: u32::from_le_bytes(b[44..48].try_into().ok()?),
            size: u64::from_le_bytes(b[48..56].try_into().ok()?),
        })
    }

    pub fn type_count(&self) -> usize {
        self.types
    }

    fn type_rec(&self, t: u16) -> Option<(u64, usize, usize)> {
        let b = self.record(Section::Types, t as usize, TYPE_LEN)?;
        Some((
            u64::from_le_bytes(b[0..8].try_into().ok()?),
            u32::from_le_bytes(b[8..12].try_into().ok()?) as usize,
            u32::from_le_bytes(b[12..16].try_into().ok()?) as usize,
        ))
    }

    /// The name of type number `t` (numbers follow first appearance and
    /// stay the same in a rebuilt index).
    pub fn type_name(&self, t: u16) -> Option<&str> {
        self.string(self.type_rec(t)?.0)
    }

    /// How many bundles type `t` serves.
    pub fn type_len(&self, t: u16) -> Option<usize> {
        self.type_rec(t).map(|(_, _, len)| len)
    }

    /// A named record of `section`: (slot, name).
    fn named(&self, section: Section, i: usize) -> Option<(u32, &str)> {
        let b = self.record(section, i, NAMED_LEN)?;
        let slot = u32::from_le_bytes(b[0..4].try_into().ok()?);
        let off = u32::from_le_bytes(b[4..8].try_into().ok()?) as usize;
        let len = u16::from_le_bytes([b[8], b[9]]) as usize;
        let name = std::str::from_utf8(self.section(Section::Names).get(off..off + len)?).ok()?;
        Some((slot, name))
    }

    /// The `i`-th served bundle of type `t`, by name: (slot, name).
    pub fn type_at(&self, t: u16, i: usize) -> Option<(u32, &str)> {
        let (_, start, len) = self.type_rec(t)?;
        if i >= len {
            return None;
        }
        self.named(Section::ByName, start.checked_add(i)?)
    }

    /// The served bundle of type `t` called `name`.
    pub fn find_in_type(&self, t: u16, name: &str) -> Option<u32> {
        let (_, _, len) = self.type_rec(t)?;
        let i = self.search(len, |i| Some(self.type_at(t, i)?.1.cmp(name)))?;
        self.type_at(t, i).map(|(slot, _)| slot)
    }

    /// Binary search over `len` positions; `cmp(i)` compares position i to the target.
    fn search(&self, len: usize, cmp: impl Fn(usize) -> Option<std::cmp::Ordering>) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match cmp(mid)? {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    pub fn flat_len(&self) -> usize {
        self.section(Section::Flat).len() / NAMED_LEN
    }

    /// The `i`-th bundle of the flat view (by name): (slot, name).
    pub fn flat_at(&self, i: usize) -> Option<(u32, &str)> {
        self.named(Section::Flat, i)
    }

    /// The bundle the flat view shows for `name`.
    pub fn find_flat(&self, name: &str) -> Option<u32> {
        let i = self.search(self.flat_len(), |i| Some(self.flat_at(i)?.1.cmp(name)))?;
        self.flat_at(i).map(|(slot, _)| slot)
    }

    pub fn uname_len(&self) -> usize {
        self.section(Section::ByUname).len() / 4
    }

    /// The `i`-th served bundle by kernel release.
    pub fn uname_at(&self, i: usize) -> Option<u32> {
        self.u32_at(Section::ByUname, i)
    }

    /// The first position in `0..len` where `below(i)` is false (binary
    /// search for a range start).
    fn lower_bound(&self, len: usize, below: impl Fn(usize) -> Option<bool>) -> usize {
        let (mut lo, mut hi) = (0usize, len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if below(mid).unwrap_or(false) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The served bundles of kernel release `uname`, in type-name order.
    pub fn find_uname(&self, uname: &str) -> Vec<u32> {
        let len = self.uname_len();
        let at = |i: usize| self.uname_at(i).and_then(|s| self.uname(s));
        let start = self.lower_bound(len, |i| Some(at(i)? < uname));
        (start..len).map_while(|i| (at(i)? == uname).then(|| self.uname_at(i)).flatten()).collect()
    }

    /// Up to `limit` slots whose id starts with the hex digits `prefix`.
    pub fn find_id_prefix(&self, prefix: &str, limit: usize) -> Vec<u32> {
        let prefix = prefix.to_ascii_lowercase();
        let hex_of = |i: usize| -> Option<String> { Some(hex::encode(self.slot(self.u32_at(Section::ById, i)?)?.id)) };
        let start = self.lower_bound(self.counts.slots, |i| Some(hex_of(i)?.as_str() < prefix.as_str()));
        (start..self.counts.slots)
            .map_while(|i| {
                let hex = hex_of(i)?;
                hex.starts_with(&prefix).then(|| self.u32_at(Section::ById, i)).flatten()
            })
            .take(limit)
            .collect()
    }

    /// Every slot (served, shadowed and unnamed entries), in slot order.
    pub fn slot_count(&self) -> u32 {
        self.counts.slots as u32
    }

    /// The slot of bundle `id`.
    pub fn find_id(&self, id: &BundleId) -> Option<u32> {
        let i = self.search(self.counts.slots, |i| Some(self.slot(self.u32_at(Section::ById, i)?)?.id.cmp(&id.0)))?;
        self.u32_at(Section::ById, i)
    }

    pub fn id(&self, slot: u32) -> Option<BundleId> {
        self.slot(slot).map(|s| BundleId(s.id))
    }

    pub fn kind(&self, slot: u32) -> Option<&str> {
        self.type_name(self.slot(slot)?.kind)
    }

    pub fn kind_number(&self, slot: u32) -> Option<u16> {
        self.slot(slot).map(|s| s.kind)
    }

    pub fn name(&self, slot: u32) -> Option<&str> {
        let s = self.slot(slot)?;
        (s.flags & FLAG_NAMED != 0).then(|| self.string(s.name)).flatten()
    }

    pub fn uname(&self, slot: u32) -> Option<&str> {
        let s = self.slot(slot)?;
        (s.flags & FLAG_NAMED != 0 && s.uname != 0).then(|| self.string(s.uname)).flatten()
    }

    /// Whether the slot is the bundle shown for its type and name.
    pub fn is_served(&self, slot: u32) -> bool {
        self.slot(slot).is_some_and(|s| s.flags & FLAG_SERVED != 0)
    }

    /// Why an entry has no name.
    pub fn unnamed_reason(&self, slot: u32) -> Option<&str> {
        let s = self.slot(slot)?;
        (s.flags & FLAG_NAMED == 0 && s.reason != 0).then(|| self.string(s.reason)).flatten()
    }

    /// The entry in a slot: its id, its spec, and why it has no name if so.
    pub fn entry(&self, slot: u32) -> Option<(BundleId, BundleSpec, Option<String>)> {
        let s = self.slot(slot)?;
        let named = s.flags & FLAG_NAMED != 0;
        let mut packages = Vec::with_capacity(s.pkgs_len as usize);
        for i in 0..s.pkgs_len as usize {
            let p = self.package((s.pkgs_start as usize).checked_add(i)?)?;
            let mut also = Vec::with_capacity(p.alts_len as usize);
            for a in 0..p.alts_len as usize {
                let r = u64::from_le_bytes(self.record(Section::Alts, p.alts_start as usize + a, 8)?.try_into().ok()?);
                also.push(self.string(r)?.to_string());
            }
            packages.push(Package {
                url: self.string(p.url)?.to_string(),
                also,
                sha256: (p.flags & PKG_SHA != 0).then(|| hex::encode(p.sha)),
                size: (p.flags & PKG_SIZE != 0).then_some(p.size),
            });
        }
        let text = |r: u64| if named { self.string(r).map(str::to_string) } else { None };
        let spec = BundleSpec {
            kind: self.type_name(s.kind)?.to_string(),
            name: text(s.name),
            uname: if s.uname == 0 { None } else { text(s.uname) },
            signed_by: (s.signed_by != 0).then(|| self.string(s.signed_by).map(str::to_string)).flatten(),
            packages,
        };
        let reason = if named { None } else { self.string(s.reason).map(str::to_string) };
        Some((BundleId(s.id), spec, reason))
    }
}

/// The key of an index: what it was built from, so an unchanged input is
/// served from the index file without reading the YAML.
pub fn key_of(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(MAGIC);
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// A file's identity for an index key: path, device, inode, size, mtime.
pub fn file_identity(path: &Path) -> Vec<u8> {
    use std::os::unix::fs::MetadataExt;
    let mut out = path.as_os_str().as_encoded_bytes().to_vec();
    if let Ok(m) = std::fs::metadata(path) {
        for v in [m.dev(), m.ino(), m.size(), m.mtime() as u64, m.mtime_nsec() as u64] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Feed a manifest's entries into a builder, deriving names.
pub fn add_manifest(b: &mut IndexBuilder, m: &super::Manifest) -> Result<()> {
    for (id, spec) in &m.entries {
        let bid = BundleId::parse(id).with_context(|| format!("entry {id} has no valid id"))?;
        b.add(bid, spec, m.unnamed.get(id).map(String::as_str))?;
    }
    Ok(())
}

/// Stream manifest YAML into a builder (see [`super::parse_each`]).
pub fn add_yaml(b: &mut IndexBuilder, text: &str, lists: &super::PackageLists) -> Result<usize> {
    let mut n = 0;
    super::parse_each(text, lists, |id, mut spec| {
        let reason = spec.fill_names().err();
        let bid = BundleId::parse(&id).with_context(|| format!("entry {id} has no valid id"))?;
        b.add(bid, &spec, reason.as_deref())?;
        n += 1;
        Ok(())
    })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    fn spec(kind: &str, file: &str, sha: bool) -> BundleSpec {
        let mut p = Package::new(format!("http://x.test/{file}"));
        if sha {
            p.sha256 = Some("ab".repeat(32));
            p.size = Some(42);
            p.also = vec![format!("http://y.test/{file}")];
        }
        BundleSpec { kind: kind.into(), name: None, uname: None, signed_by: None, packages: vec![p] }
    }

    fn manifest() -> Manifest {
        let mut m = Manifest::default();
        m.insert(spec("debian", "linux-headers-1.0-1-amd64_1_amd64.deb", true));
        m.insert(spec("debian", "linux-headers-1.0-2-amd64_1_amd64.deb", true));
        m.insert(spec("debian", "sub/linux-headers-1.0-2-amd64_1_amd64.deb", false)); // shadowed
        m.insert(spec("garden", "g/linux-headers-1.0-2-amd64_1_amd64.deb", true)); // flat clash
        m.insert(spec("cos", "kernel-src.tar.gz", true)); // unnamed
        m
    }

    #[test]
    fn round_trips_and_answers_lookups() {
        let m = manifest();
        let mut b = IndexBuilder::new();
        add_manifest(&mut b, &m).unwrap();
        let idx = Index::from_bytes(b.finish([7; 32])).unwrap();
        assert_eq!(idx.key(), [7; 32]);
        assert_eq!(idx.counts, IndexCounts { slots: 5, shown: 3, unnamed: 1, shadowed: 1, flat_collisions: 1 });
        for (id, spec) in &m.entries {
            let slot = idx.find_id(&BundleId::parse(id).unwrap()).unwrap();
            let (got_id, got, reason) = idx.entry(slot).unwrap();
            assert_eq!(got_id.hex(), *id);
            assert_eq!(&got, spec);
            assert_eq!(reason.as_deref(), m.unnamed.get(id).map(String::as_str));
        }
        let debian = (0..idx.type_count() as u16).find(|t| idx.type_name(*t) == Some("debian")).unwrap();
        assert_eq!(idx.type_len(debian), Some(2));
        let served = idx.find_in_type(debian, "1.0-2-amd64").unwrap();
        assert!(idx.entry(served).unwrap().1.packages[0].sha256.is_some(), "the verified entry is served");
        assert!(idx.find_in_type(debian, "1.0-3-amd64").is_none());
        assert_eq!(idx.flat_len(), 2);
        assert_eq!(idx.kind(idx.find_flat("1.0-2-amd64").unwrap()), Some("debian"), "the first type by name");
        assert_eq!(idx.uname_len(), 3);
    }

    #[test]
    fn a_rebuild_keeps_slots_and_types() {
        let m = manifest();
        let mut b = IndexBuilder::new();
        add_manifest(&mut b, &m).unwrap();
        let first = Index::from_bytes(b.finish([0; 32])).unwrap();
        let mut b = IndexBuilder::with_prev(&first).unwrap();
        let mut more = Manifest::default();
        more.insert(spec("aaa", "linux-headers-2.0-1-amd64_1_amd64.deb", true));
        add_manifest(&mut b, &more).unwrap();
        let second = Index::from_bytes(b.finish([0; 32])).unwrap();
        for slot in 0..first.counts.slots as u32 {
            assert_eq!(first.entry(slot), second.entry(slot));
            assert_eq!(first.kind_number(slot), second.kind_number(slot));
        }
        assert_eq!(second.counts.slots, 6);
    }

    #[test]
    fn damaged_indexes_are_refused_or_answer_nothing() {
        let mut b = IndexBuilder::new();
        add_manifest(&mut b, &manifest()).unwrap();
        let good = b.finish([0; 32]);
        let mut bad = good.clone();
        bad[50] ^= 1;
        assert!(Index::from_bytes(bad).is_err(), "header checksum");
        // Any flipped byte past the header: never a panic.
        for i in (HEADER_LEN..good.len()).step_by(3) {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            if let Ok(idx) = Index::from_bytes(bad) {
                for s in 0..idx.counts.slots as u32 + 2 {
                    let _ = idx.entry(s);
                    let _ = idx.name(s);
                }
                for t in 0..idx.type_count() as u16 + 1 {
                    let _ = idx.find_in_type(t, "1.0-1-amd64");
                    let _ = idx.type_at(t, 0);
                }
                let _ = idx.find_flat("1.0-1-amd64");
                let _ = idx.find_id(&BundleId([0; 32]));
            }
        }
    }
}
