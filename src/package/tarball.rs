//! Tar archives (already decompressed), as found in .deb data members and
//! plain .tar/.tar.gz/.tgz packages.

use super::{EntrySink, RawKind};
use anyhow::{Context, Result};
use std::io::Read;
use tar::EntryType;

pub(crate) fn read(reader: impl Read, sink: &mut EntrySink<'_>) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().context("reading tar archive")? {
        let mut entry = entry.context("reading tar entry")?;
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644);
        let mtime = header.mtime().unwrap_or(0) as i64;
        let kind = match header.entry_type() {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => RawKind::File,
            EntryType::Directory => RawKind::Dir,
            EntryType::Symlink => RawKind::Symlink(link_target(&entry)?),
            EntryType::Link => RawKind::Hardlink(link_target(&entry)?),
            EntryType::Char | EntryType::Block | EntryType::Fifo => RawKind::Special,
            other => {
                log::debug!("skipping tar entry of type {other:?}");
                continue;
            }
        };
        let path = entry.path_bytes().into_owned();
        let size = entry.size();
        sink.push(&path, kind, mode, mtime, size, &mut entry)?;
    }
    Ok(())
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>) -> Result<Vec<u8>> {
    Ok(entry
        .link_name_bytes()
        .with_context(|| format!("link {} has no target", String::from_utf8_lossy(&entry.path_bytes())))?
        .into_owned())
}
