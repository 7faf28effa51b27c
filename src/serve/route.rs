//! Request paths → what they name. Only the namespace's `.tgz` paths and
//! the index exist; every other path, and anything that could climb out
//! (`..`, an encoded `/`, empty segments, control bytes), is not found.

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/index.json`
    Index,
    /// `/bundles/bundle-<name>.tgz` (the name without prefix and suffix)
    Flat(String),
    /// `/<type>/<name>.tgz`
    Typed(String, String),
    NotFound,
}

/// The longest path looked at.
const MAX_PATH: usize = 4096;

fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).ok()?;
    let bad = s.is_empty() || s == "." || s == ".." || s.contains('/') || s.chars().any(char::is_control);
    (!bad).then_some(s)
}

/// A bundle name as the namespace could hold it: `.`/`..` never are.
fn bundle_name(n: &str) -> Option<String> {
    (!n.is_empty() && n != "." && n != "..").then(|| n.to_string())
}

pub fn route(path: &str) -> Route {
    if path.len() > MAX_PATH || !path.starts_with('/') {
        return Route::NotFound;
    }
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let segments: Option<Vec<String>> = path[1..].split('/').map(decode).collect();
    let Some(segments) = segments else { return Route::NotFound };
    match segments.as_slice() {
        [one] if one == "index.json" => Route::Index,
        [dir, file] if dir == "bundles" => file
            .strip_prefix("bundle-")
            .and_then(|f| f.strip_suffix(".tgz"))
            .and_then(bundle_name)
            .map_or(Route::NotFound, Route::Flat),
        [kind, file] => {
            file.strip_suffix(".tgz").and_then(bundle_name).map_or(Route::NotFound, |n| Route::Typed(kind.clone(), n))
        }
        _ => Route::NotFound,
    }
}

/// A `Range: bytes=…` header against a body of `size` bytes: None to serve
/// it whole (no header, a form we do not serve, several ranges), Some(Err)
/// when unsatisfiable, else the inclusive byte range.
pub fn byte_range(header: Option<&str>, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = header?.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    // Digits only: u64's parser takes "+1", which RFC 9110 does not.
    if !a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let range = match (a.is_empty(), b.is_empty()) {
        (true, true) => return None,
        (true, false) => {
            let n: u64 = b.parse().ok()?;
            if n == 0 || size == 0 {
                return Some(Err(()));
            }
            (size.saturating_sub(n), size - 1)
        }
        (false, _) => {
            let start: u64 = a.parse().ok()?;
            let end =
                if b.is_empty() { size.saturating_sub(1) } else { b.parse::<u64>().ok()?.min(size.saturating_sub(1)) };
            if start >= size || end < start {
                return Some(Err(()));
            }
            (start, end)
        }
    };
    Some(Ok(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_namespace_paths_route() {
        assert_eq!(route("/index.json"), Route::Index);
        assert_eq!(route("/bundles/bundle-6.1.0-56-amd64.tgz"), Route::Flat("6.1.0-56-amd64".into()));
        assert_eq!(route("/debian/6.1.0-56-amd64.tgz"), Route::Typed("debian".into(), "6.1.0-56-amd64".into()));
        assert_eq!(
            route("/ubuntu/4.15.0-1129-azure%7E16.04.tgz"),
            Route::Typed("ubuntu".into(), "4.15.0-1129-azure~16.04".into())
        );
        assert_eq!(route("/debian/6.1.0-56-amd64.tgz?x=1"), Route::Typed("debian".into(), "6.1.0-56-amd64".into()));
        for bad in [
            "/",
            "",
            "x",
            "/debian/6.1.0-56-amd64",
            "/debian/6.1.0-56-amd64/BUNDLE_UNAME",
            "/../etc/passwd",
            "/debian/../../etc/passwd",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/debian%2F..%2Fx.tgz",
            "/debian/%2e%2e.tgz",
            "//etc/passwd.tgz",
            "/debian//x.tgz",
            "/debian/x%00.tgz",
            "/bundles/bundle-.tgz",
            "/bundles/x.tgz",
            "/debian/%zz.tgz",
        ] {
            assert_eq!(route(bad), Route::NotFound, "{bad:?}");
        }
        assert_eq!(route(&format!("/{}", "a/".repeat(3000))), Route::NotFound);
    }

    #[test]
    fn ranges() {
        assert_eq!(byte_range(None, 100), None);
        assert_eq!(byte_range(Some("bytes=0-9"), 100), Some(Ok((0, 9))));
        assert_eq!(byte_range(Some("bytes=90-"), 100), Some(Ok((90, 99))));
        assert_eq!(byte_range(Some("bytes=-10"), 100), Some(Ok((90, 99))));
        assert_eq!(byte_range(Some("bytes=50-500"), 100), Some(Ok((50, 99))));
        assert_eq!(byte_range(Some("bytes=100-"), 100), Some(Err(())));
        assert_eq!(byte_range(Some("bytes=9-2"), 100), Some(Err(())));
        assert_eq!(byte_range(Some("bytes=0-1,5-6"), 100), None, "several ranges: the whole body");
        assert_eq!(byte_range(Some("bytes=+1-+2"), 100), None, "not a byte range: the whole body");
        assert_eq!(byte_range(Some("bytes=1-+2"), 100), None);
        assert_eq!(byte_range(Some("items=0-1"), 100), None);
    }
}
