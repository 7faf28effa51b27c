//! Reading an index: mapped, every access bounds checked.

use super::*;

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

    /// Let the pages read so far go from this process's memory (a pass
    /// over every slot: a reload, a sidecar merged); nothing for an index
    /// in memory.
    pub fn release_pages(&self) {
        if let Backing::Mapped(m) = &self.backing {
            m.release_pages();
        }
    }

    /// Every slot, in the order its packages were written (the order its
    /// source listed them): a pass over all entries in this order reads
    /// the package records and strings front to back, where slot order
    /// (by type and name) jumps about the whole file.
    pub fn slots_in_file_order(&self) -> Vec<u32> {
        let mut order: Vec<(u32, u32)> =
            (0..self.slot_count()).map(|s| (self.slot(s).map_or(u32::MAX, |r| r.pkgs_start), s)).collect();
        order.sort_unstable();
        order.into_iter().map(|(_, s)| s).collect()
    }

    /// An index held in memory (tests, small manifests).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Index> {
        Index::parse(Backing::Owned(bytes))
    }

    /// Check a header alone: magic and checksum.
    pub(super) fn parse_header(bytes: &[u8]) -> Result<()> {
        ensure!(bytes.len() >= HEADER_LEN && &bytes[..8] == MAGIC, "not a kpackfs manifest index");
        let crc = u32::from_le_bytes(bytes[HEADER_FIXED..HEADER_FIXED + 4].try_into()?);
        ensure!(crc32fast::hash(&bytes[..HEADER_FIXED]) == crc, "header checksum mismatch");
        Ok(())
    }

    fn parse(backing: Backing) -> Result<Index> {
        let bytes: &[u8] = match &backing {
            Backing::Mapped(m) => m.bytes(),
            Backing::Owned(v) => v,
        };
        Index::parse_header(bytes)?;
        let h = &bytes[..HEADER_LEN];
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
            sha512: u64::from_le_bytes(b[56..64].try_into().ok()?),
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
                sha512: if p.sha512 == 0 { None } else { Some(self.string(p.sha512)?.to_string()) },
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
