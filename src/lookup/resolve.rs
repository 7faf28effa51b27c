//! Every way a bundle is named: `NAME`, `TYPE/NAME`, the id or a unique id
//! prefix (at least 8 hex digits), collector's `bundle-NAME.tgz` (also
//! `NAME.tgz` and `TYPE/NAME.tgz`), and a kernel release when no name
//! matches. An ambiguous name lists its candidates; an unknown one, the
//! closest names.

use super::suggest;
use crate::ids::BundleId;
use crate::manifest::index::Index;

/// The shortest id prefix accepted.
pub const MIN_ID_PREFIX: usize = 8;

/// Why a name did not resolve to one bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// These bundles (labels with short ids) all answer to the name.
    Ambiguous { query: String, candidates: Vec<String> },
    /// Nothing answers; these are the closest names.
    Unknown { query: String, closest: Vec<String> },
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::Ambiguous { query, candidates } => write!(
                f,
                "{query} names {} bundles: {}; give TYPE/NAME or an id prefix",
                candidates.len(),
                candidates.join(", ")
            ),
            LookupError::Unknown { query, closest } if closest.is_empty() => write!(f, "no bundle named {query}"),
            LookupError::Unknown { query, closest } => {
                write!(f, "no bundle named {query}; closest: {}", closest.join(", "))
            }
        }
    }
}

impl std::error::Error for LookupError {}

/// `type/name (id prefix)` for candidate lists.
pub fn describe(index: &Index, slot: u32) -> String {
    let id = index.id(slot).map(|i| i.hex()[..12].to_string()).unwrap_or_default();
    match (index.kind(slot), index.name(slot)) {
        (Some(k), Some(n)) if index.is_served(slot) => format!("{k}/{n} ({id})"),
        (Some(k), Some(n)) => format!("{k}/{n} ({id}, shadowed)"),
        (Some(k), None) => format!("{k}/- ({id}, unnamed)"),
        _ => id,
    }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The served bundles called `name`, in every type, by type name.
fn by_name(index: &Index, name: &str) -> Vec<u32> {
    let mut found: Vec<u32> = (0..index.type_count() as u16).filter_map(|t| index.find_in_type(t, name)).collect();
    found.sort_by_key(|s| index.kind(*s).map(str::to_string));
    found
}

fn type_number(index: &Index, kind: &str) -> Option<u16> {
    (0..index.type_count() as u16).find(|t| index.type_name(*t) == Some(kind))
}

/// Every served `type/name` (for suggestions).
fn all_labels(index: &Index) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in 0..index.type_count() as u16 {
        let Some(kind) = index.type_name(t) else { continue };
        for i in 0..index.type_len(t).unwrap_or(0) {
            if let Some((_, name)) = index.type_at(t, i) {
                out.push((kind.to_string(), name.to_string()));
            }
        }
    }
    out
}

fn one(query: &str, index: &Index, slots: Vec<u32>) -> Option<Result<u32, LookupError>> {
    match slots.as_slice() {
        [] => None,
        [one] => Some(Ok(*one)),
        many => Some(Err(LookupError::Ambiguous {
            query: query.to_string(),
            candidates: many.iter().map(|s| describe(index, *s)).collect(),
        })),
    }
}

