//! Image bundles (type coreos): the kernel's build tree out of a
//! compressed disk image, Flatcar's and CoreOS's developer container,
//! read in user space (nothing is mounted: an image from the internet
//! never reaches the kernel's filesystem drivers).
//!
//! 1. [`raw`]: decompress into a scratch file in a directory kpackfs made
//!    (bzip2 block-parallel, holes for zero pages, bounded by
//!    `image_max_size`);
//! 2. [`disk`]: the filesystem's partition (GPT by gptman, or a bare
//!    filesystem);
//! 3. [`tree`]: `lib/modules/<release>/{build,source}` read by ext4-view,
//!    only the blocks of that tree;
//! 4. `layout::coreos`: kernel-packer's bundle shape, relocatable.

pub mod bunzip;
pub mod disk;
pub mod raw;
pub mod tree;

use crate::error::{BuildError, ErrorClass};
use crate::layout::LaidOut;
use crate::package::Budget;
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// Bounds on reading one image.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest decompressed image (the scratch file's apparent size).
    pub max_image_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_image_bytes: 16 << 30 }
    }
}

impl Limits {
    pub fn of(settings: &crate::settings::Settings) -> Limits {
        Limits { max_image_bytes: settings.image_max_size }
    }
}

/// One image to read.
pub struct ImageJob<'a> {
    /// The bundle id (BUNDLE_CHECKSUM).
    pub id: &'a str,
    pub image: &'a Path,
    /// Where the raw image goes: a directory kpackfs made.
    pub scratch: &'a Path,
    /// The manifest's kernel release, when it knows one.
    pub release: Option<&'a str>,
    pub limits: crate::package::Limits,
    pub image_limits: Limits,
    pub threads: usize,
    pub cancel: &'a AtomicBool,
}

fn hostile(what: impl std::fmt::Display) -> BuildError {
    BuildError::new(ErrorClass::Hostile, what.to_string())
}

/// The kernel's tree out of a raw image of `size` bytes (the part of an
/// image read that parses hostile bytes: fuzzed in tests/fuzz.rs).
pub fn read_raw(
    raw: std::fs::File,
    size: u64,
    release: Option<&str>,
    limits: crate::package::Limits,
    cancel: &AtomicBool,
) -> Result<tree::Found, String> {
    let extent = disk::find_filesystem(&raw, size)?;
    let fs = ext4_view::Ext4::load(Box::new(disk::PartitionReader { file: raw, extent }))
        .map_err(|e| format!("the image's filesystem: {e}"))?;
    tree::read(&fs, release, &Budget::new(limits), cancel)
}

/// Read the image's kernel tree and lay it out.
pub fn make(job: ImageJob<'_>) -> Result<LaidOut, BuildError> {
    let started = std::time::Instant::now();
    let raw_path = job.scratch.join("image.raw");
    let raw = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&raw_path)
        .map_err(|e| BuildError::new(ErrorClass::Internal, format!("creating {}: {e}", raw_path.display())))?;
    let size = raw::decompress(job.image, &raw, job.image_limits.max_image_bytes, job.threads, job.cancel).map_err(
        |f| match f {
            raw::Failure::Hostile(why) => hostile(why),
            raw::Failure::Cancelled => BuildError::new(ErrorClass::Internal, "cancelled: nobody waits for it"),
            raw::Failure::Io(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                BuildError::new(ErrorClass::NoSpace, format!("decompressing the image: {e}"))
            }
            raw::Failure::Io(e) => BuildError::new(ErrorClass::Internal, format!("decompressing the image: {e}")),
        },
    )?;
    let decompressed = started.elapsed();
    let found = read_raw(raw, size, job.release, job.limits, job.cancel).map_err(hostile)?;
    let trees =
        crate::layout::coreos::Trees { release: &found.release, build: &found.build, source: found.source.as_deref() };
    let laid = crate::layout::coreos::lay_out(found.members, trees, job.id, job.limits)
        .map_err(|e| hostile(format!("{e:#}")))?;
    log::debug!(
        "image: {} decompressed in {:.2}s, tree read in {:.2}s",
        crate::util::human_bytes(size),
        decompressed.as_secs_f64(),
        (started.elapsed() - decompressed).as_secs_f64()
    );
    Ok(laid)
}
