//! RPM packages: a 96-byte lead, the signature header, the main header,
//! then a cpio payload compressed with gzip, xz, zstd or bzip2, or none.
//!
//! The headers are parsed here, with every count and size bounded before
//! anything is allocated: the `rpm` crate's parser panicked on a 136-byte
//! file and allocated gigabytes for crafted counts (issue 8). The payload is
//! walked by our own cpio reader (the crate's is quadratic in the file
//! count, docs/performance.md).

use super::{cpio, decompress, EntrySink};
use anyhow::{bail, ensure, Context, Result};
use std::io::{BufRead, Read};

const LEAD_LEN: usize = 96;
const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const HEADER_MAGIC: [u8; 3] = [0x8e, 0xad, 0xe8];
/// rpm's own limits (HEADER_TAGS_MAX, HEADER_DATA_MAX).
const MAX_INDEX: u32 = 0xffff;
const MAX_DATA: u32 = 0x0fff_ffff;

/// Signature header tags.
pub const SIG_RSA_HEADER: u32 = 268;
pub const SIG_DSA_HEADER: u32 = 267;
pub const SIG_SHA256: u32 = 273;
/// Main header tags.
pub const TAG_NAME: u32 = 1000;
pub const TAG_VERSION: u32 = 1001;
pub const TAG_RELEASE: u32 = 1002;
pub const TAG_PAYLOAD_DIGEST: u32 = 5092;
pub const TAG_PAYLOAD_DIGEST_ALGO: u32 = 5093;

#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    tag: u32,
    kind: u32,
    offset: u32,
    count: u32,
}

/// One header structure: its index and data store, and its raw bytes.
#[derive(Debug)]
pub struct Header {
    entries: Vec<IndexEntry>,
    data: Vec<u8>,
    /// The header as stored (intro, index, data): what a header signature covers.
    pub raw: Vec<u8>,
}

impl Header {
    fn read(r: &mut impl Read, what: &str) -> Result<Header> {
        let mut intro = [0u8; 16];
        r.read_exact(&mut intro).with_context(|| format!("RPM {what} header is truncated"))?;
        ensure!(intro[..3] == HEADER_MAGIC && intro[3] == 1, "RPM {what} header has a bad magic");
        let count = u32::from_be_bytes(intro[8..12].try_into()?);
        let size = u32::from_be_bytes(intro[12..16].try_into()?);
        ensure!(count <= MAX_INDEX, "RPM {what} header has {count} index entries, over the limit of {MAX_INDEX}");
        ensure!(size <= MAX_DATA, "RPM {what} header has {size} bytes of data, over the limit of {MAX_DATA}");
        let body_len = count as u64 * 16 + size as u64;
        // Read what is there before trusting the sizes: a short file costs a
        // short allocation, whatever its header claims.
        let mut body = Vec::new();
        r.take(body_len).read_to_end(&mut body).with_context(|| format!("reading the RPM {what} header"))?;
        ensure!(body.len() as u64 == body_len, "RPM {what} header is truncated");
        let mut entries = Vec::with_capacity(count as usize);
        for chunk in body[..count as usize * 16].chunks_exact(16) {
            let field = |i: usize| u32::from_be_bytes([chunk[i], chunk[i + 1], chunk[i + 2], chunk[i + 3]]);
            let e = IndexEntry { tag: field(0), kind: field(4), offset: field(8), count: field(12) };
            ensure!(e.offset <= size, "RPM {what} header tag {} points past its data", e.tag);
            entries.push(e);
        }
        let data = body[count as usize * 16..].to_vec();
        let mut raw = intro.to_vec();
        raw.extend_from_slice(&body);
        Ok(Header { entries, data, raw })
    }

    fn entry(&self, tag: u32) -> Option<&IndexEntry> {
        self.entries.iter().find(|e| e.tag == tag)
    }

    /// A BIN (type 7) value.
    pub fn bin(&self, tag: u32) -> Option<&[u8]> {
        let e = self.entry(tag).filter(|e| e.kind == 7)?;
        let start = e.offset as usize;
        self.data.get(start..start.checked_add(e.count as usize)?)
    }

    /// A STRING (6), STRING_ARRAY (8, first item) or I18NSTRING (9) value.
    pub fn string(&self, tag: u32) -> Option<&str> {
        let e = self.entry(tag).filter(|e| matches!(e.kind, 6 | 8 | 9))?;
        let rest = self.data.get(e.offset as usize..)?;
        let end = rest.iter().position(|b| *b == 0)?;
        std::str::from_utf8(&rest[..end]).ok()
    }

    /// An INT32 (type 4) value.
    pub fn int32(&self, tag: u32) -> Option<u32> {
        let e = self.entry(tag).filter(|e| e.kind == 4 && e.count >= 1)?;
        let b = self.data.get(e.offset as usize..e.offset as usize + 4)?;
        Some(u32::from_be_bytes(b.try_into().ok()?))
    }
}

