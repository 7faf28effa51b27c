//! OpenPGP signature checks with `gpgv`, as apt does: a clearsigned
//! InRelease, or a detached signature (Release.gpg, repomd.xml.asc), against
//! the source's keyring. Nothing outside a private, temporary homedir is read
//! or written. ASCII-armored keyrings are de-armored first.

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A private working directory: a new random name made exclusively with
/// mode 0700 (a local user cannot have prepared it), files in it created
/// exclusively (never through a planted link), removed on drop.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new() -> Result<Scratch> {
        crate::files::private_temp_dir(&std::env::temp_dir(), "kpackfs-gpgv.").map(Scratch)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn write(&self, name: &str, data: &[u8]) -> Result<PathBuf> {
        use std::io::Write;
        let path = self.path().join(name);
        let mut file =
            crate::files::create_new(&path, 0o600).with_context(|| format!("creating {}", path.display()))?;
        file.write_all(data).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

/// Binary OpenPGP key material from an armored block.
pub fn dearmor(text: &str) -> Result<Vec<u8>> {
    let mut in_body = false;
    let mut b64 = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN PGP") {
            in_body = true;
            continue;
        }
        if line.starts_with("-----END PGP") {
            break;
        }
        if !in_body || line.contains(':') || line.starts_with('=') {
            continue; // armor headers and the CRC line
        }
        b64.push_str(line);
    }
    if b64.is_empty() {
        bail!("no armored key block");
    }
    base64::engine::general_purpose::STANDARD.decode(b64.as_bytes()).context("invalid base64 in the armored key")
}

/// The keyring as gpgv wants it (binary), written into `scratch` if it had to be converted.
fn keyring_file(keyring: &Path, scratch: &Scratch) -> Result<PathBuf> {
    let bytes = std::fs::read(keyring).with_context(|| format!("reading keyring {}", keyring.display()))?;
    if bytes.starts_with(b"-----BEGIN PGP") {
        let text = String::from_utf8_lossy(&bytes);
        return scratch
            .write("keyring.gpg", &dearmor(&text).with_context(|| format!("keyring {}", keyring.display()))?);
    }
    Ok(keyring.canonicalize().unwrap_or_else(|_| keyring.to_path_buf()))
}

fn run_gpgv(scratch: &Scratch, keyring: &Path, args: &[&Path]) -> Result<()> {
    let keyring = keyring_file(keyring, scratch)?;
    let home = scratch.path().join("home");
    std::fs::create_dir(&home).with_context(|| format!("creating {}", home.display()))?;
    let out = Command::new("gpgv")
        .arg("--homedir")
        .arg(&home)
        .arg("--keyring")
        .arg(&keyring)
        .arg("--status-fd")
        .arg("1")
        .args(args)
        .output()
        .map_err(|e| anyhow!("running gpgv ({e}); install the gpgv package"))?;
    let status = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && status.lines().any(|l| l.starts_with("[GNUPG:] VALIDSIG")) {
        return Ok(());
    }
    let why = if status.contains("NO_PUBKEY") {
        "signed by a key that is not in the keyring".to_string()
    } else if status.contains("BADSIG") {
        "bad signature (the signed data was changed)".to_string()
    } else if status.contains("NODATA") {
        "no signature found".to_string()
    } else {
        String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("verification failed").to_string()
    };
    bail!("signature check failed: {why} (keyring {})", keyring.display())
}

/// Verify a clearsigned document; returns the signed text.
pub fn verify_clearsigned(keyring: &Path, signed: &[u8]) -> Result<Vec<u8>> {
    let scratch = Scratch::new()?;
    let input = scratch.write("InRelease", signed)?;
    let output = scratch.path().join("plain");
    run_gpgv(&scratch, keyring, &[Path::new("--output"), &output, &input])?;
    std::fs::read(&output).context("reading gpgv's output")
}

/// Verify a detached signature over `data`.
pub fn verify_detached(keyring: &Path, data: &[u8], signature: &[u8]) -> Result<()> {
    let scratch = Scratch::new()?;
    let data_path = scratch.write("data", data)?;
    let sig_path = scratch.write("data.sig", signature)?;
    run_gpgv(&scratch, keyring, &[&sig_path, &data_path])
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
        let signed = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: X\n- -----dashed\n-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\n";
        assert_eq!(strip_clearsign(signed), b"Origin: X\n-----dashed\n");
    }
}
