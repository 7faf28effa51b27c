//! Decompression by magic bytes: gzip, xz, legacy lzma, zstd, bzip2 or none.

use anyhow::{Context, Result};
use std::io::{BufRead, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Xz,
    Lzma,
    Zstd,
    Bzip2,
}

impl Codec {
    pub fn sniff(head: &[u8]) -> Codec {
        if head.starts_with(&[0x1f, 0x8b]) {
            Codec::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Codec::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Codec::Zstd
        } else if head.starts_with(b"BZh") {
            Codec::Bzip2
        } else if head.len() >= 13 && head[0] == 0x5d && head[1..5] == [0, 0, 0x80, 0] {
            // lzma_alone: properties 0x5d and a power-of-two dictionary size.
            Codec::Lzma
        } else {
            Codec::None
        }
    }
}

/// Wrap `reader` in the decompressor its first bytes call for.
pub fn open<'a, R: BufRead + 'a>(mut reader: R) -> Result<Box<dyn Read + 'a>> {
    let head = reader.fill_buf().context("reading compressed stream header")?.to_vec();
    Ok(match Codec::sniff(&head) {
        Codec::None => Box::new(reader),
        Codec::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Codec::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(reader)),
        Codec::Lzma => {
            let stream = liblzma::stream::Stream::new_lzma_decoder(u64::MAX).context("starting lzma decoder")?;
            Box::new(liblzma::bufread::XzDecoder::new_stream(reader, stream))
        }
        Codec::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader).context("starting zstd decoder")?),
        Codec::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(reader)),
    })
}
