//! Archive entry paths are hostile: normalise them or refuse them.

use anyhow::{bail, Result};

/// The longest entry path accepted, as the kernel's PATH_MAX.
pub const MAX_PATH_BYTES: usize = 4096;
/// The deepest entry accepted. Real header trees are about 12 deep; depth
/// is input, and work and memory per entry grow with it.
pub const MAX_DEPTH: usize = 256;

/// Normalise an archive path to a relative path with no `.` or empty
/// components. `Ok(None)` is the archive root (`.` or `./`).
///
/// Refused: absolute paths, any `..` component, NUL bytes, non-UTF-8 names,
/// more than [`MAX_PATH_BYTES`] bytes or [`MAX_DEPTH`] components.
pub fn normalize_entry_path(raw: &[u8]) -> Result<Option<String>> {
    if raw.len() > MAX_PATH_BYTES {
        bail!(
            "entry {:?}… has a path of {} bytes, over the {MAX_PATH_BYTES}-byte limit",
            String::from_utf8_lossy(&raw[..64]),
            raw.len()
        );
    }
    let Ok(text) = std::str::from_utf8(raw) else {
        bail!("entry {:?} has a non-UTF-8 path", String::from_utf8_lossy(raw));
    };
    if text.contains('\0') {
        bail!("entry {text:?} has a NUL byte in its path");
    }
    if text.starts_with('/') {
        bail!("entry {text} has an absolute path");
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => bail!("entry {text} escapes the target directory (path traversal)"),
            p => parts.push(p),
        }
    }
    if parts.len() > MAX_DEPTH {
        bail!(
            "entry {}… is {} directories deep, over the limit of {MAX_DEPTH}",
            &text[..64.min(text.len())],
            parts.len()
        );
    }
    if parts.is_empty() {
        return Ok(None);
    }
    Ok(Some(parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_refuses() {
        assert_eq!(normalize_entry_path(b"./usr/src/").unwrap().as_deref(), Some("usr/src"));
        assert_eq!(normalize_entry_path(b"./").unwrap(), None);
        assert_eq!(normalize_entry_path(b"a//b/./c").unwrap().as_deref(), Some("a/b/c"));
        assert!(normalize_entry_path(b"/etc/passwd").is_err());
        assert!(normalize_entry_path(b"./a/../../etc").is_err());
        assert!(normalize_entry_path(b"a/..").is_err());
        assert!(normalize_entry_path(b"\xff\xfe").is_err());
        let deep = "d/".repeat(MAX_DEPTH) + "f";
        assert!(normalize_entry_path(deep.as_bytes()).unwrap_err().to_string().contains("directories deep"));
        let long = "x".repeat(MAX_PATH_BYTES + 1);
        assert!(normalize_entry_path(long.as_bytes()).unwrap_err().to_string().contains("-byte limit"));
    }
}
