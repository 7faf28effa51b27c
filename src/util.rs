//! Small helpers shared by several modules: sizes, durations, disk space.

pub use crate::files::write_atomic;

/// Text from input (an archive's entry names, a server's answer) made safe
/// to print on one line: control characters (newlines, terminal escapes)
/// are escaped, so that nothing can forge another status or log line or
/// drive the reader's terminal. Everything else is kept.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .flat_map(|c| -> Box<dyn Iterator<Item = char>> {
                if c.is_control() {
                    Box::new(c.escape_default())
                } else {
                    Box::new(std::iter::once(c))
                }
            })
            .collect(),
    )
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

/// A duration for people, to the second: `5h 55m 56s`, `2s`, `0s`.
pub fn human_duration(d: std::time::Duration) -> String {
    let mut left = d.as_secs();
    let mut parts = Vec::new();
    for (unit, secs) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if left >= secs {
            parts.push(format!("{}{unit}", left / secs));
            left %= secs;
        }
    }
    if left > 0 || parts.is_empty() {
        parts.push(format!("{left}s"));
    }
    parts.join(" ")
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

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch of an RFC 2822 date as Release files carry them
/// (`Sat, 28 Nov 2026 08:12:34 UTC`, or a `+hhmm` offset).
pub fn parse_rfc2822(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s.split_once(',').map_or(s, |(_, rest)| rest.trim());
    let mut parts = s.split_whitespace();
    let day: i64 = parts.next()?.parse().ok()?;
    let month = MONTHS.iter().position(|m| parts.clone().next().is_some_and(|p| p.eq_ignore_ascii_case(m)))? as i64 + 1;
    parts.next();
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|x| x.parse::<i64>());
    let (h, mi, sec) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next().unwrap_or(Ok(0)).ok()?);
    let offset = match parts.next().unwrap_or("UTC") {
        "UTC" | "GMT" | "Z" | "UT" => 0,
        z if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let v: i64 = z[1..].parse().ok()?;
            let secs = (v / 100) * 3600 + (v % 100) * 60;
            if z.starts_with('-') {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    let in_range = (1970..=9999).contains(&year) && (1..=31).contains(&day);
    if !in_range || !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..=60).contains(&sec) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// An epoch time as `Sat, 28 Nov 2026 08:12:34 UTC`.
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} UTC",
        WEEKDAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Hex sha256 of a byte slice.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

/// Hex sha256 and length of a file.
pub fn hash_file(path: &std::path::Path) -> anyhow::Result<(String, u64)> {
    let (sha256, _, len) = hash_file_with(path, false)?;
    Ok((sha256, len))
}

/// Hex sha256, hex sha512 when asked for, and length of a file, in one pass.
pub fn hash_file_with(path: &std::path::Path, sha512: bool) -> anyhow::Result<(String, Option<String>, u64)> {
    use anyhow::Context;
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut hasher512 = sha512.then(sha2::Sha512::new);
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if let Some(h) = &mut hasher512 {
            h.update(&buf[..n]);
        }
        len += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), hasher512.map(|h| hex::encode(h.finalize())), len))
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_people_write_them() {
        use std::time::Duration;
        assert_eq!(super::human_duration(Duration::from_secs_f64(21356.196771657)), "5h 55m 56s");
        assert_eq!(super::human_duration(Duration::from_secs(6 * 3600)), "6h");
        assert_eq!(super::human_duration(Duration::from_millis(300)), "0s");
        assert_eq!(super::human_duration(Duration::from_secs(90_061)), "1d 1h 1m 1s");
    }

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
    fn release_dates() {
        assert_eq!(parse_rfc2822("Sat, 28 Nov 2026 08:12:34 UTC"), Some(1_795_853_554));
        assert_eq!(format_utc(1_795_853_554), "Sat, 28 Nov 2026 08:12:34 UTC");
        assert_eq!(parse_rfc2822("28 Nov 2026 09:12:34 +0100"), Some(1_795_853_554));
        assert_eq!(parse_rfc2822("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert!(parse_rfc2822("yesterday").is_none());
        // Found by the fuzzer: a year that overflowed the day arithmetic.
        assert!(parse_rfc2822("Sat, 28 Nov 202600000000000000 08:12:34 UTC").is_none());
        for t in [0, 951_782_400, 1_795_853_554, 4_102_444_800] {
            assert_eq!(parse_rfc2822(&format_utc(t)), Some(t));
        }
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
