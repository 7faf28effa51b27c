//! The raw disk image, decompressed into a scratch file kpackfs made:
//! bzip2 on every thread of the lease (bzip2 blocks are independent), the
//! other formats in one stream. All-zero pages are left as holes (a
//! developer container is mostly free space), and the size is bounded.

use super::bunzip::{self, Stop};
use crate::package::decompress::Codec;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

const PAGE: usize = 4096;

/// Why an image could not be decompressed.
#[derive(Debug)]
pub enum Failure {
    /// The compressed stream is broken, or expands beyond the limit.
    Hostile(String),
    /// The scratch file could not be written.
    Io(io::Error),
    Cancelled,
}

/// Writes pages, skipping the all-zero ones; refuses to grow beyond `max`.
pub struct SparseWriter<'f> {
    file: &'f File,
    at: u64,
    max: u64,
    pending: Vec<u8>,
    cancel: &'f AtomicBool,
}

impl<'f> SparseWriter<'f> {
    pub fn new(file: &'f File, max: u64, cancel: &'f AtomicBool) -> Self {
        SparseWriter { file, at: 0, max, pending: Vec::with_capacity(1 << 20), cancel }
    }

    fn flush_pages(&mut self, all: bool) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let whole = if all { self.pending.len() } else { self.pending.len() / PAGE * PAGE };
        let mut run_start: Option<usize> = None;
        let mut off = 0;
        while off < whole {
            let end = (off + PAGE).min(whole);
            let zero = self.pending[off..end].iter().all(|&b| b == 0);
            match (zero, run_start) {
                (false, None) => run_start = Some(off),
                (true, Some(start)) => {
                    self.file.write_all_at(&self.pending[start..off], self.at + start as u64)?;
                    run_start = None;
                }
                _ => {}
            }
            off = end;
        }
        if let Some(start) = run_start {
            self.file.write_all_at(&self.pending[start..whole], self.at + start as u64)?;
        }
        self.at += whole as u64;
        self.pending.drain(..whole);
        Ok(())
    }

    /// Flush and set the file's length (trailing holes included).
    pub fn finish(mut self) -> io::Result<u64> {
        self.flush_pages(true)?;
        self.file.set_len(self.at)?;
        Ok(self.at)
    }
}

impl Write for SparseWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        let total = self.at + self.pending.len() as u64 + buf.len() as u64;
        if total > self.max {
            return Err(io::Error::other(TooLarge(self.max)));
        }
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= 1 << 20 {
            self.flush_pages(false)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The error a writer gives when the image would grow beyond its limit.
#[derive(Debug)]
struct TooLarge(u64);

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the image expands beyond {} (image_max_size)", crate::util::human_bytes(self.0))
    }
}

impl std::error::Error for TooLarge {}

fn classify(e: io::Error, cancel: &AtomicBool) -> Failure {
    if cancel.load(Ordering::Relaxed) {
        return Failure::Cancelled;
    }
    let too_large = e.get_ref().is_some_and(|inner| inner.is::<TooLarge>());
    match e.kind() {
        _ if too_large => Failure::Hostile(e.to_string()),
        // Decoders report broken input as InvalidData / InvalidInput / UnexpectedEof.
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof => {
            Failure::Hostile(format!("the compressed image is broken: {e}"))
        }
        _ => Failure::Io(e),
    }
}

/// Decompress `compressed` into `out` (a file in a directory kpackfs
/// made), at most `max` bytes. Returns the image's size.
pub fn decompress(
    compressed: &Path,
    out: &File,
    max: u64,
    threads: usize,
    cancel: &AtomicBool,
) -> Result<u64, Failure> {
    let mut input = BufReader::with_capacity(1 << 20, File::open(compressed).map_err(Failure::Io)?);
    let head = input.fill_buf().map_err(Failure::Io)?.to_vec();
    let codec = Codec::sniff(&head);
    if codec == Codec::Bzip2 && threads > 1 {
        let mut writer = SparseWriter::new(out, max, cancel);
        match bunzip::decode(&mut input, &mut writer, threads, cancel) {
            Ok(_) => return writer.finish().map_err(|e| classify(e, cancel)),
            Err(Stop::Cancelled) => return Err(Failure::Cancelled),
            Err(Stop::Io(e)) => return Err(classify(e, cancel)),
            Err(Stop::Retry(why)) => {
                log::debug!("image: the parallel bzip2 decode stopped ({why}); decoding in order");
                drop(writer);
                out.set_len(0).map_err(Failure::Io)?;
                input.seek(SeekFrom::Start(0)).map_err(Failure::Io)?;
            }
        }
    }
    let mut writer = SparseWriter::new(out, max, cancel);
    let mut reader: Box<dyn Read> =
        crate::package::decompress::open(input).map_err(|e| Failure::Io(io::Error::other(e)))?;
    io::copy(&mut reader, &mut writer).map_err(|e| classify(e, cancel))?;
    writer.finish().map_err(|e| classify(e, cancel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_pages_become_holes_and_the_length_is_kept() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let file =
            File::options().read(true).write(true).create(true).truncate(true).open(dir.path().join("img")).unwrap();
        let cancel = AtomicBool::new(false);
        let mut w = SparseWriter::new(&file, 1 << 30, &cancel);
        let mut data = vec![0u8; 64 << 20];
        data[5] = 1;
        data[(64 << 20) - 1] = 2;
        w.write_all(&data).unwrap();
        assert_eq!(w.finish().unwrap(), 64 << 20);
        let meta = file.metadata().unwrap();
        assert_eq!(meta.len(), 64 << 20);
        assert!(meta.blocks() * 512 < 1 << 20, "{} bytes allocated", meta.blocks() * 512);
        assert_eq!(std::fs::read(dir.path().join("img")).unwrap(), data);
    }

    #[test]
    fn an_image_beyond_the_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file =
            File::options().read(true).write(true).create(true).truncate(true).open(dir.path().join("img")).unwrap();
        let cancel = AtomicBool::new(false);
        let mut w = SparseWriter::new(&file, 1000, &cancel);
        let e = w.write_all(&[0u8; 1001]).unwrap_err();
        assert!(matches!(classify(e, &cancel), Failure::Hostile(m) if m.contains("image_max_size")));
    }
}
