//! Parallel, deterministic gzip (the scheme pigz uses).
//!
//! The input is cut into fixed-size chunks. Each chunk is deflated on its own,
//! primed with the last 32 KiB of the chunk before it, and ends with a sync
//! flush (the last one with the final block). The deflate streams concatenate
//! into one gzip member. Every chunk's output depends only on its bytes, its
//! dictionary and the level, so the result is byte-identical whatever the
//! number of threads. The header is fixed: no name, mtime 0, OS = Unix.
//! Backend: flate2 with zlib-rs, pinned, because backends differ in output.

use flate2::{Compress, Compression, FlushCompress, Status};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

const CHUNK: usize = 256 << 10;
const WINDOW: usize = 32 << 10;
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];

struct Job {
    data: Vec<u8>,
    dict: Vec<u8>,
    last: bool,
    reply: SyncSender<io::Result<Vec<u8>>>,
}

/// A chunk in order: compressed by a worker (its answer to come) or by
/// the writing thread itself.
enum Pending {
    Worker(Receiver<io::Result<Vec<u8>>>),
    Done(io::Result<Vec<u8>>),
}

/// A `Write` that gzips on `threads` threads: the writing thread and
/// `threads - 1` workers, so a CPU lease of N threads runs exactly N (the
/// writer compresses a chunk itself whenever every worker has one).
/// Call [`ParallelGzip::finish`].
pub struct ParallelGzip<W: Write> {
    out: Option<W>,
    buf: Vec<u8>,
    window: Vec<u8>,
    crc: crc32fast::Hasher,
    total: u64,
    level: u32,
    in_flight: VecDeque<Pending>,
    max_in_flight: usize,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

fn deflate_chunk(level: u32, data: &[u8], dict: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last { FlushCompress::Finish } else { FlushCompress::Sync };
    let mut out = Vec::with_capacity(data.len() / 3 + 1024);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 << 10));
        }
        let consumed = c.total_in() as usize;
        let status = c.compress_vec(&data[consumed..], &mut out, flush).map_err(io::Error::other)?;
        let all_in = c.total_in() as usize == data.len();
        let room_left = out.capacity() > out.len();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once everything is in and output was not cut short.
            Status::Ok | Status::BufError if !last && all_in && room_left => break,
            _ => {}
        }
    }
    Ok(out)
}

impl<W: Write> ParallelGzip<W> {
    pub fn new(mut out: W, level: u32, threads: usize) -> io::Result<Self> {
        out.write_all(&HEADER)?;
        let threads = threads.max(1);
        let (tx, rx) = mpsc::sync_channel::<Job>(threads);
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::with_capacity(threads - 1);
        for _ in 1..threads {
            let rx = Arc::clone(&rx);
            let worker = std::thread::Builder::new().name("kpackfs-gzip".into()).spawn(move || loop {
                let job = match rx.lock() {
                    Ok(guard) => guard.recv(),
                    Err(_) => return,
                };
                let Ok(job) = job else { return };
                let _ = job.reply.send(deflate_chunk(level, &job.data, &job.dict, job.last));
            })?;
            workers.push(worker);
        }
        Ok(ParallelGzip {
            out: Some(out),
            buf: Vec::with_capacity(CHUNK),
            window: Vec::new(),
            crc: crc32fast::Hasher::new(),
            total: 0,
            level,
            in_flight: VecDeque::new(),
            max_in_flight: threads * 2,
            jobs: Some(tx),
            workers,
        })
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        while self.in_flight.len() >= self.max_in_flight {
            self.write_oldest()?;
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let dict = std::mem::take(&mut self.window);
        self.window = data[data.len().saturating_sub(WINDOW)..].to_vec();
        if self.jobs.is_none() {
            return Err(io::Error::other("gzip stream already finished"));
        }
        let at_workers = self.in_flight.iter().filter(|p| matches!(p, Pending::Worker(_))).count();
        if at_workers >= self.workers.len() {
            // Every worker has a chunk: this thread compresses this one.
            self.in_flight.push_back(Pending::Done(deflate_chunk(self.level, &data, &dict, last)));
            return Ok(());
        }
        let (reply, result) = mpsc::sync_channel(1);
        let job = Job { data, dict, last, reply };
        if let Some(tx) = &self.jobs {
            tx.send(job).map_err(|_| io::Error::other("gzip workers stopped"))?;
        }
        self.in_flight.push_back(Pending::Worker(result));
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(pending) = self.in_flight.pop_front() else { return Ok(()) };
        let chunk = match pending {
            Pending::Worker(rx) => rx.recv().map_err(|_| io::Error::other("gzip worker died"))??,
            Pending::Done(result) => result?,
        };
        self.out.as_mut().ok_or_else(|| io::Error::other("gzip stream already finished"))?.write_all(&chunk)
    }

    /// Flush everything, write the trailer and return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        let crc = std::mem::take(&mut self.crc).finalize();
        let mut out = self.out.take().ok_or_else(|| io::Error::other("gzip stream already finished"))?;
        out.write_all(&crc.to_le_bytes())?;
        out.write_all(&(self.total as u32).to_le_bytes())?;
        out.flush()?;
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        Ok(out)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        self.crc.update(data);
        self.total += n as u64;
        while !data.is_empty() {
            let take = (CHUNK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == CHUNK {
                self.dispatch(false)?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ParallelGzip<W> {
    fn drop(&mut self) {
        self.jobs = None;
        self.in_flight.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gz(data: &[u8], threads: usize) -> Vec<u8> {
        let mut w = ParallelGzip::new(Vec::new(), 6, threads).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trips_and_is_thread_independent() {
        let mut data = Vec::new();
        for i in 0..200_000u32 {
            data.extend_from_slice(format!("line {i} {}\n", i % 97).as_bytes());
        }
        let one = gz(&data, 1);
        let four = gz(&data, 4);
        assert_eq!(one, four);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&one[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        assert!(one.len() < data.len() / 3);
    }

    #[test]
    fn empty_and_exact_chunk_inputs() {
        for len in [0, CHUNK, CHUNK * 2 + 7] {
            let data = vec![7u8; len];
            let out = gz(&data, 2);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&out[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back.len(), len);
        }
    }
}