/// The lead and both headers of an RPM.
#[derive(Debug)]
pub struct Headers {
    pub signature: Header,
    pub main: Header,
}

impl Headers {
    /// name-version-release, for messages.
    pub fn nvr(&self) -> String {
        let part = |tag| self.main.string(tag).unwrap_or("?");
        format!("{}-{}-{}", part(TAG_NAME), part(TAG_VERSION), part(TAG_RELEASE))
    }
}

/// Read the lead and the two headers, leaving `r` at the payload.
pub fn read_headers(r: &mut impl Read) -> Result<Headers> {
    let mut lead = [0u8; LEAD_LEN];
    r.read_exact(&mut lead).context("RPM lead is truncated")?;
    ensure!(lead[..4] == LEAD_MAGIC, "not an RPM (bad lead magic)");
    let signature = Header::read(r, "signature")?;
    // The signature header is padded to a multiple of 8 bytes.
    let pad = (8 - signature.raw.len() % 8) % 8;
    let mut skip = [0u8; 8];
    r.read_exact(&mut skip[..pad]).context("RPM signature header padding is truncated")?;
    let main = Header::read(r, "main")?;
    Ok(Headers { signature, main })
}

pub(crate) fn read(reader: &mut impl BufRead, sink: &mut EntrySink<'_>) -> Result<()> {
    let headers = read_headers(reader)?;
    log::debug!("rpm {}", headers.nvr());
    if headers.main.entries.is_empty() {
        bail!("RPM main header is empty");
    }
    let payload = decompress::open(reader)?;
    cpio::read(payload, sink).context("in the RPM payload")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(entries: &[(u32, u32, u32, u32)], data: &[u8]) -> Vec<u8> {
        let mut h = vec![0x8e, 0xad, 0xe8, 1, 0, 0, 0, 0];
        h.extend((entries.len() as u32).to_be_bytes());
        h.extend((data.len() as u32).to_be_bytes());
        for (tag, kind, off, count) in entries {
            for v in [tag, kind, off, count] {
                h.extend(v.to_be_bytes());
            }
        }
        h.extend(data);
        h
    }

    fn rpm(sig: Vec<u8>, main: Vec<u8>) -> Vec<u8> {
        let mut out = LEAD_MAGIC.to_vec();
        out.resize(LEAD_LEN, 0);
        let pad = (8 - sig.len() % 8) % 8;
        out.extend(sig);
        out.extend(vec![0; pad]);
        out.extend(main);
        out
    }

    #[test]
    fn reads_headers_and_values() {
        let main = header(&[(TAG_NAME, 6, 0, 1), (TAG_VERSION, 6, 13, 1)], b"kernel-devel\x005.14\x00");
        let bytes = rpm(header(&[(SIG_SHA256, 6, 0, 1)], b"abc\x00"), main);
        let h = read_headers(&mut &bytes[..]).unwrap();
        assert_eq!(h.main.string(TAG_NAME), Some("kernel-devel"));
        assert_eq!(h.signature.string(SIG_SHA256), Some("abc"));
        assert_eq!(h.nvr(), "kernel-devel-5.14-?");
    }

    /// Issue 8 item 11: hostile headers are refused without a panic and
    /// without allocating what they claim.
    #[test]
    fn hostile_headers_are_refused_cheaply() {
        // Claims 65535 entries and 256 MB of data, holds 20 bytes.
        let mut huge = vec![0x8e, 0xad, 0xe8, 1, 0, 0, 0, 0];
        huge.extend(0xffffu32.to_be_bytes());
        huge.extend(0x0fff_ffffu32.to_be_bytes());
        huge.extend([0u8; 20]);
        let err = read_headers(&mut &rpm(huge, Vec::new())[..]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        // Over the limits.
        let mut over = vec![0x8e, 0xad, 0xe8, 1, 0, 0, 0, 0];
        over.extend(u32::MAX.to_be_bytes());
        over.extend(0u32.to_be_bytes());
        assert!(read_headers(&mut &rpm(over, Vec::new())[..]).unwrap_err().to_string().contains("index entries"));
        // An offset past the data; a value running off the end.
        let bad = header(&[(TAG_NAME, 6, 99, 1)], b"x\x00");
        assert!(read_headers(&mut &rpm(header(&[], b""), bad)[..]).is_err());
        let open = header(&[(TAG_NAME, 6, 0, 1), (5, 7, 1, u32::MAX)], b"xy");
        let h = read_headers(&mut &rpm(header(&[], b""), open)[..]).unwrap();
        assert_eq!(h.main.string(TAG_NAME), None, "no terminator: no value");
        assert_eq!(h.main.bin(5), None);
        // Every truncation of a good file is an error, never a panic.
        let good = rpm(header(&[(SIG_SHA256, 6, 0, 1)], b"abc\x00"), header(&[(TAG_NAME, 6, 0, 1)], b"k\x00"));
        for n in 0..good.len() {
            assert!(read_headers(&mut &good[..n]).is_err(), "truncated at {n}");
        }
    }
}
