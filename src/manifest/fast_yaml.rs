//! The manifest layout that kpackfs and kernel-packer write, read line by
//! line: a block mapping of id → block mapping of plain scalars and a
//! `packages` sequence of bare names or small package mappings.
//!
//! serde-saphyr reads a million entries (765 MB) in 20–37 s on two cores
//! (docs/performance.md); this reader takes a few seconds because it accepts
//! only lines whose meaning is beyond doubt: printable ASCII, the expected
//! fields at consistent indentation, and plain scalars that YAML reads as
//! their own text. At the first line it is not sure of, it declines: it
//! hands back the byte offset of the entry that line is in (always the
//! start of a top-level key line, or 0), and the caller lets serde-saphyr
//! read from there. Every entry it does emit is one serde-saphyr would have
//! produced from the same bytes (tests: fast_yaml::tests, the differential
//! test over generated manifests).

use super::{Package, RawPackage, RawSpec};
use anyhow::Result;
use std::io::BufRead;

/// The longest line read here; a longer one is left to the full parser.
const MAX_LINE: u64 = 64 << 10;
/// YAML caps implicit keys at 1024 characters; ids are 64.
const MAX_KEY: usize = 256;

/// How a read ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Every entry was read.
    Done,
    /// Not sure of line `at` (1-based): the full parser reads from byte
    /// `from`, line `from_line` (a top-level key line, or the start) on.
    Declined { from: u64, from_line: usize, at: usize },
}

/// Bytes a plain scalar may hold here. Indicators that mean something in
/// some position (`#`, `'`, `"`, `,`, brackets, `|`, `>`, `` ` ``, `\`) and
/// all whitespace are out, so the text is the value.
const fn safe_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric();
        c += 1;
    }
    let extra = b"._-/:~+%=@?&;!$*()^";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}
static SAFE: [bool; 256] = safe_table();

/// Whether `s` is a plain scalar YAML reads as exactly this text, and not
/// as null, a mapping key or an indicator.
fn plain(s: &[u8]) -> Option<&str> {
    let first = *s.first()?;
    if !(first.is_ascii_alphanumeric() || matches!(first, b'/' | b'.' | b'_')) {
        return None;
    }
    if !s.iter().all(|&b| SAFE[b as usize]) || s.ends_with(b":") || matches!(s, b"null" | b"Null" | b"NULL") {
        return None;
    }
    std::str::from_utf8(s).ok()
}

/// Whether YAML could read `s` as a number, a boolean or null when no type
/// is asked for: serde buffers a package (an untagged enum) that way, so
/// `1.0` there is a float, not text. A superset of serde-saphyr's test.
fn maybe_typed(s: &str) -> bool {
    let bare = s.trim_start_matches(['+', '-']);
    let no_dot = bare.strip_prefix('.').unwrap_or(bare);
    ["y", "yes", "n", "no", "true", "false", "on", "off", "inf", "infinity", "nan"]
        .iter()
        .any(|w| no_dot.eq_ignore_ascii_case(w))
        || s.replace('_', "").parse::<f64>().is_ok()
        || radix_int(bare)
        || s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'_' | b':' | b'.' | b'+' | b'-'))
}

/// `0x1f`, `0o17`, `0b101` (underscores allowed).
fn radix_int(s: &str) -> bool {
    let radix = match s.get(..2) {
        Some("0x" | "0X") => 16,
        Some("0o" | "0O") => 8,
        Some("0b" | "0B") => 2,
        _ => return false,
    };
    let digits = &s[2..];
    !digits.is_empty() && digits.chars().all(|c| c == '_' || c.is_digit(radix))
}

/// `"…"` or `'…'` around safe bytes only (no escapes, no doubled quotes,
/// no spaces): a quoted scalar is always text, whatever it looks like.
fn quoted(s: &[u8]) -> Option<&str> {
    let inner = s.strip_prefix(b"\"").and_then(|r| r.strip_suffix(b"\""));
    let inner = inner.or_else(|| s.strip_prefix(b"'").and_then(|r| r.strip_suffix(b"'")))?;
    if !inner.iter().all(|&b| SAFE[b as usize]) {
        return None;
    }
    std::str::from_utf8(inner).ok()
}

