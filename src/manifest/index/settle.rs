//! Settling an index's slots before it is written: one per id, and the one
//! bundle served per (type, name). Decided by sorting slot numbers, not in
//! hash maps (a million entries stay small).

use super::{rules, SlotRec, FLAG_NAMED, FLAG_SERVED, FLAG_VERIFIED};

/// A slot as the builder holds it: its record and its package version.
#[derive(Clone, Copy)]
pub(super) struct Pending {
    pub rec: SlotRec,
    /// The version among same-named entries (a string in `hot`; NO_VERSION:
    /// none). Only the served choice reads it; it is not written.
    pub version: u64,
}

pub(super) const NO_VERSION: u64 = u64::MAX;

/// The bytes of string reference `r` in `area` (empty if out of range).
pub(super) fn text(area: &[u8], r: u64) -> &[u8] {
    let (off, len) = ((r >> 24) as usize, (r & 0xff_ffff) as usize);
    area.get(off..off + len).unwrap_or_default()
}

/// One slot per id: the last added record takes the place of the first
/// (an inherited slot keeps its number), later copies go. Returns how many
/// inherited slots remain.
pub(super) fn settle_duplicates(slots: &mut Vec<Pending>, fixed: usize) -> usize {
    let order = by_id_then_position(slots);
    let mut dead = vec![false; slots.len()];
    let mut moves: Vec<(u32, u32)> = Vec::new();
    for group in order.chunk_by(|a, b| slots[*a as usize].rec.id == slots[*b as usize].rec.id) {
        if let (Some(&first), Some(&last)) = (group.first(), group.last()) {
            if first != last {
                moves.push((first, last));
                group[1..].iter().for_each(|&g| dead[g as usize] = true);
            }
        }
    }
    drop(order);
    if moves.is_empty() {
        return fixed;
    }
    for (first, last) in moves {
        slots[first as usize] = slots[last as usize];
    }
    let kept_fixed = dead[..fixed].iter().filter(|d| !**d).count();
    let mut i = 0;
    slots.retain(|_| {
        i += 1;
        !dead[i - 1]
    });
    kept_fixed
}

/// Slot positions by (id, position). The sort compares an id's first eight
/// bytes from a compact array (the records themselves are 88 bytes apart:
/// comparing in them is cache misses), the whole id only on a tie.
pub(super) fn by_id_then_position(slots: &[Pending]) -> Vec<u32> {
    let prefix = |i: usize| {
        let id = &slots[i].rec.id;
        u64::from_be_bytes([id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7]])
    };
    let mut keyed: Vec<(u64, u32)> = (0..slots.len()).map(|i| (prefix(i), i as u32)).collect();
    keyed.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| slots[a.1 as usize].rec.id.cmp(&slots[b.1 as usize].rec.id)).then(a.1.cmp(&b.1))
    });
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// Whether a named slot's type, name and release may be shown.
pub(super) fn valid_names(s: &Pending, hot: &[u8], types: &[String]) -> bool {
    let as_str = |r: u64| std::str::from_utf8(text(hot, r)).unwrap_or("");
    rules::check_type(&types[s.rec.kind as usize]).is_ok()
        && rules::check_name("name", as_str(s.rec.name)).is_ok()
        && (s.rec.uname == 0 || rules::check_name("uname", as_str(s.rec.uname)).is_ok())
}

/// Served: one bundle per (type, name), with valid names; the one whose
/// packages all carry a digest wins, then the newer version, then the
/// smaller id. Marks them FLAG_SERVED; returns them by (type, name).
pub(super) fn choose_served(slots: &mut [Pending], hot: &[u8], types: &[String], rank: &[u16]) -> Vec<u32> {
    let mut candidates: Vec<u32> = (0..slots.len() as u32)
        .filter(|&i| {
            let s = &slots[i as usize];
            s.rec.flags & FLAG_NAMED != 0 && valid_names(s, hot, types)
        })
        .collect();
    // Within a (type, name), slot order: the choice below is then the one
    // a walk over the slots makes.
    candidates.sort_unstable_by(|a, b| {
        let (sa, sb) = (&slots[*a as usize].rec, &slots[*b as usize].rec);
        (rank[sa.kind as usize], text(hot, sa.name), a).cmp(&(rank[sb.kind as usize], text(hot, sb.name), b))
    });
    let better = |a: &Pending, b: &Pending| {
        let by_version = match (a.version, b.version) {
            (NO_VERSION, _) | (_, NO_VERSION) => std::cmp::Ordering::Equal,
            (va, vb) => super::super::debversion::compare(
                std::str::from_utf8(text(hot, va)).unwrap_or(""),
                std::str::from_utf8(text(hot, vb)).unwrap_or(""),
            ),
        };
        (a.rec.flags & FLAG_VERIFIED)
            .cmp(&(b.rec.flags & FLAG_VERIFIED))
            .then(by_version)
            .then(b.rec.id.cmp(&a.rec.id))
            .is_gt()
    };
    let mut served = Vec::new();
    let same = |a: &u32, b: &u32| {
        let (sa, sb) = (&slots[*a as usize].rec, &slots[*b as usize].rec);
        sa.kind == sb.kind && text(hot, sa.name) == text(hot, sb.name)
    };
    for group in candidates.chunk_by(same) {
        let mut best = group[0];
        for &i in &group[1..] {
            if better(&slots[i as usize], &slots[best as usize]) {
                best = i;
            }
        }
        served.push(best);
    }
    for &s in &served {
        slots[s as usize].rec.flags |= FLAG_SERVED;
    }
    served
}
