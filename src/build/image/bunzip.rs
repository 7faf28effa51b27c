//! bzip2 decoded on several threads: a bzip2 stream is a run of blocks,
//! each starting with a 48-bit magic at any bit offset and each carrying
//! its own CRC, so the blocks can be found by a bit scan, repacked as
//! one-block streams and decoded apart (what lbzip2 and pbzip2 do). The
//! decoding itself is the `bzip2` crate's, as for every other .bz2 here.
//!
//! The split is a guess: the magic can also occur inside a block's data
//! (about once per 30 TB). A guess that is wrong makes a repacked block
//! fail its CRC or decode, and then the caller decodes the whole stream
//! again in order: the sequential decoder is the authority, the parallel
//! one only a way to get the same bytes sooner. Every stream's combined
//! CRC is checked as well.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

const BLOCK_MAGIC: u64 = 0x3141_5926_5359;
const END_MAGIC: u64 = 0x1772_4538_5090;
const MAGIC_MASK: u64 = (1 << 48) - 1;

/// A block of level 9 holds 900 kB before its run-length stage; runs of 4
/// bytes + a count expand it at most 255/5 times: 46 MB. More is hostile.
const MAX_BLOCK_OUTPUT: usize = 48 << 20;
/// A compressed block is at most a little over its 900 kB input.
const MAX_BLOCK_INPUT: usize = 2 << 20;
/// How much compressed input is read at a time.
const CHUNK: usize = 8 << 20;

/// Why the parallel decode stopped.
#[derive(Debug)]
pub enum Stop {
    /// The input is not what the scan expects, or a block failed: decode
    /// it in order instead (the input may still be good).
    Retry(String),
    /// Reading the input or writing the output failed, or the output
    /// refused more (its limit): the sequential decoder would fail too.
    Io(io::Error),
    Cancelled,
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        Stop::Io(e)
    }
}

/// For each byte value, the bit shifts (0..8) at which a magic whose
/// second byte (in that alignment) is this value could start one byte
/// earlier. Both magics: bit 0..8 for the block magic, 8..16 for the end.
fn second_byte_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    for (which, magic) in [BLOCK_MAGIC, END_MAGIC].into_iter().enumerate() {
        for shift in 0..8u32 {
            // The magic starts `shift` bits into byte i: byte i+1 holds its
            // bits 8-shift .. 16-shift (from the top).
            let byte = ((magic << 16) >> (64 - 16 + shift)) as u8;
            table[byte as usize] |= 1 << (shift + 8 * which as u32);
        }
    }
    table
}

/// Read `n` ≤ 57 bits from `buf` at bit offset `bit` (big-endian bit order).
fn bits_at(buf: &[u8], bit: u64, n: u32) -> Option<u64> {
    let byte = usize::try_from(bit / 8).ok()?;
    let shift = (bit % 8) as u32;
    let need = (shift + n).div_ceil(8) as usize;
    let have = buf.get(byte..byte.checked_add(need)?)?;
    let mut word = [0u8; 8];
    word[..need].copy_from_slice(have);
    Some((u64::from_be_bytes(word) << shift) >> (64 - n))
}

/// Bits written big-endian first, as bzip2 orders them.
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0: the last byte is full, or none).
    used: u32,
}

impl BitWriter {
    fn new(capacity: usize) -> Self {
        BitWriter { bytes: Vec::with_capacity(capacity), used: 0 }
    }

    fn push(&mut self, value: u64, n: u32) {
        for i in (0..n).rev() {
            let bit = ((value >> i) & 1) as u8;
            if self.used == 0 {
                self.bytes.push(0);
            }
            let last = self.bytes.len() - 1;
            self.bytes[last] |= bit << (7 - self.used);
            self.used = (self.used + 1) % 8;
        }
    }

    /// Append bits `[from, to)` of `src`; the writer is byte-aligned (a
    /// block follows the 4-byte stream header).
    fn copy_aligned(&mut self, src: &[u8], from: u64, to: u64) {
        debug_assert_eq!(self.used, 0);
        let shift = (from % 8) as u32;
        let start = (from / 8) as usize;
        let whole = ((to - from) / 8) as usize;
        if shift == 0 {
            self.bytes.extend_from_slice(&src[start..start + whole]);
        } else {
            // Byte k of the output is the end of source byte k and the
            // start of byte k+1, which exists: bit `to - 1` lies in it.
            self.bytes.extend(
                src[start..start + whole + 1].windows(2).map(|pair| (pair[0] << shift) | (pair[1] >> (8 - shift))),
            );
        }
        let mut at = from + whole as u64 * 8;
        while at < to {
            self.push(bits_at(src, at, 1).unwrap_or(0), 1);
            at += 1;
        }
    }
}