/// Resolve `query` to one slot of `index`.
pub fn resolve(index: &Index, query: &str) -> Result<u32, LookupError> {
    let q = query.trim().trim_end_matches('/');
    if q.len() == 64 && is_hex(q) {
        if let Some(slot) = BundleId::parse(q).and_then(|id| index.find_id(&id)) {
            return Ok(slot);
        }
    } else if q.len() >= MIN_ID_PREFIX && q.len() < 64 && is_hex(q) {
        if let Some(found) = one(q, index, index.find_id_prefix(q, 10)) {
            return found;
        }
    }
    let bare = q.strip_suffix(".tgz").unwrap_or(q);
    let (kind, name) = match bare.rsplit_once('/') {
        Some((k, n)) => (Some(k.rsplit('/').next().unwrap_or(k)), n),
        None => (None, bare),
    };
    let name = name.strip_prefix("bundle-").filter(|n| !n.is_empty()).unwrap_or(name);
    let found = match kind {
        Some(k) => type_number(index, k).and_then(|t| index.find_in_type(t, name)).map(|s| vec![s]).unwrap_or_default(),
        None => by_name(index, name),
    };
    if let Some(result) = one(query, index, found) {
        return result;
    }
    // collector's bundle-<uname>.tgz and plain releases.
    let by_uname: Vec<u32> =
        index.find_uname(name).into_iter().filter(|s| kind.is_none_or(|k| index.kind(*s) == Some(k))).collect();
    if let Some(result) = one(query, index, by_uname) {
        return result;
    }
    let labels = all_labels(index);
    let closest = match kind {
        Some(_) => {
            let full: Vec<String> = labels.iter().map(|(k, n)| format!("{k}/{n}")).collect();
            suggest::closest(&format!("{}/{name}", kind.unwrap_or_default()), full.iter().map(String::as_str), 5)
        }
        None => suggest::closest(name, labels.iter().map(|(_, n)| n.as_str()), 5),
    };
    Err(LookupError::Unknown { query: query.to_string(), closest })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::index::{add_manifest, IndexBuilder};
    use crate::manifest::{BundleSpec, Manifest, Package};

    fn deb(kind: &str, file: &str) -> BundleSpec {
        let mut p = Package::new(format!("http://x.test/{kind}/{file}"));
        p.sha256 = Some("a".repeat(64));
        BundleSpec { kind: kind.into(), name: None, uname: None, signed_by: None, packages: vec![p] }
    }

    fn index() -> (Index, Manifest) {
        let mut m = Manifest::default();
        m.insert(deb("debian", "linux-headers-6.1.0-56-amd64_6.1.192-2_amd64.deb"));
        m.insert(deb("debian", "linux-headers-6.1.0-56-arm64_6.1.192-2_arm64.deb"));
        m.insert(deb("garden", "linux-headers-6.1.0-56-amd64_6.1.192-2_amd64.deb"));
        m.insert(deb("ubuntu", "linux-headers-5.15.0-1049-aws_5.15.0-1049.54~20.04.1_amd64.deb"));
        let mut b = IndexBuilder::new();
        add_manifest(&mut b, &m).unwrap();
        (Index::from_bytes(b.finish([0; 32])).unwrap(), m)
    }

    fn label(index: &Index, slot: u32) -> String {
        format!("{}/{}", index.kind(slot).unwrap(), index.name(slot).unwrap())
    }

    #[test]
    fn every_name_form_resolves() {
        let (index, m) = index();
        let arm_id = m.entries.iter().find(|(_, e)| e.name.as_deref() == Some("6.1.0-56-arm64")).unwrap().0.clone();
        for q in [
            "6.1.0-56-arm64",
            "debian/6.1.0-56-arm64",
            "debian/6.1.0-56-arm64/",
            "bundle-6.1.0-56-arm64.tgz",
            "6.1.0-56-arm64.tgz",
            "debian/6.1.0-56-arm64.tgz",
            "/kernels/debian/6.1.0-56-arm64",
            &arm_id,
            &arm_id[..8],
            &arm_id[..12],
        ] {
            let slot = resolve(&index, q).unwrap_or_else(|e| panic!("{q}: {e}"));
            assert_eq!(label(&index, slot), "debian/6.1.0-56-arm64", "{q}");
        }
        // The ~20.04 backport's name, and its release (collector's bundle-<uname>.tgz).
        for q in ["5.15.0-1049-aws~20.04", "bundle-5.15.0-1049-aws.tgz", "5.15.0-1049-aws"] {
            assert_eq!(label(&index, resolve(&index, q).unwrap()), "ubuntu/5.15.0-1049-aws~20.04", "{q}");
        }
    }

    #[test]
    fn ambiguous_and_unknown_names_say_what_there_is() {
        let (index, _) = index();
        match resolve(&index, "6.1.0-56-amd64") {
            Err(LookupError::Ambiguous { candidates, .. }) => {
                assert_eq!(candidates.len(), 2);
                assert!(candidates[0].starts_with("debian/6.1.0-56-amd64 (") && candidates[1].starts_with("garden/"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(label(&index, resolve(&index, "garden/6.1.0-56-amd64").unwrap()), "garden/6.1.0-56-amd64");
        match resolve(&index, "6.1.0-56-amd46") {
            Err(e @ LookupError::Unknown { .. }) => {
                let text = e.to_string();
                assert!(text.contains("closest: 6.1.0-56-amd64"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        match resolve(&index, "debian/6.1.0-56-amd46") {
            Err(LookupError::Unknown { closest, .. }) => assert_eq!(closest[0], "debian/6.1.0-56-amd64"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(resolve(&index, "1234567"), Err(LookupError::Unknown { .. })), "7 hex digits are too few");
        assert!(matches!(resolve(&index, "zzzz"), Err(LookupError::Unknown { closest, .. }) if closest.is_empty()));
    }
}
