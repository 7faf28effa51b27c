//! Archive entry paths are hostile: normalise them or refuse them.

use anyhow::{bail, Result};

/// Normalise an archive path to a relative path with no `.` or empty
/// components. `Ok(None)` is the archive root (`.` or `./`).
///
/// Refused: absolute paths, any `..` component, NUL bytes, non-UTF-8 names.
pub fn normalize_entry_path(raw: &[u8]) -> Result<Option<String>> {
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
    }
}