/// One block, repacked as a stream of its own.
struct Job {
    seq: u64,
    stream: Vec<u8>,
}

fn repack(buf: &[u8], base_bit: u64, from: u64, to: u64, level: u8) -> Result<(Vec<u8>, u32), Stop> {
    let (from, to) = (from - base_bit, to - base_bit);
    if to - from > MAX_BLOCK_INPUT as u64 * 8 {
        return Err(Stop::Retry("a block larger than bzip2 makes".into()));
    }
    let crc = bits_at(buf, from + 48, 32).ok_or_else(|| Stop::Retry("a block cut short".into()))? as u32;
    let mut w = BitWriter::new(((to - from) / 8) as usize + 16);
    w.bytes.extend_from_slice(&[b'B', b'Z', b'h', level]);
    w.copy_aligned(buf, from, to);
    w.push(END_MAGIC, 48);
    w.push(u64::from(crc), 32);
    Ok((w.bytes, crc))
}

fn decode_block(stream: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(1 << 20);
    let mut decoder = bzip2::read::BzDecoder::new(stream).take(MAX_BLOCK_OUTPUT as u64 + 1);
    decoder.read_to_end(&mut out).map_err(|e| e.to_string())?;
    if out.len() > MAX_BLOCK_OUTPUT {
        return Err("a block expands beyond what bzip2 can make".into());
    }
    Ok(out)
}

/// Decode bzip2 `input` into `out` with `threads` decoders. `Stop::Retry`
/// asks for the sequential decoder; nothing is promised about what `out`
/// got before it.
pub fn decode(input: &mut dyn Read, out: &mut dyn Write, threads: usize, cancel: &AtomicBool) -> Result<u64, Stop> {
    let threads = threads.max(1);
    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(threads * 2);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = mpsc::channel::<(u64, Result<Vec<u8>, String>)>();
    let failed = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let (job_rx, done_tx, failed) = (job_rx.clone(), done_tx.clone(), failed.clone());
            scope.spawn(move || loop {
                let job = match job_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok(job) = job else { return };
                if failed.load(Ordering::Relaxed) {
                    continue;
                }
                let result = decode_block(&job.stream);
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                if done_tx.send((job.seq, result)).is_err() {
                    return;
                }
            });
        }
        drop(done_tx);
        let mut writer = Ordered { out, next: 0, waiting: BTreeMap::new(), written: 0 };
        let result = scan(input, &job_tx, &done_rx, &mut writer, threads, cancel);
        drop(job_tx);
        // Drain what is still in flight.
        let drained = result.and_then(|sent| {
            while writer.next < sent {
                let Ok((seq, block)) = done_rx.recv() else {
                    return Err(Stop::Retry("a decoder stopped".into()));
                };
                writer.accept(seq, block)?;
            }
            Ok(())
        });
        drained.map(|()| writer.written)
    })
}

/// Writes decoded blocks in their order.
struct Ordered<'o> {
    out: &'o mut dyn Write,
    next: u64,
    waiting: BTreeMap<u64, Vec<u8>>,
    written: u64,
}

impl Ordered<'_> {
    fn accept(&mut self, seq: u64, block: Result<Vec<u8>, String>) -> Result<(), Stop> {
        let block = block.map_err(|e| Stop::Retry(format!("block {seq}: {e}")))?;
        self.waiting.insert(seq, block);
        while let Some(block) = self.waiting.remove(&self.next) {
            self.out.write_all(&block)?;
            self.written += block.len() as u64;
            self.next += 1;
        }
        Ok(())
    }
}

