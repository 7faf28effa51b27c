//! Debian packages: an ar archive whose `data.tar[.gz|.xz|.zst|.bz2]` member
//! holds the files.

use super::{decompress, tarball, EntrySink};
use anyhow::{bail, Context, Result};
use std::io::{BufReader, Read};

pub(crate) fn read(reader: impl Read, sink: &mut EntrySink<'_>) -> Result<()> {
    let mut archive = ar::Archive::new(reader);
    while let Some(member) = archive.next_entry() {
        let member = member.context("reading .deb (ar) member")?;
        let name = String::from_utf8_lossy(member.header().identifier()).trim_end_matches('/').to_string();
        if name == "data.tar" || name.starts_with("data.tar.") {
            // The codec is taken from the magic bytes, which also covers a
            // member whose suffix lies.
            let stream = decompress::open(BufReader::with_capacity(256 << 10, member))?;
            return tarball::read(stream, sink).with_context(|| format!("in .deb member {name}"));
        }
    }
    bail!("no data.tar member in the .deb")
}
