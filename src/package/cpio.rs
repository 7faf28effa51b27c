//! The cpio "newc" format (070701/070702) that RPM payloads use.
//!
//! Hard links: newc stores the data once, on the last entry that shares the
//! inode; earlier ones have size 0. They are emitted as hard links to the
//! entry that carries the data.

use super::{EntrySink, RawKind};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::io::{self, Read};

const HEADER_LEN: usize = 110;
const MAX_NAME: usize = 4096;

struct Header {
    ino: u64,
    mode: u32,
    nlink: u32,
    mtime: i64,
    size: u64,
    name_len: usize,
}

fn field(h: &[u8], index: usize) -> Result<u64> {
    let start = 6 + index * 8;
    let text = std::str::from_utf8(&h[start..start + 8]).context("cpio header is not ASCII")?;
    u64::from_str_radix(text, 16).with_context(|| format!("cpio header field {text:?} is not hex"))
}

fn parse_header(h: &[u8; HEADER_LEN]) -> Result<Header> {
    match &h[..6] {
        b"070701" | b"070702" => {}
        b"07070X" => bail!("RPM large-file payload (07070X) is not supported"),
        other => bail!("not a cpio newc archive (magic {:?})", String::from_utf8_lossy(other)),
    }
    Ok(Header {
        ino: field(h, 0)?,
        mode: field(h, 1)? as u32,
        nlink: field(h, 4)? as u32,
        mtime: field(h, 5)? as i64,
        size: field(h, 6)?,
        name_len: field(h, 11)? as usize,
    })
}

fn skip(reader: &mut impl Read, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut reader.take(n), &mut io::sink())?;
    if copied != n {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cpio archive is truncated"));
    }
    Ok(())
}

fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

pub(crate) fn read(mut reader: impl Read, sink: &mut EntrySink<'_>) -> Result<()> {
    // inode → paths seen with no data yet (hard-link group members).
    let mut pending_links: HashMap<u64, Vec<(Vec<u8>, u32, i64)>> = HashMap::new();
    loop {
        let mut raw = [0u8; HEADER_LEN];
        reader.read_exact(&mut raw).context("cpio archive is truncated (header)")?;
        let h = parse_header(&raw)?;
        if h.name_len == 0 || h.name_len > MAX_NAME {
            bail!("cpio entry name length {} is out of range", h.name_len);
        }
        let mut name = vec![0u8; h.name_len];
        reader.read_exact(&mut name).context("cpio archive is truncated (name)")?;
        name.pop(); // the NUL terminator
        skip(&mut reader, pad4((HEADER_LEN + h.name_len) as u64))?;
        if name == b"TRAILER!!!" {
            break;
        }
        let file_type = h.mode & 0o170000;
        let kind = match file_type {
            0o100000 => RawKind::File,
            0o040000 => RawKind::Dir,
            0o120000 => {
                if h.size > MAX_NAME as u64 {
                    bail!("cpio symlink target of {} bytes is too long", h.size);
                }
                let mut target = vec![0u8; h.size as usize];
                reader.read_exact(&mut target).context("cpio archive is truncated (link)")?;
                skip(&mut reader, pad4(h.size))?;
                sink.push(&name, RawKind::Symlink(target), h.mode, h.mtime, 0, &mut io::empty())?;
                continue;
            }
            _ => RawKind::Special,
        };
        if matches!(kind, RawKind::File) && h.nlink > 1 {
            if h.size == 0 {
                pending_links.entry(h.ino).or_default().push((name, h.mode, h.mtime));
                continue;
            }
            sink.push(&name, RawKind::File, h.mode, h.mtime, h.size, &mut reader)?;
            for (link, mode, mtime) in pending_links.remove(&h.ino).unwrap_or_default() {
                sink.push(&link, RawKind::Hardlink(name.clone()), mode, mtime, 0, &mut io::empty())?;
            }
        } else if matches!(kind, RawKind::File) {
            sink.push(&name, kind, h.mode, h.mtime, h.size, &mut reader)?;
        } else {
            sink.push(&name, kind, h.mode, h.mtime, 0, &mut io::empty())?;
            skip(&mut reader, h.size)?;
        }
        skip(&mut reader, pad4(h.size))?;
    }
    // Hard-link groups whose data never came are empty files.
    for (_, members) in pending_links {
        for (name, mode, mtime) in members {
            sink.push(&name, RawKind::File, mode, mtime, 0, &mut io::empty())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{Budget, Item, Limits};

    fn entry(out: &mut Vec<u8>, name: &str, ino: u64, mode: u32, nlink: u32, data: &[u8]) {
        let namesize = name.len() + 1;
        let fields = [ino, mode as u64, 0, 0, nlink as u64, 0, data.len() as u64, 0, 0, 0, 0, namesize as u64, 0];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(out.len() + pad4((HEADER_LEN + namesize) as u64) as usize, 0);
        out.extend_from_slice(data);
        out.resize(out.len() + pad4(data.len() as u64) as usize, 0);
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<crate::package::Member>> {
        let budget = Budget::new(Limits::default());
        let mut sink = EntrySink::new(&budget);
        read(bytes, &mut sink)?;
        Ok(sink.entries)
    }

    #[test]
    fn hard_link_groups_share_the_data() {
        let mut a = Vec::new();
        entry(&mut a, "./usr/a", 7, 0o100644, 2, b"");
        entry(&mut a, "./usr/b", 7, 0o100644, 2, b"shared");
        entry(&mut a, "./usr/link", 8, 0o120777, 1, b"b");
        entry(&mut a, "TRAILER!!!", 0, 0, 1, b"");
        let entries = read_all(&a).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["usr/b", "usr/a", "usr/link"]);
        assert!(matches!(&entries[1].item, Item::Hardlink(t) if t == "usr/b"));
        assert!(matches!(&entries[2].item, Item::Symlink(t) if t == "b"));
    }

    #[test]
    fn traversal_and_truncation_are_errors() {
        let mut a = Vec::new();
        entry(&mut a, "./../evil", 1, 0o100644, 1, b"x");
        entry(&mut a, "TRAILER!!!", 0, 0, 1, b"");
        assert!(read_all(&a).unwrap_err().to_string().contains("path traversal"));
        let mut b = Vec::new();
        entry(&mut b, "./usr/a", 1, 0o100644, 1, b"0123456789");
        b.truncate(b.len() - 8);
        assert!(read_all(&b).is_err());
    }
}
