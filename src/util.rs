//! Small helpers shared by several modules.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `data` to `path` atomically: a temporary file in the same directory,
/// fsync, then rename. Readers see the old file or the new one.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = temp_path_beside(path);
    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(data).with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The directory holding `path` ("." for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A unique temporary name next to `path` (same filesystem, so rename is atomic).
pub fn temp_path_beside(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    parent_dir(path).join(format!(".{name}.tmp.{}.{n}", std::process::id()))
}

/// Bytes as a short human string (binary units).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Parse a size such as `10G`, `512MiB`, `1.5GB` or `1048576`. Units are binary.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("invalid size unit {other:?} in {s:?}")),
    };
    Ok((value * mult as f64) as u64)
}

/// Total and available (to unprivileged users) bytes of the filesystem
/// holding `path`.
pub fn disk_space(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs into a zeroed struct from a valid C string.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return None;
        }
        st
    };
    let unit = st.f_frsize as u64;
    Some((st.f_blocks as u64 * unit, st.f_bavail as u64 * unit))
}

/// A free-space floor: a size (`2G`) or a share of the filesystem (`5%`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FreeFloor {
    Bytes(u64),
    Percent(f64),
}

impl FreeFloor {
    pub fn parse(s: &str) -> Result<FreeFloor, String> {
        match s.trim().strip_suffix('%') {
            Some(pct) => {
                let v: f64 = pct.trim().parse().map_err(|_| format!("invalid percentage {s:?}"))?;
                if !(0.0..=90.0).contains(&v) {
                    return Err(format!("{s:?}: the floor must be between 0% and 90%"));
                }
                Ok(FreeFloor::Percent(v))
            }
            None => parse_size(s).map(FreeFloor::Bytes),
        }
    }

    /// In bytes, for a filesystem of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            FreeFloor::Bytes(b) => b,
            FreeFloor::Percent(p) => (total as f64 * p / 100.0) as u64,
        }
    }
}

/// Parse a duration such as `30s`, `15m`, `6h`, `1d` or `250ms`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        other => return Err(format!("invalid duration unit {other:?} in {s:?}")),
    };
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Hex sha256 of a byte slice.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_floors() {
        assert_eq!(FreeFloor::parse("5%"), Ok(FreeFloor::Percent(5.0)));
        assert_eq!(FreeFloor::parse("2G"), Ok(FreeFloor::Bytes(2 << 30)));
        assert_eq!(FreeFloor::parse("5%").unwrap().bytes(1000), 50);
        assert_eq!(FreeFloor::Bytes(7).bytes(1000), 7);
        assert!(FreeFloor::parse("95%").is_err());
        assert!(FreeFloor::parse("x%").is_err());
        let (total, avail) = disk_space(std::path::Path::new("/")).expect("statvfs /");
        assert!(total > 0 && avail <= total);
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("12parsecs").is_err());
        assert_eq!(parse_duration("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