/// Scan the input for blocks, send each to the decoders, write what comes
/// back in order. Returns how many blocks were sent.
fn scan(
    input: &mut dyn Read,
    jobs: &mpsc::SyncSender<Job>,
    done: &mpsc::Receiver<(u64, Result<Vec<u8>, String>)>,
    writer: &mut Ordered<'_>,
    threads: usize,
    cancel: &AtomicBool,
) -> Result<u64, Stop> {
    let table = second_byte_table();
    let mut window = Window { buf: Vec::with_capacity(CHUNK * 2), base_bit: 0, eof: false };
    window.fill(input)?;
    let mut sent = 0u64;
    // Each stream: "BZh" and a level, blocks, the end magic and the
    // combined CRC, padding to a byte.
    let mut stream_start = 0u64; // global byte offset of "BZh"
    loop {
        while window.end_byte() < stream_start + 4 && !window.eof {
            window.fill(input)?;
        }
        if stream_start == window.end_byte() && window.eof {
            return Ok(sent);
        }
        let local = (stream_start - window.base_bit / 8) as usize;
        let head =
            window.buf.get(local..local + 4).ok_or_else(|| Stop::Retry("trailing bytes after a stream".into()))?;
        if &head[..3] != b"BZh" || !(b'1'..=b'9').contains(&head[3]) {
            return Err(Stop::Retry("trailing bytes after a stream".into()));
        }
        let level = head[3];
        let mut at = (stream_start + 4) * 8;
        let mut block_start: Option<u64> = None;
        let mut combined: u32 = 0;
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(Stop::Cancelled);
            }
            // Write decoded blocks as they come; keep a bounded number in flight.
            while sent - writer.next >= threads as u64 * 2 {
                let Ok((seq, block)) = done.recv() else {
                    return Err(Stop::Retry("a decoder stopped".into()));
                };
                writer.accept(seq, block)?;
            }
            while let Ok((seq, block)) = done.try_recv() {
                writer.accept(seq, block)?;
            }
            // The first magic comes right after the header.
            let first = at == (stream_start + 4) * 8;
            let found = if first { window.magic_exactly_at(at) } else { Ok(find_magic(&window, at, &table)) };
            match found {
                Err(()) => return Err(Stop::Retry("no block after a stream header".into())),
                Ok(Some((bit, is_end))) => {
                    if let Some(from) = block_start.take() {
                        let (stream, crc) = repack(&window.buf, window.base_bit, from, bit, level)?;
                        combined = combined.rotate_left(1) ^ crc;
                        jobs.send(Job { seq: sent, stream }).map_err(|_| Stop::Retry("a decoder stopped".into()))?;
                        sent += 1;
                    }
                    if is_end {
                        let stored = loop {
                            match bits_at(&window.buf, bit - window.base_bit + 48, 32) {
                                Some(v) => break v as u32,
                                None if !window.eof => window.fill(input)?,
                                None => return Err(Stop::Retry("a stream cut short".into())),
                            }
                        };
                        if stored != combined {
                            return Err(Stop::Retry("a stream's combined CRC differs".into()));
                        }
                        stream_start = (bit + 48 + 32).div_ceil(8);
                        break;
                    }
                    block_start = Some(bit);
                    at = bit + 48;
                }
                Ok(None) if window.eof => return Err(Stop::Retry("a stream cut short".into())),
                Ok(None) => {
                    // Everything before the last 7 bytes was searched.
                    if !first {
                        at = at.max(window.base_bit + window.buf.len().saturating_sub(7) as u64 * 8);
                    }
                    let keep_from = block_start.unwrap_or(at).min(at);
                    window.discard_before(keep_from);
                    if window.buf.len() > MAX_BLOCK_INPUT + CHUNK {
                        return Err(Stop::Retry("a block larger than bzip2 makes".into()));
                    }
                    window.fill(input)?;
                }
            }
        }
    }
}

/// The compressed bytes held: from global bit `base_bit` (a byte boundary).
struct Window {
    buf: Vec<u8>,
    base_bit: u64,
    eof: bool,
}

impl Window {
    fn end_byte(&self) -> u64 {
        self.base_bit / 8 + self.buf.len() as u64
    }

    fn fill(&mut self, input: &mut dyn Read) -> io::Result<()> {
        let start = self.buf.len();
        self.buf.resize(start + CHUNK, 0);
        let mut got = 0;
        while got < CHUNK {
            match input.read(&mut self.buf[start + got..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(start + got);
                    return Err(e);
                }
            }
        }
        self.buf.truncate(start + got);
        Ok(())
    }

    /// Drop whole bytes before global bit `bit`.
    fn discard_before(&mut self, bit: u64) {
        let bytes = ((bit - self.base_bit) / 8) as usize;
        self.buf.drain(..bytes.min(self.buf.len()));
        self.base_bit += bytes as u64 * 8;
    }