/// A field's value where a string is asked for: plain or quoted.
fn string(s: &[u8]) -> Option<&str> {
    plain(s).or_else(|| quoted(s))
}

/// A value that stays text even where no type is asked for (inside a
/// package): quoted, or plain and not like a number, a boolean or null.
fn text(s: &[u8]) -> Option<&str> {
    plain(s).filter(|v| !maybe_typed(v)).or_else(|| quoted(s))
}

/// A package size: decimal digits without a leading zero, in range.
fn size(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) || (s.len() > 1 && s[0] == b'0') {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// `field: value` (Some value) or `field:` (None); None if neither.
fn field(c: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    match c.windows(2).position(|w| w == b": ") {
        Some(at) => Some((&c[..at], Some(&c[at + 2..]))),
        None => c.strip_suffix(b":").map(|name| (name, None)),
    }
}

#[derive(Default)]
struct PkgState {
    url: Option<String>,
    also: Option<Vec<String>>,
    sha256: Option<String>,
    sha512: Option<String>,
    size: Option<u64>,
    /// Inside `also:`; its items' dash column once the first is seen.
    in_also: bool,
    also_indent: Option<usize>,
}

impl PkgState {
    fn finish(self) -> Option<RawPackage> {
        let also = match self.also {
            Some(list) if list.is_empty() => return None, // `also:` with no items is null
            Some(list) => list,
            None => Vec::new(),
        };
        Some(RawPackage::Full(Package {
            url: self.url?,
            also,
            sha256: self.sha256,
            sha512: self.sha512,
            size: self.size,
        }))
    }

    /// One `name: value` line of a package mapping.
    fn set(&mut self, name: &[u8], value: Option<&[u8]>) -> Option<()> {
        self.in_also = false;
        let text = |v: Option<&[u8]>| text(v?).map(str::to_string);
        let slot = match name {
            b"url" => &mut self.url,
            b"sha256" => &mut self.sha256,
            b"sha512" => &mut self.sha512,
            b"size" if self.size.is_none() => {
                self.size = Some(size(value?)?);
                return Some(());
            }
            b"also" if self.also.is_none() && value.is_none() => {
                self.also = Some(Vec::new());
                self.in_also = true;
                return Some(());
            }
            _ => return None,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(text(value)?);
        Some(())
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Mode {
    Fields,
    /// After `packages:`, before its first item.
    ExpectItems,
    Items,
}

/// The entry being read: emitted once the next key line (or the end) shows
/// it is complete.
struct Entry {
    key: String,
    start: u64,
    start_line: usize,
    kind: Option<String>,
    name: Option<String>,
    uname: Option<String>,
    signed_by: Option<String>,
    image: Option<String>,
    packages: Option<Vec<RawPackage>>,
    field_indent: Option<usize>,
    item_indent: Option<usize>,
    mode: Mode,
    package: Option<PkgState>,
}

impl Entry {
    fn new(key: String, start: u64, start_line: usize) -> Entry {
        Entry {
            key,
            start,
            start_line,
            kind: None,
            name: None,
            uname: None,
            signed_by: None,
            image: None,
            packages: None,
            field_indent: None,
            item_indent: None,
            mode: Mode::Fields,
            package: None,
        }
    }

    fn end_package(&mut self) -> Option<()> {
        if let Some(p) = self.package.take() {
            self.packages.as_mut()?.push(p.finish()?);
        }
        Some(())
    }

    /// One line inside the entry (indent > 0); None: not sure of it.
    fn line(&mut self, indent: usize, c: &[u8]) -> Option<()> {
        let fields_at = *self.field_indent.get_or_insert(indent);
        let item = c.strip_prefix(b"- ");
        if let (Some(rest), Mode::ExpectItems | Mode::Items) = (item, self.mode) {
            let at = *self.item_indent.get_or_insert(indent);
            if indent == at && at >= fields_at {
                return self.item(rest);
            }
        }
        if let (Some(p), Some(at)) = (self.package.as_mut(), self.item_indent) {
            if p.in_also {
                if let Some(rest) = item {
                    let also_at = *p.also_indent.get_or_insert(indent);
                    if indent == also_at && also_at >= at + 2 {
                        p.also.as_mut()?.push(text(rest)?.to_string());
                        return Some(());
                    }
                    return None;
                }
            }
            if indent == at + 2 {
                let (name, value) = field(c)?;
                return p.set(name, value);
            }
        }
        if indent != fields_at || item.is_some() {
            return None;
        }
        self.end_package()?;
        self.mode = Mode::Fields;
        let (name, value) = field(c)?;
        if name == b"packages" {
            if self.packages.is_some() || value.is_some() {
                return None;
            }
            self.packages = Some(Vec::new());
            self.mode = Mode::ExpectItems;
            return Some(());
        }
        let slot = match name {
            b"type" => &mut self.kind,
            b"name" => &mut self.name,
            b"uname" => &mut self.uname,
            b"signed_by" => &mut self.signed_by,
            b"image" => &mut self.image,
            _ => return None,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(string(value?)?.to_string());
        Some(())
    }

    /// A `- …` item of `packages`.
    fn item(&mut self, rest: &[u8]) -> Option<()> {
        self.end_package()?;
        self.mode = Mode::Items;
        match field(rest) {
            Some((name, value)) => {
                let mut p = PkgState::default();
                p.set(name, value)?;
                self.package = Some(p);
            }
            None => self.packages.as_mut()?.push(RawPackage::Name(text(rest)?.to_string())),
        }
        Some(())
    }

    fn finish(mut self) -> Option<(String, RawSpec)> {
        self.end_package()?;
        let packages = self.packages.filter(|p| !p.is_empty())?;
        Some((
            self.key,
            RawSpec {
                kind: self.kind?,
                name: self.name,
                uname: self.uname,
                signed_by: self.signed_by,
                packages,
                _image: self.image,
            },
        ))
    }
}

/// Read entries from `r`, calling `each` with every one, until the end or
/// the first line this reader is not sure of.
pub(super) fn read_entries<R: BufRead>(
    mut r: R,
    each: &mut dyn FnMut(String, RawSpec) -> Result<()>,
) -> Result<Outcome> {
    let mut buf = Vec::with_capacity(256);
    let mut pos = 0u64;
    let mut line_no = 0usize;
    let mut entry: Option<Entry> = None;
    loop {
        buf.clear();
        let n = std::io::Read::take(&mut r, MAX_LINE).read_until(b'\n', &mut buf)?;
        let declined = |entry: &Option<Entry>, at| match entry {
            Some(e) => Outcome::Declined { from: e.start, from_line: e.start_line, at },
            None => Outcome::Declined { from: 0, from_line: 1, at },
        };
        if n == 0 {
            if let Some(e) = entry.take() {
                let (from, from_line) = (e.start, e.start_line);
                match e.finish() {
                    Some((key, spec)) => each(key, spec)?,
                    None => return Ok(Outcome::Declined { from, from_line, at: line_no }),
                }
            }
            return Ok(Outcome::Done);
        }
        line_no += 1;
        let start = pos;
        pos += n as u64;
        let Some(line) = buf.strip_suffix(b"\n").or((n < MAX_LINE as usize).then_some(&buf[..])) else {
            return Ok(declined(&entry, line_no));
        };
        if !line.iter().all(|b| (0x20..0x7f).contains(b)) {
            return Ok(declined(&entry, line_no));
        }
        let indent = line.iter().take_while(|&&b| b == b' ').count();
        let content = &line[indent..];
        if content.is_empty() || content[0] == b'#' {
            continue;
        }
        if indent > 0 {
            let Some(e) = entry.as_mut() else { return Ok(declined(&entry, line_no)) };
            if e.line(indent, content).is_none() {
                return Ok(declined(&entry, line_no));
            }
            continue;
        }
        // A top-level key: the entry before it is complete.
        let key = content.strip_suffix(b":").filter(|k| k.len() <= MAX_KEY).and_then(plain);
        let Some(key) = key else { return Ok(declined(&entry, line_no)) };
        if let Some(e) = entry.take() {
            let (from, from_line) = (e.start, e.start_line);
            match e.finish() {
                Some((key, spec)) => each(key, spec)?,
                None => return Ok(Outcome::Declined { from, from_line, at: line_no }),
            }
        }
        entry = Some(Entry::new(key.to_string(), start, line_no));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Vec<(String, Option<String>, usize)>, Outcome) {
        let mut got = Vec::new();
        let outcome = read_entries(text.as_bytes(), &mut |k, s| {
            got.push((k, s.name, s.packages.len()));
            Ok(())
        })
        .unwrap();
        (got, outcome)
    }

    #[test]
    fn reads_both_shapes_and_both_sequence_indents() {
        let text = "# c\nk1:\n  type: debian\n  name: 6.1.0-1-amd64\n  packages:\n  - url: http://h/a.deb\n    also:\n    - http://m/a.deb\n    sha256: ab\n    size: 10\n  - url: http://h/b.deb\nk2:\n    type: ubuntu\n    packages:\n      - http---h-c.deb\n      - http---h-d.deb\n    image: repackage-bookworm\n";
        let (got, outcome) = read(text);
        assert_eq!(outcome, Outcome::Done);
        assert_eq!(got, vec![("k1".into(), Some("6.1.0-1-amd64".into()), 2), ("k2".into(), None, 2)]);
    }

    #[test]
    fn declines_what_it_is_not_sure_of_at_the_entry_it_is_in() {
        let ok = "k1:\n  type: t\n  packages:\n  - a\n";
        for bad in [
            "  name: 'two words'\n",
            "  name: null\n",
            "  name:\n",
            "  name: a # comment\n",
            "  name: a\n  name: b\n",
            "  nick: a\n",
            "  name: {a: b}\n",
            "   name: off-by-one\n",
            "\tname: tab\n",
            "  name: caf\u{e9}\n",
            "  packages:\n  - b\n",
        ] {
            let text = format!("{ok}k2:\n  type: t\n  packages:\n  - b\n{bad}");
            let (got, outcome) = read(&text);
            assert_eq!(got.len(), 1, "{bad:?}: the first entry is read");
            let last = 8 + bad.lines().count();
            assert!(
                matches!(outcome, Outcome::Declined { from, from_line: 5, at } if from == ok.len() as u64 && (9..=last).contains(&at)),
                "{bad:?}: {outcome:?}"
            );
        }
        for bad in ["  - url: a\n    size: 0755\n", "  - url: a\n    also:\n", "  - url: a\n    extra: x\n"] {
            let text = format!("{ok}k2:\n  type: t\n  packages:\n{bad}");
            let (got, outcome) = read(&text);
            assert_eq!(got.len(), 1, "{bad:?}");
            assert!(
                matches!(outcome, Outcome::Declined { from, .. } if from == ok.len() as u64),
                "{bad:?}: {outcome:?}"
            );
        }
        let (got, outcome) = read("---\nk1:\n  type: t\n");
        assert!(got.is_empty());
        assert_eq!(outcome, Outcome::Declined { from: 0, from_line: 1, at: 1 });
    }

    #[test]
    fn plain_scalars_are_only_those_read_as_their_text() {
        for s in ["6.1.0-1-amd64", "http://h/p_1.0%3a2+b~c.deb", "1.0", "true", ".inf", "x:y"] {
            assert_eq!(plain(s.as_bytes()), Some(s), "{s}");
        }
        for s in ["", "~", "null", "NULL", "-a", "'a'", "a b", "a:", "a#b", "[a]", "a,b", "*a", "&a", "!a", "?a", "%a"]
        {
            assert_eq!(plain(s.as_bytes()), None, "{s}");
        }
        for s in ["1.0", "y", "No", ".inf", "-.NaN", "0x1f", "1_000", "1:20", "12", "1e5"] {
            assert!(maybe_typed(s), "{s}");
        }
        for s in ["http://h/a.deb", "http---h-a.deb", "ab12", "6.1.0-1-amd64", "yes-no", "0b1ee19d", "0x1g"] {
            assert!(!maybe_typed(s), "{s}");
        }
        for (s, want) in [
            ("'1.0'", Some("1.0")),
            ("\"null\"", Some("null")),
            ("''", Some("")),
            ("'a b'", None),
            ("\"a\\n\"", None),
            ("'it''s'", None),
            ("\"a'", None),
        ] {
            assert_eq!(quoted(s.as_bytes()), want, "{s}");
        }
        assert_eq!(size(b"0"), Some(0));
        assert_eq!(size(b"123"), Some(123));
        for s in ["0755", "1_000", "0x10", "-1", "99999999999999999999999", ""] {
            assert_eq!(size(s.as_bytes()), None, "{s}");
        }
    }
}
