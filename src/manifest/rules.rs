//! The one validation for bundle types and names, applied to manifests and
//! crawl results alike: both become path components of the mount.
//!
//! - A type is 1–32 of `[a-z0-9_-]`, starting with a letter or digit, and
//!   not a name the mount reserves (`bundles`, `by-uname`).
//! - A name (and a uname) is 1–200 bytes of `[A-Za-z0-9._+~-]`, not `.` or
//!   `..`, and does not end in `.tgz` (the mount shows `<name>` and
//!   `<name>.tgz` side by side: `foo.tgz` would collide with `foo`'s .tgz).
//!   No control characters, so names cannot forge lines in status or logs.

/// Names the mount uses at its root besides the types.
pub const RESERVED: &[&str] = &["bundles", "by-uname"];

pub const MAX_TYPE: usize = 32;
pub const MAX_NAME: usize = 200;

pub fn check_type(kind: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    if kind.is_empty() || kind.len() > MAX_TYPE {
        return Err(format!("type {:?} must be 1 to {MAX_TYPE} characters", shown(kind)));
    }
    if !kind.chars().all(ok_char) || !kind.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("type {:?} may only hold a-z, 0-9, '-' and '_'", shown(kind)));
    }
    if RESERVED.contains(&kind) {
        return Err(format!("type {kind:?} is reserved by the mount"));
    }
    Ok(())
}

pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '~' | '-');
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("{what} {:?} must be 1 to {MAX_NAME} bytes", shown(name)));
    }
    if !name.chars().all(ok_char) {
        return Err(format!("{what} {:?} may only hold letters, digits and . _ + ~ -", shown(name)));
    }
    if name == "." || name == ".." {
        return Err(format!("{what} {name:?} is not a usable path component"));
    }
    if name.ends_with(".tgz") {
        return Err(format!("{what} {name:?} ends in .tgz, which would collide with another bundle's .tgz"));
    }
    Ok(())
}

/// A value for messages: control characters escaped, long ones cut.
pub fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_default).collect();
    if s.chars().count() > 64 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_names_follow_one_rule() {
        assert!(check_type("debian").is_ok());
        assert!(check_type("bundles").unwrap_err().contains("reserved"));
        assert!(check_type(&"x".repeat(4096)).is_err());
        assert!(check_type("Debian").is_err());
        assert!(check_type("-x").is_err());
        assert!(check_name("name", "6.1.0-56-amd64").is_ok());
        assert!(check_name("name", "4.15.0-1001-aws~16.04").is_ok());
        assert!(check_name("name", "6.12.57+deb13-amd64").is_ok());
        assert!(check_name("name", "foo.tgz").unwrap_err().contains("collide"));
        let err = check_name("name", "evil\nERROR forged line").unwrap_err();
        assert!(!err.contains('\n'), "{err}");
        assert!(check_name("name", "..").is_err());
        assert!(check_name("name", "a/b").is_err());
    }

    #[test]
    fn names_and_types_at_and_past_their_limits() {
        assert!(check_name("name", &"a".repeat(MAX_NAME)).is_ok(), "exactly the limit");
        assert!(check_name("name", &"a".repeat(MAX_NAME + 1)).unwrap_err().contains("1 to 200 bytes"));
        assert!(check_name("name", "").unwrap_err().contains("1 to 200 bytes"), "empty");
        assert!(check_type(&"a".repeat(MAX_TYPE)).is_ok());
        assert!(check_type(&"a".repeat(MAX_TYPE + 1)).is_err());
        assert!(check_type("").is_err());
        for reserved in RESERVED {
            assert!(check_type(reserved).unwrap_err().contains("reserved"), "{reserved}");
        }
        // Multi-byte characters count in bytes, and are refused anyway.
        assert!(check_name("name", &"é".repeat(100)).is_err());
        // A uname becomes a /by-uname/ entry: the same rule.
        for uname in ["../../etc", "a/b", ".", "x\ny", "6.1.0\u{1b}[2J", "by-uname/../x"] {
            let err = check_name("uname", uname).unwrap_err();
            assert!(!err.chars().any(char::is_control), "{err:?}");
        }
    }
}
