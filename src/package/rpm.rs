//! RPM packages: lead, signature header and header (parsed by the `rpm`
//! crate), then a cpio payload compressed with gzip, xz, zstd or bzip2, or none.
//!
//! The payload is walked here rather than with the `rpm` crate's reader, which
//! is quadratic in the number of files (docs/performance.md).

use super::{cpio, decompress, EntrySink};
use anyhow::{anyhow, Context, Result};
use std::io::BufRead;

pub(crate) fn read(reader: &mut impl BufRead, sink: &mut EntrySink<'_>) -> Result<()> {
    let meta = rpm::PackageMetadata::parse(reader).map_err(|e| anyhow!("invalid RPM header: {e}"))?;
    if let (Ok(name), Ok(version), Ok(release)) = (meta.get_name(), meta.get_version(), meta.get_release()) {
        log::debug!("rpm {name}-{version}-{release}");
    }
    let payload = decompress::open(reader)?;
    cpio::read(payload, sink).context("in the RPM payload")
}
