//! OpenPGP signature checks with `gpgv`, as apt and rpm do: a clearsigned
//! InRelease, or a detached signature (Release.gpg, repomd.xml.asc, an RPM
//! header's signature), against the source's keyring. gpgv runs in a
//! private, temporary homedir with the keyring copied into it (so what it
//! reads cannot be swapped underneath); ASCII-armored keys are de-armored.

use super::keys::Keyring;
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A private working directory: a new random name made exclusively with
/// mode 0700 (a local user cannot have prepared it), files in it created
/// exclusively (never through a planted link), removed on drop.
struct Scratch(crate::scratch::Scratch);

impl Scratch {
    fn new() -> Result<Scratch> {
        crate::scratch::system("gpgv.").map(Scratch)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn write(&self, name: &str, data: &[u8]) -> Result<PathBuf> {
        let path = self.path().join(name);
        let mut file =
            crate::files::create_new(&path, 0o600).with_context(|| format!("creating {}", path.display()))?;
        file.write_all(data).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

/// Binary OpenPGP key material from armored text: every block, in order
/// (a key file may hold several keys, as Oracle's does).
pub fn dearmor(text: &str) -> Result<Vec<u8>> {
    let engine = &base64::engine::general_purpose::STANDARD;
    let (mut out, mut b64, mut in_body, mut blocks) = (Vec::new(), String::new(), false, 0);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN PGP") {
            (in_body, b64) = (true, String::new());
        } else if line.starts_with("-----END PGP") && in_body {
            out.extend(engine.decode(b64.as_bytes()).context("invalid base64 in an armored key block")?);
            (in_body, blocks) = (false, blocks + 1);
        } else if in_body && !line.contains(':') && !line.starts_with('=') {
            b64.push_str(line); // armor headers and the CRC line are skipped
        }
    }
    if blocks == 0 || out.is_empty() {
        bail!("no armored key block");
    }
    Ok(out)
}

/// The largest key file read (Debian's keyring is 80 KB).
const MAX_KEYRING: u64 = 4 << 20;

/// The keyring as gpgv wants it (binary), copied into `scratch`.
fn keyring_file(keyring: &Keyring, scratch: &Scratch) -> Result<PathBuf> {
    let bytes = keyring.bytes(MAX_KEYRING)?;
    let binary = if bytes.starts_with(b"-----BEGIN PGP") {
        dearmor(&String::from_utf8_lossy(&bytes)).with_context(|| format!("keyring {keyring}"))?
    } else {
        bytes
    };
    scratch.write("keyring.gpg", &binary)
}

/// gpgv from the system's own directories, never through `$PATH` (a
/// directory early in root's PATH that someone else can write would run
/// their program as the signature check).
fn gpgv_path() -> Result<&'static Path> {
    ["/usr/bin/gpgv", "/bin/gpgv", "/usr/local/bin/gpgv"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("gpgv is not installed in /usr/bin (install the gpgv package)"))
}

/// Whether a good signature by a key that has since expired counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiredKey {
    /// apt's rule for Release files (EXPKEYSIG is an error).
    Refuse,
    /// rpm's rule for packages: a package signed years ago stays valid.
    Accept,
}

