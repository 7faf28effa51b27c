//! Reading manifest YAML entry by entry, from text or from a file, without
//! holding the whole manifest: the line reader (`fast_yaml`) takes the
//! layout kpackfs and kernel-packer write, serde-saphyr everything else
//! from where the line reader stopped being sure.

use super::lists::Lists;
use super::{fast_yaml, rules, validate_entry, BundleSpec, Package, PackageLists};
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// The largest manifest file accepted (a million entries take about 765 MB).
pub const MAX_MANIFEST_BYTES: usize = 2 << 30;

/// The on-disk package item: a full mapping, or a bare string (kernel-packer's
/// simplified name, or a URL).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawPackage {
    Full(Package),
    Name(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpec {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub uname: Option<String>,
    #[serde(default)]
    pub signed_by: Option<String>,
    pub packages: Vec<RawPackage>,
    /// kernel-packer's repackaging image (`repackage-bookworm`): it names
    /// how kernel-packer built the bundle, which kpackfs does its own way.
    #[serde(default, rename = "image")]
    pub _image: Option<String>,
}

/// How a manifest was read: entries in all, and how many of them the full
/// YAML parser read (0 when the line reader took the whole file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseStats {
    pub entries: usize,
    pub by_full_parser: usize,
}

/// Where YAML comes from.
enum Source<'a> {
    Text(&'a str),
    File(&'a Path),
}

/// The source, opened.
enum Input<'a> {
    Text(&'a str),
    File(std::fs::File),
}

/// Parse manifest YAML entry by entry, calling `each(id, spec)` with every
/// checked entry (names not yet derived). Simplified package names are
/// mapped back to URLs through `lists`; a name with no URL is an error.
pub fn parse_each(
    text: &str,
    lists: &PackageLists,
    each: impl FnMut(String, BundleSpec) -> Result<()>,
) -> Result<ParseStats> {
    parse(Source::Text(text), &mut Lists::Given(lists), true, each)
}

/// Like [`parse_each`], reading the file at `path` as a stream (a million
/// entries never sit in memory). Package lists, if bare names need them,
/// come from `lists`, looked up when the first bare name is seen.
pub fn parse_file_each(
    path: &Path,
    lists: &mut Lists<'_>,
    each: impl FnMut(String, BundleSpec) -> Result<()>,
) -> Result<ParseStats> {
    parse(Source::File(path), lists, true, each)
}

/// `line_reader`: try the line reader first (false only to compare).
fn parse(
    source: Source<'_>,
    lists: &mut Lists<'_>,
    line_reader: bool,
    mut each: impl FnMut(String, BundleSpec) -> Result<()>,
) -> Result<ParseStats> {
    let mut input = match source {
        Source::Text(text) => {
            if text.len() > MAX_MANIFEST_BYTES {
                bail!("malformed manifest: {} bytes, over the limit of {MAX_MANIFEST_BYTES}", text.len());
            }
            Input::Text(text)
        }
        Source::File(path) => {
            let file = std::fs::File::open(path).with_context(|| format!("reading manifest {}", path.display()))?;
            let size = file.metadata().with_context(|| format!("reading manifest {}", path.display()))?.len();
            if size > MAX_MANIFEST_BYTES as u64 {
                bail!("manifest {} is {size} bytes, over the limit of {MAX_MANIFEST_BYTES}", path.display());
            }
            Input::File(file)
        }
    };
    let entries = std::cell::Cell::new(0usize);
    let mut unresolved: Option<String> = None;
    let mut unresolved_count = 0usize;
    let mut handle = |id: String, raw: RawSpec| -> Result<()> {
        entries.set(entries.get() + 1);
        let mut packages = Vec::with_capacity(raw.packages.len());
        for item in raw.packages {
            match item {
                RawPackage::Full(p) => packages.push(p),
                RawPackage::Name(name) if name.contains("://") => packages.push(Package::new(name)),
                RawPackage::Name(name) => match lists.resolve(&name)? {
                    Some(url) => packages.push(Package::new(url)),
                    None => {
                        unresolved_count += 1;
                        unresolved.get_or_insert(name);
                    }
                },
            }
        }
        if unresolved_count > 0 {
            return Ok(()); // reported once, below
        }
        if packages.is_empty() {
            bail!("malformed manifest: entry {} has no packages", rules::shown(&id));
        }
        let spec = BundleSpec { kind: raw.kind, name: raw.name, uname: raw.uname, signed_by: raw.signed_by, packages };
        validate_entry(&id, &spec)?;
        each(id, spec)
    };
    let limit = MAX_MANIFEST_BYTES as u64;
    let outcome = match &mut input {
        _ if !line_reader => fast_yaml::Outcome::Declined { from: 0, from_line: 1, at: 1 },
        Input::Text(text) => fast_yaml::read_entries(text.as_bytes(), &mut handle)?,
        Input::File(f) => {
            fast_yaml::read_entries(BufReader::with_capacity(1 << 20, f.by_ref().take(limit)), &mut handle)?
        }
    };
    let mut by_full_parser = 0;
    if let fast_yaml::Outcome::Declined { from, from_line, at } = outcome {
        log::debug!("manifest line {at} is not in the common layout: the YAML parser reads from line {from_line} on");
        let read_before = entries.get();
        let mut failure: Option<anyhow::Error> = None;
        let seed = EachEntry { handle: &mut handle, failure: &mut failure };
        let parsed = match &mut input {
            Input::Text(text) => {
                let rest = text.get(from as usize..).unwrap_or("");
                serde_saphyr::with_deserializer_from_str_with_options(rest, yaml_options(), |de| {
                    serde::de::DeserializeSeed::deserialize(seed, de)
                })
            }
            Input::File(f) => {
                f.seek(SeekFrom::Start(from))?;
                let rest = BufReader::with_capacity(1 << 20, f.by_ref().take(limit.saturating_sub(from)));
                serde_saphyr::with_deserializer_from_reader_with_options(rest, yaml_options(), |de| {
                    serde::de::DeserializeSeed::deserialize(seed, de)
                })
            }
        };
        if let Some(e) = failure {
            return Err(e);
        }
        let counted = if from_line > 1 { format!(" (lines counted from line {from_line})") } else { String::new() };
        parsed.map_err(|e| anyhow!("malformed manifest{counted}: {e}"))?;
        by_full_parser = entries.get() - read_before;
    }
    if let Some(name) = unresolved {
        bail!(
            "{unresolved_count} package name(s) have no URL in the package lists, e.g. {name} (pass the directory of kernel-packer's *.txt lists)"
        );
    }
    Ok(ParseStats { entries: entries.get(), by_full_parser })
}

/// Visits the top-level mapping one entry at a time.
struct EachEntry<'a, F: FnMut(String, RawSpec) -> Result<()>> {
    handle: &'a mut F,
    failure: &'a mut Option<anyhow::Error>,
}

