//! Writing a bundle tree out: as a pack (the mount's cache file), as a
//! .tgz (a file replaced atomically, a device or FIFO, standard output),
//! and a pack's .tgz (byte-identical to the tree's: same canonical order).
//! A full disk is `no_space`; any other write failure `internal`.

use crate::error::{BuildError, ErrorClass};
use crate::files::AtomicFile;
use crate::layout::BundleTree;
use crate::pack::Pack;
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;

/// Where a .tgz goes.
pub enum TgzOut {
    /// A file, replaced atomically on success (the tier is written from it).
    File(AtomicFile),
    /// A device, FIFO or standard output: streamed, never replaced.
    Stream(Box<dyn Write + Send>),
}

/// What one build writes.
#[derive(Default)]
pub struct Outputs {
    /// The cache's pack file.
    pub pack: Option<AtomicFile>,
    pub tgz: Option<TgzOut>,
}

/// A .tgz as written: its digest and size, and its path when it is a file.
#[derive(Debug, Clone)]
pub struct TgzWritten {
    pub sha256: String,
    pub size: u64,
    pub path: Option<PathBuf>,
}

/// What the outputs became.
#[derive(Default)]
pub struct Written {
    /// The pack, opened, and its size.
    pub pack: Option<(Pack, u64)>,
    pub tgz: Option<TgzWritten>,
}

fn failed(what: &str) -> impl Fn(anyhow::Error) -> BuildError + '_ {
    move |e| BuildError::of(ErrorClass::Internal, &e.context(what.to_string()))
}

/// Write `tree` to `outputs` with `threads` (the caller's CPU lease).
pub fn write(tree: &BundleTree, outputs: Outputs, threads: usize) -> Result<Written, BuildError> {
    let mut written = Written::default();
    if let Some(mut out) = outputs.pack {
        let dest = out.dest().to_path_buf();
        let bytes = crate::pack::write(tree, std::io::BufWriter::with_capacity(1 << 20, out.file()))
            .map_err(failed("writing the pack"))?;
        out.commit().map_err(failed("installing the pack"))?;
        let pack = Pack::open(&dest).map_err(failed("opening the new pack"))?;
        written.pack = Some((pack, bytes));
    }
    written.tgz = match outputs.tgz {
        None => None,
        Some(TgzOut::File(mut out)) => {
            let path = out.dest().to_path_buf();
            let (sha256, size) =
                crate::tgz::write_hashed(tree, out.file(), threads).map_err(failed("writing the .tgz"))?;
            out.commit().map_err(failed("installing the .tgz"))?;
            Some(TgzWritten { sha256, size, path: Some(path) })
        }
        Some(TgzOut::Stream(stream)) => {
            let (sha256, size) = crate::tgz::write_hashed(tree, stream, threads).map_err(failed("writing the .tgz"))?;
            Some(TgzWritten { sha256, size, path: None })
        }
    };
    Ok(written)
}

/// Write a pack's .tgz into `out` and install it: its sha256 and size.
pub fn tgz_from_pack(pack: &Pack, mut out: AtomicFile, threads: usize) -> Result<(String, u64), BuildError> {
    let hashing = crate::tgz::HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, out.file()));
    let (writer, sha256, size) = pack.write_tgz(hashing, threads).map_err(failed("writing the .tgz"))?.finish();
    writer.into_inner().map_err(|e| e.into_error()).context("flushing the .tgz").map_err(failed("writing the .tgz"))?;
    out.commit().map_err(failed("installing the .tgz"))?;
    Ok((sha256, size))
}