fn run_gpgv(
    scratch: &Scratch,
    keyring: &Keyring,
    args: &[&Path],
    stdin: Option<&mut dyn Read>,
    expired: ExpiredKey,
) -> Result<()> {
    let keyring_path = keyring_file(keyring, scratch)?;
    let home = scratch.path().join("home");
    std::fs::create_dir(&home).with_context(|| format!("creating {}", home.display()))?;
    let mut child = Command::new(gpgv_path()?)
        .arg("--homedir")
        .arg(&home)
        .arg("--keyring")
        .arg(&keyring_path)
        .arg("--status-fd")
        .arg("1")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow!("running gpgv ({e}); install the gpgv package"))?;
    // gpgv's status and messages are small; reading them after the input
    // is written cannot deadlock, but a gpgv that exits early (bad input)
    // closes its end: a broken pipe then is its verdict, not ours.
    let mut fed = Ok(());
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        fed = std::io::copy(input, &mut pipe).map(drop);
        drop(pipe);
    }
    let out = child.wait_with_output().context("waiting for gpgv")?;
    if let Err(e) = fed {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(anyhow!("feeding gpgv: {e}"));
        }
    }
    let status = String::from_utf8_lossy(&out.stdout);
    let has = |tag: &str| status.lines().any(|l| l.starts_with(&format!("[GNUPG:] {tag} ")));
    // apt's rule: one good signature by a key of the keyring is enough;
    // others by keys we lack (ERRSIG/NO_PUBKEY, which make gpgv exit 2:
    // xenial's Release is also signed by the retired 2004 DSA key) are
    // ignored; any bad or revoked signature refuses the whole.
    let good = has("GOODSIG") || (expired == ExpiredKey::Accept && has("EXPKEYSIG"));
    let refused_expiry = expired == ExpiredKey::Refuse && has("EXPKEYSIG") && !has("GOODSIG");
    let only_unknown_keys = status
        .lines()
        .filter_map(|l| l.strip_prefix("[GNUPG:] "))
        .all(|l| !["BADSIG", "REVKEYSIG", "FAILURE", "BADARMOR", "NODATA"].iter().any(|t| l.starts_with(t)));
    let exited_ok = out.status.success() || (out.status.code() == Some(2) && only_unknown_keys);
    if exited_ok && good && has("VALIDSIG") && !has("REVKEYSIG") && !has("BADSIG") && !refused_expiry {
        return Ok(());
    }
    let why = if has("BADSIG") {
        "bad signature (the signed data was changed)".to_string()
    } else if has("REVKEYSIG") {
        "signed by a revoked key".to_string()
    } else if refused_expiry {
        "signed by an expired key".to_string()
    } else if status.contains("NO_PUBKEY") {
        "signed by a key that is not in the keyring".to_string()
    } else if status.contains("NODATA") {
        "no signature found".to_string()
    } else {
        String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("verification failed").to_string()
    };
    bail!("signature check failed: {why} (keyring {keyring})")
}

/// Verify a clearsigned document; returns the signed text.
pub fn verify_clearsigned(keyring: &Keyring, signed: &[u8]) -> Result<Vec<u8>> {
    let scratch = Scratch::new()?;
    let input = scratch.write("InRelease", signed)?;
    let output = scratch.path().join("plain");
    run_gpgv(&scratch, keyring, &[Path::new("--output"), &output, &input], None, ExpiredKey::Refuse)?;
    std::fs::read(&output).context("reading gpgv's output")
}

/// Verify a detached signature over `data`.
pub fn verify_detached(keyring: &Keyring, data: &[u8], signature: &[u8], expired: ExpiredKey) -> Result<()> {
    verify_detached_stream(keyring, &mut std::io::Cursor::new(data), signature, expired)
}

/// Verify a detached signature over data read from `data` (fed to gpgv's
/// stdin: an RPM's header and payload are not copied).
pub fn verify_detached_stream(
    keyring: &Keyring,
    data: &mut dyn Read,
    signature: &[u8],
    expired: ExpiredKey,
) -> Result<()> {
    let scratch = Scratch::new()?;
    let sig_path = scratch.write("data.sig", signature)?;
    run_gpgv(&scratch, keyring, &[&sig_path, Path::new("-")], Some(data), expired)
}

/// The text of a clearsigned document without checking it (insecure sources).
pub fn strip_clearsign(signed: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(signed);
    if !text.starts_with("-----BEGIN PGP SIGNED MESSAGE-----") {
        return signed.to_vec();
    }
    let body = text.split_once("\n\n").map_or("", |(_, b)| b);
    let body = body.split("\n-----BEGIN PGP SIGNATURE-----").next().unwrap_or("");
    // Dash-escaped lines ("- -----…") lose their escape.
    let mut out = String::with_capacity(body.len());
    for line in body.lines() {
        out.push_str(line.strip_prefix("- ").unwrap_or(line));
        out.push('\n');
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dearmor_and_strip() {
        let armored =
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: x\n\naGVsbG8=\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n";
        assert_eq!(dearmor(armored).unwrap(), b"hello");
        let two = format!("{armored}{}", armored.replace("aGVsbG8=", "IHdvcmxk"));
        assert_eq!(dearmor(&two).unwrap(), b"hello world", "every block of a multi-key file");
        assert!(dearmor("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\naGVsbG8=\n").is_err(), "unterminated");
        let signed = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: X\n- -----dashed\n-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\n";
        assert_eq!(strip_clearsign(signed), b"Origin: X\n-----dashed\n");
    }
}