impl<'de, F: FnMut(String, RawSpec) -> Result<()>> serde::de::DeserializeSeed<'de> for EachEntry<'_, F> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(String, RawSpec) -> Result<()>> serde::de::Visitor<'de> for EachEntry<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a mapping of bundle id to bundle")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(id) = map.next_key::<String>()? {
            let raw: RawSpec = map.next_value()?;
            if let Err(e) = (self.handle)(id, raw) {
                let message = format!("{e:#}");
                *self.failure = Some(e);
                return Err(serde::de::Error::custom(message));
            }
        }
        Ok(())
    }
}

/// YAML limits for manifests: generous on size (a crawl of every kernel
/// ever shipped is millions of nodes), strict on what makes bombs: aliases,
/// depth, and the input size itself.
pub fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = usize::MAX;
    budget.max_events = usize::MAX;
    budget.max_total_scalar_bytes = MAX_MANIFEST_BYTES;
    // Files are read as streams; the reader's own cap (256 MiB) is below ours.
    budget.max_reader_input_bytes = Some(MAX_MANIFEST_BYTES);
    budget.max_aliases = 0;
    budget.max_anchors = 0;
    budget.max_depth = 16;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::bundle_id;

    /// xorshift: reproducible cases without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
        fn one_in(&mut self, n: usize) -> bool {
            self.below(n) == 0
        }
    }

    /// Values as they appear in manifests, and as YAML can make them mean
    /// something else (null, quoted, a mapping, a comment, an alias...).
    const ODD: &[&str] = &[
        "null",
        "~",
        "'q'",
        "\"dq\"",
        "a: b",
        "a #c",
        "true",
        "1.0",
        "",
        " lead",
        "trail ",
        "x:y",
        "[a]",
        "{a: b}",
        "caf\u{e9}",
        "a\tb",
        "*ref",
        "1e5",
        "'1.0'",
        "\"null\"",
        "''",
        "'it''s'",
        "\"a\\tb\"",
        "'a b'",
        "&anc x",
        "!tag x",
        "|",
        ">",
        "-x",
        "%p",
        "0x10",
        "a,b",
        "@at",
        "`b`",
        "y",
    ];

    fn value(r: &mut Rng, normal: &str) -> String {
        if r.one_in(60) {
            r.pick(ODD).to_string()
        } else if r.one_in(20) {
            let q = r.pick(&["'", "\""]);
            format!("{q}{normal}{q}")
        } else {
            normal.to_string()
        }
    }

    /// One generated manifest: mostly the common layout, with odd values,
    /// indentation, order, comments and line ends mixed in.
    fn manifest(r: &mut Rng) -> String {
        let mut out = String::new();
        if r.one_in(30) {
            out.push_str("---\n");
        }
        if r.one_in(3) {
            out.push_str("# generated\n");
        }
        let entries = 1 + r.below(4);
        let mut ids: Vec<String> = Vec::new();
        for e in 0..entries {
            let fi = r.pick(&["  ", "  ", "    ", " "]).to_string();
            let si = if r.one_in(3) { format!("{fi}  ") } else { fi.clone() };
            let n_pkgs = if r.one_in(20) { 0 } else { 1 + r.below(3) };
            let urls: Vec<String> = (0..n_pkgs)
                .map(|p| format!("http://h.test/pool/linux-headers-6.{e}.0-{p}-amd64_6.{e}-{p}_amd64.deb"))
                .collect();
            let mut id = bundle_id(urls.iter().map(String::as_str));
            if r.one_in(25) {
                id = ids.first().cloned().unwrap_or(id); // a duplicate key
            }
            if r.one_in(40) {
                id = "0".repeat(64); // not the packages' id
            }
            ids.push(id.clone());
            out.push_str(&format!("{id}:\n"));
            let mut fields: Vec<String> = vec![format!("{fi}type: {}\n", value(r, "debian"))];
            if r.one_in(2) {
                fields.push(format!("{fi}name: {}\n", value(r, "6.1.0-1-amd64")));
            }
            if r.one_in(3) {
                fields.push(format!("{fi}uname: {}\n", value(r, "6.1.0-1-amd64")));
            }
            if r.one_in(10) {
                fields.push(format!("{fi}image: {}\n", value(r, "repackage-bookworm")));
            }
            if r.one_in(40) {
                fields.push(format!("{fi}nick: x\n"));
            }
            let mut pk = format!("{fi}packages:\n");
            for u in &urls {
                if r.one_in(3) {
                    pk.push_str(&format!("{si}- {}\n", value(r, u)));
                    continue;
                }
                let pi = format!("{si}  ");
                let mut lines = vec![format!("url: {}\n", value(r, u))];
                if r.one_in(3) {
                    let ai = if r.one_in(2) { pi.clone() } else { format!("{pi}  ") };
                    let mut also = "also:\n".to_string();
                    for _ in 0..if r.one_in(10) { 0 } else { 1 + r.below(2) } {
                        also.push_str(&format!("{ai}- {}\n", value(r, "http://m.test/p.deb")));
                    }
                    lines.push(also);
                }
                if r.one_in(2) {
                    lines.push(format!("sha256: {}\n", value(r, &"ab".repeat(32))));
                }
                if r.one_in(8) {
                    lines.push(format!("sha512: {}\n", value(r, &"cd".repeat(64))));
                }
                if r.one_in(2) {
                    let size = if r.one_in(10) {
                        r.pick(&["0755", "1_0", "abc", "99999999999999999999", "10 # c", "0x10", "-1"])
                    } else {
                        r.pick(&["10", "0", "123456"])
                    };
                    lines.push(format!("size: {size}\n"));
                }
                if r.one_in(30) {
                    lines.push("extra: 1\n".to_string());
                }
                let first = r.below(lines.len());
                let head = lines.remove(first);
                pk.push_str(&format!("{si}- {head}"));
                for l in lines {
                    pk.push_str(&format!("{pi}{l}"));
                }
            }
            fields.push(pk);
            let at = r.below(fields.len() + 1).min(fields.len());
            if r.one_in(15) {
                let words = r.pick(&["a comment", "caf\u{e9}", "a\rnick: c", "a\r  name: c"]);
                fields.insert(at, format!("{fi}# {words}\n\n"));
            }
            if r.one_in(30) {
                let last = fields.len() - 1;
                fields.swap(0, last);
            }
            for f in fields {
                out.push_str(&f);
            }
        }
        if r.one_in(40) {
            out = out.replace('\n', "\r\n");
        }
        if r.one_in(40) {
            let at = r.below(out.len());
            if out.is_char_boundary(at) {
                out.insert(at, r.pick(&[" ", "\t", ":", "#", "-", "\n"]).chars().next().unwrap_or(' '));
            }
        }
        out
    }

    /// Read `text` into a list, refusing a duplicate id as a consumer does.
    fn read(text: &str, line_reader: bool) -> Result<(Vec<(String, BundleSpec)>, ParseStats)> {
        let mut got: Vec<(String, BundleSpec)> = Vec::new();
        let stats = parse(Source::Text(text), &mut Lists::Given(&PackageLists::default()), line_reader, |id, spec| {
            got.push((id, spec));
            Ok(())
        })?;
        let mut ids: Vec<&String> = got.iter().map(|(id, _)| id).collect();
        ids.sort();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            bail!("a duplicate id");
        }
        Ok((got, stats))
    }

    #[test]
    fn the_line_reader_and_the_yaml_parser_read_every_generated_manifest_alike() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut by_lines, mut declined, mut refused) = (0, 0, 0);
        let cases: usize = std::env::var("CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
        for case in 0..cases {
            let text = manifest(&mut r);
            let full = read(&text, false);
            let ours = read(&text, true);
            match (&full, &ours) {
                (Ok((a, _)), Ok((b, stats))) => {
                    assert_eq!(a, b, "case {case}:\n{text}");
                    if stats.by_full_parser == 0 && !a.is_empty() {
                        by_lines += 1;
                    } else {
                        declined += 1;
                    }
                }
                (Err(_), Err(_)) => refused += 1,
                _ => panic!(
                    "case {case}: the YAML parser says {:?}, ours {:?}:\n{text}",
                    full.map(|x| x.0.len()),
                    ours.map(|x| x.0.len())
                ),
            }
        }
        // The cases exercise all three outcomes, the line reader most.
        assert!(by_lines > 1000 && declined > 100 && refused > 100, "{by_lines} {declined} {refused}");
    }

    #[test]
    fn shipped_and_kernel_packer_manifests_are_read_by_the_line_reader_alone() {
        let stats = parse_each(crate::manifest::SHIPPED, &PackageLists::default(), |_, _| Ok(())).unwrap();
        assert!(stats.entries > 5000);
        assert_eq!(stats.by_full_parser, 0);
        let kp = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/kernel-packer/manifest.yml");
        if let Ok(text) = std::fs::read_to_string(&kp) {
            let mut lists = Lists::Refused("counting only");
            let mut seen = 0usize;
            let stats = parse(Source::Text(&text), &mut lists, true, |_, _| {
                seen += 1;
                Ok(())
            });
            // Its bare names need lists: the first one stops the read, after
            // the line reader (not the YAML parser) took its entry.
            assert!(stats.is_err());
        }
        let mut m = crate::manifest::Manifest::default();
        let mut p = Package::new("http://h.test/pool/linux-headers-6.1.0-1-amd64_6.1-1_amd64.deb");
        p.also = vec!["http://m.test/p.deb".into()];
        p.sha256 = Some("ab".repeat(32));
        p.size = Some(7);
        m.insert(BundleSpec {
            kind: "debian".into(),
            name: None,
            uname: None,
            signed_by: Some("k".into()),
            packages: vec![p],
        });
        let (got, stats) = read(&m.to_yaml().unwrap(), true).unwrap();
        assert_eq!(stats.by_full_parser, 0, "what kpackfs writes is read line by line");
        assert_eq!(got.len(), 1);
    }
}