    /// A magic exactly at `bit`: Ok(None) when the bytes are not here yet,
    /// Err when something else is.
    fn magic_exactly_at(&self, bit: u64) -> Result<Option<(u64, bool)>, ()> {
        match bits_at(&self.buf, bit - self.base_bit, 48) {
            None => Ok(None),
            Some(BLOCK_MAGIC) => Ok(Some((bit, false))),
            Some(END_MAGIC) => Ok(Some((bit, true))),
            Some(_) => Err(()),
        }
    }
}

/// The first block or end magic at or after global bit `from` in the
/// window, with whether it is the end magic.
fn find_magic(window: &Window, from: u64, table: &[u16; 256]) -> Option<(u64, bool)> {
    let buf = &window.buf;
    let local = from - window.base_bit;
    let last = buf.len().checked_sub(8)?;
    // Byte i may start a magic at shifts 0..8; its next byte tells which
    // shifts can match (one table lookup per byte, most bytes rule all out).
    for i in (local / 8) as usize..=last {
        let mask = table[buf[i + 1] as usize];
        if mask == 0 {
            continue;
        }
        let w = u64::from_be_bytes(buf[i..i + 8].try_into().ok()?);
        for shift in 0..8u32 {
            let bit = i as u64 * 8 + shift as u64;
            if bit < local {
                continue;
            }
            let v = (w >> (16 - shift)) & MAGIC_MASK;
            if mask & (1 << shift) != 0 && v == BLOCK_MAGIC {
                return Some((bit + window.base_bit, false));
            }
            if mask & (1 << (shift + 8)) != 0 && v == END_MAGIC {
                return Some((bit + window.base_bit, true));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn compress(data: &[u8], level: u32) -> Vec<u8> {
        let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(level));
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn sample(n: usize) -> Vec<u8> {
        // Text-like and poorly compressible parts, so blocks split at odd bit offsets.
        let mut x: u32 = 12345;
        (0..n)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if (i / 5000) % 3 == 0 {
                    b"kernel headers "[i % 15]
                } else {
                    (x >> 24) as u8
                }
            })
            .collect()
    }

    fn parallel(input: &[u8]) -> Result<Vec<u8>, Stop> {
        let mut out = Vec::new();
        decode(&mut Cursor::new(input), &mut out, 2, &AtomicBool::new(false))?;
        Ok(out)
    }

    #[test]
    fn many_blocks_decode_to_the_input() {
        let data = sample(3_000_000);
        let got = parallel(&compress(&data, 1)).unwrap();
        assert!(got == data, "the parallel decode differs");
    }

    #[test]
    fn concatenated_streams_decode_to_both() {
        let (a, b) = (sample(250_000), sample(120_000));
        let mut both = compress(&a, 1);
        both.extend(compress(&b, 9));
        let got = parallel(&both).unwrap();
        assert_eq!(got.len(), a.len() + b.len());
        assert!(got[..a.len()] == a[..] && got[a.len()..] == b[..]);
    }

    #[test]
    fn empty_stream_decodes_to_nothing() {
        assert!(parallel(&compress(b"", 9)).unwrap().is_empty());
    }

    #[test]
    fn a_flipped_bit_asks_for_the_sequential_decoder() {
        let mut z = compress(&sample(400_000), 1);
        let at = z.len() / 2;
        z[at] ^= 0x10;
        assert!(matches!(parallel(&z), Err(Stop::Retry(_))));
    }

    #[test]
    fn a_truncated_stream_asks_for_the_sequential_decoder() {
        let z = compress(&sample(400_000), 1);
        assert!(matches!(parallel(&z[..z.len() - 20]), Err(Stop::Retry(_))));
        assert!(matches!(parallel(&z[..3]), Err(Stop::Retry(_))));
    }

    #[test]
    fn trailing_garbage_asks_for_the_sequential_decoder() {
        let mut z = compress(&sample(1000), 9);
        z.extend_from_slice(b"garbage!");
        assert!(matches!(parallel(&z), Err(Stop::Retry(_))));
    }

    #[test]
    fn bit_copies_keep_every_offset() {
        let src: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        for from in 0..20u64 {
            for len in [0u64, 1, 7, 8, 9, 63, 200] {
                let mut w = BitWriter::new(64);
                w.push(0b1010_0101, 8);
                w.copy_aligned(&src, from, from + len);
                for k in 0..len {
                    let want = bits_at(&src, from + k, 1).unwrap();
                    let got = bits_at(&w.bytes, 8 + k, 1).unwrap();
                    assert_eq!(want, got, "from {from} len {len} bit {k}");
                }
            }
        }
    }
}
