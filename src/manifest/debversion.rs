//! Debian version ordering (deb-version(7)): epoch, then upstream version and
//! revision compared by alternating non-digit and digit runs, `~` sorting
//! before everything, letters before other characters.

use std::cmp::Ordering;

fn split(v: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) if e.chars().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

fn char_order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        // Non-digit run, character by character.
        loop {
            let ca = a.first().copied().filter(|c| !c.is_ascii_digit());
            let cb = b.first().copied().filter(|c| !c.is_ascii_digit());
            if ca.is_none() && cb.is_none() {
                break;
            }
            match char_order(ca).cmp(&char_order(cb)) {
                Ordering::Equal => {
                    a = &a[ca.is_some() as usize..];
                    b = &b[cb.is_some() as usize..];
                }
                other => return other,
            }
        }
        // Digit run, numerically.
        let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
        let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let na = std::str::from_utf8(&a[..da]).ok().and_then(|s| s.parse::<u128>().ok()).unwrap_or(0);
        let nb = std::str::from_utf8(&b[..db]).ok().and_then(|s| s.parse::<u128>().ok()).unwrap_or(0);
        match na.cmp(&nb) {
            Ordering::Equal => {
                a = &a[da..];
                b = &b[db..];
            }
            other => return other,
        }
    }
    Ordering::Equal
}

/// Compare two Debian versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb).then_with(|| compare_part(ua, ub)).then_with(|| compare_part(ra, rb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_like_dpkg() {
        assert_eq!(compare("6.1.192-2", "6.1.176-1"), Ordering::Greater);
        assert_eq!(compare("1.0~rc1-1", "1.0-1"), Ordering::Less);
        assert_eq!(compare("1:0.9", "2.0"), Ordering::Greater);
        assert_eq!(compare("4.4-4~bpo8+1", "4.4-4"), Ordering::Less);
        assert_eq!(compare("5.4.0-156.173", "5.4.0-156.173"), Ordering::Equal);
        assert_eq!(compare("1.0a", "1.0+"), Ordering::Less);
        assert_eq!(compare("6.12.107-1", "6.12.57-1"), Ordering::Greater);
    }
}
