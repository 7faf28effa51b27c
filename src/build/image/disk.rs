//! Where the filesystem is inside a raw image: a GPT partition (Flatcar's
//! and CoreOS's developer containers hold one, number 9, labelled ROOT),
//! or the whole image (a bare filesystem). The table is read by gptman;
//! its header's table size is checked here first, because gptman sizes an
//! allocation by it.

use std::fs::File;
use std::io::Cursor;
use std::os::unix::fs::FileExt;

/// A byte range of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub start: u64,
    pub len: u64,
}

/// The ext2/3/4 superblock magic, at 1024 + 56 of a filesystem.
fn has_ext_magic(file: &File, start: u64) -> bool {
    let mut magic = [0u8; 2];
    file.read_exact_at(&mut magic, start + 1024 + 56).is_ok() && magic == [0x53, 0xef]
}

/// The GPT header fields a reader trusts for sizes: bounded before gptman
/// sees them (the spec's table is 128 entries of 128 bytes).
fn header_is_sane(head: &[u8], sector: u64) -> bool {
    let at = sector as usize;
    let Some(h) = head.get(at..at + 92) else { return false };
    if &h[..8] != b"EFI PART" {
        return true; // not a GPT at this sector size: gptman says so
    }
    let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
    let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap_or([0xff; 8]));
    let (entries, entry_size, entries_lba) = (u32_at(80), u32_at(84), u64_at(72));
    (1..=1024).contains(&entries) && entry_size == 128 && (2..64).contains(&entries_lba)
}

/// The filesystem's extent: the one Linux data partition (the ROOT
/// partition when there are several), else the image itself when it is a
/// bare filesystem.
pub fn find_filesystem(file: &File, image_len: u64) -> Result<Extent, String> {
    // The table and its entries lie in the first 34 sectors: read that much
    // (4096-byte sectors included) and let gptman read a copy of it.
    let head_len = image_len.min(64 * 4096) as usize;
    let mut head = vec![0u8; head_len];
    file.read_exact_at(&mut head, 0).map_err(|e| format!("reading the image: {e}"))?;
    if head.get(1024 + 56..1024 + 58) == Some(&[0x53, 0xef]) {
        return Ok(Extent { start: 0, len: image_len });
    }
    if !header_is_sane(&head, 512) || !header_is_sane(&head, 4096) {
        return Err("the GPT header gives an impossible partition table size".into());
    }
    let gpt = gptman::GPT::find_from(&mut Cursor::new(&head))
        .map_err(|e| format!("no GPT and no filesystem at the start of the image: {e}"))?;
    let sector = gpt.sector_size;
    let mut candidates = Vec::new();
    for (number, entry) in gpt.iter() {
        if !entry.is_used() {
            continue;
        }
        let start = entry.starting_lba.checked_mul(sector);
        let len = entry.ending_lba.checked_sub(entry.starting_lba).and_then(|n| (n + 1).checked_mul(sector));
        let (Some(start), Some(len)) = (start, len) else { continue };
        if start.checked_add(len).is_none_or(|end| end > image_len) {
            log::debug!("image: partition {number} lies outside the image");
            continue;
        }
        if has_ext_magic(file, start) {
            candidates.push((number, entry.partition_name.as_str().to_string(), Extent { start, len }));
        }
    }
    match candidates.as_slice() {
        [] => Err("no partition of the image holds an ext2/3/4 filesystem".into()),
        [(_, _, one)] => Ok(*one),
        many => many
            .iter()
            .find(|(_, name, _)| name == "ROOT")
            .map(|(_, _, e)| *e)
            .ok_or_else(|| format!("{} partitions hold a filesystem and none is labelled ROOT", many.len())),
    }
}

/// The filesystem's bytes, for ext4-view: reads stay inside the extent.
pub struct PartitionReader {
    pub file: File,
    pub extent: Extent,
}

impl ext4_view::Ext4Read for PartitionReader {
    fn read(&mut self, start_byte: u64, dst: &mut [u8]) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let end = start_byte.checked_add(dst.len() as u64).filter(|&end| end <= self.extent.len);
        if end.is_none() {
            return Err(format!("a read at {start_byte} of {} bytes leaves the filesystem", dst.len()).into());
        }
        self.file.read_exact_at(dst, self.extent.start + start_byte)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absurd_partition_count_is_refused_before_gptman() {
        let mut head = vec![0u8; 8192];
        head[512..520].copy_from_slice(b"EFI PART");
        head[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        head[512 + 80..512 + 84].copy_from_slice(&u32::MAX.to_le_bytes());
        head[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        assert!(!header_is_sane(&head, 512));
        head[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        assert!(header_is_sane(&head, 512));
    }

    #[test]
    fn reads_past_the_partition_are_errors() {
        use ext4_view::Ext4Read;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        std::fs::write(&path, vec![7u8; 8192]).unwrap();
        let mut r = PartitionReader { file: File::open(&path).unwrap(), extent: Extent { start: 4096, len: 1024 } };
        let mut buf = [0u8; 16];
        assert!(r.read(1010, &mut buf).is_err());
        assert!(r.read(u64::MAX - 4, &mut buf).is_err());
        r.read(1008, &mut buf).unwrap();
        assert_eq!(buf, [7u8; 16]);
    }
}
