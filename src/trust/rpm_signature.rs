//! RPM package signatures, checked as dnf's gpgcheck does before anything
//! of a package is extracted:
//! - a header signature (RSA tag 268 or DSA 267) over the main header, whose
//!   payload digest (tag 5092) then vouches for the compressed payload; or
//! - for older packages without a payload digest, a legacy signature (tags
//!   1002/1005) over header and payload together.
//!
//! The signature is verified by gpgv against the entry's key; the payload
//! is hashed here, streamed, never held whole. The `rpm` crate's
//! verification would bring its header parser back, which issue 8 removed
//! for panicking and over-allocating on hostile headers.

use super::gpg;
use super::keys::Keyring;
use crate::package::rpm::{self, Headers};
use anyhow::{bail, Context, Result};
use sha2::Digest;
use std::io::{BufReader, Read};
use std::path::Path;

const SIG_PGP: u32 = 1002;
const SIG_GPG: u32 = 1005;
/// rpm's PGPHASHALGO numbers for the payload digest.
const HASH_SHA256: u32 = 8;
const HASH_SHA384: u32 = 9;
const HASH_SHA512: u32 = 10;

/// How a package was found to be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    /// Header signature plus the signed header's payload digest.
    HeaderAndPayloadDigest,
    /// A legacy signature over header and payload.
    HeaderPlusPayload,
}

/// Check the package at `path` against `key`. The error says what is wrong
/// (unsigned, unknown key, changed data) and names the key; callers add the
/// package's name.
pub fn check(path: &Path, key: &Keyring) -> Result<Signed> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let headers = rpm::read_headers(&mut reader)?;
    let header_sig = [rpm::SIG_RSA_HEADER, rpm::SIG_DSA_HEADER].iter().find_map(|t| headers.signature.bin(*t));
    let legacy_sig = [SIG_PGP, SIG_GPG].iter().find_map(|t| headers.signature.bin(*t));
    let digest = headers.main.string(rpm::TAG_PAYLOAD_DIGEST);
    match (header_sig, digest, legacy_sig) {
        (Some(sig), Some(digest), _) => {
            gpg::verify_detached(key, &headers.main.raw, sig, gpg::ExpiredKey::Accept).context("header signature")?;
            check_payload_digest(&headers, digest, &mut reader).with_context(|| format!("signed by {key}"))?;
            Ok(Signed::HeaderAndPayloadDigest)
        }
        (_, _, Some(sig)) => {
            let mut signed = std::io::Cursor::new(&headers.main.raw).chain(reader);
            gpg::verify_detached_stream(key, &mut signed, sig, gpg::ExpiredKey::Accept)
                .context("header+payload signature")?;
            Ok(Signed::HeaderPlusPayload)
        }
        (Some(_), None, None) => {
            bail!("the signature covers the header only and the header has no payload digest (key {key})")
        }
        (None, _, None) => bail!("not signed (gpgcheck wants a signature by {key})"),
    }
}

fn check_payload_digest(headers: &Headers, recorded: &str, payload: &mut impl Read) -> Result<()> {
    let algo = headers.main.int32(rpm::TAG_PAYLOAD_DIGEST_ALGO).unwrap_or(HASH_SHA256);
    let actual = match algo {
        HASH_SHA256 => hash_all::<sha2::Sha256>(payload)?,
        HASH_SHA384 => hash_all::<sha2::Sha384>(payload)?,
        HASH_SHA512 => hash_all::<sha2::Sha512>(payload)?,
        other => bail!("payload digest algorithm {other} is not supported"),
    };
    if !actual.eq_ignore_ascii_case(recorded.trim()) {
        bail!("payload digest mismatch: the payload was changed after signing (the header says {recorded}, the payload is {actual})");
    }
    Ok(())
}

fn hash_all<D: Digest>(r: &mut impl Read) -> Result<String> {
    let mut hasher = D::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf).context("reading the payload")?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}
