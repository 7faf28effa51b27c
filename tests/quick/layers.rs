//! The crate's shape, checked from its source (bench/imports.py prints the
//! same graph): imports only go down the floors below, no two files import
//! each other through any path, no file is over 600 lines, and fuser is
//! known to at most two files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Floors, lowest first. A module may import its own floor's modules and
/// lower floors', never a higher floor's (docs/design.md explains each).
pub const FLOORS: &[(&str, &[&str])] = &[
    ("shared", &["files", "scratch", "ids", "cpu", "error", "util", "defaults"]),
    ("formats", &["manifest", "package", "staging", "trust", "layout", "tgz", "pack"]),
    ("sources", &["fetch", "crawl", "settings"]),
    ("records", &["observe", "namespace", "remote"]),
    ("storage", &["cache"]),
    ("build", &["build"]),
    ("serving", &["fs", "serve", "publish", "lookup"]),
    ("daemon", &["daemon"]),
    ("cli", &["cli"]),
];

/// A module path, `["cache", "obtain"]` for src/cache/obtain.rs.
type Module = Vec<String>;
type Edges = BTreeMap<Module, BTreeSet<Module>>;

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every source file as its module path (`a/b.rs` and `a/b/mod.rs` are `a::b`).
fn modules() -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(src()).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                parts.clear();
            }
            out.insert(parts, path);
        }
    }
    out
}

/// The file without comments and without its test module (tests are not
/// part of the layering).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.find("#[cfg(test)]\nmod tests").map_or(text.as_str(), |at| &text[..at]);
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Paths starting with `crate`, `super` or `self`, with `use a::{b, c}`
/// groups expanded one level.
fn references(code: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let at_word = i == 0 || !is_ident(bytes[i - 1]);
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        let head = ["crate::", "super::", "self::"].into_iter().find(|h| at_word && rest.starts_with(h));
        let Some(head) = head else {
            i += 1;
            continue;
        };
        let kind = head.trim_end_matches("::").to_string();
        let mut j = i + head.len();
        let mut parts = Vec::new();
        loop {
            let start = j;
            while j < bytes.len() && is_ident(bytes[j]) {
                j += 1;
            }
            if j > start {
                parts.push(bytes[start..j].iter().collect::<String>());
            }
            if j + 1 < bytes.len() && bytes[j] == ':' && bytes[j + 1] == ':' {
                j += 2;
                if j < bytes.len() && bytes[j] == '{' {
                    let end = (j..bytes.len()).find(|k| bytes[*k] == '}').unwrap_or(bytes.len());
                    let group: String = bytes[j + 1..end].iter().collect();
                    for item in group.split(',') {
                        let first = item.trim().split("::").next().unwrap_or("").split(' ').next().unwrap_or("");
                        if !first.is_empty() && first != "self" {
                            let mut p = parts.clone();
                            p.push(first.to_string());
                            out.push((kind.clone(), p));
                        }
                    }
                    j = end;
                    break;
                }
                continue;
            }
            break;
        }
        out.push((kind, parts));
        i = j.max(i + 1);
    }
    out
}

/// File-level import edges.
fn graph() -> (BTreeMap<Module, PathBuf>, Edges) {
    let mods = modules();
    let mut edges: Edges = BTreeMap::new();
    for (module, path) in &mods {
        for (kind, mut parts) in references(&code(path)) {
            let mut base: Vec<String> = match kind.as_str() {
                "crate" => Vec::new(),
                "super" => module[..module.len().saturating_sub(1)].to_vec(),
                _ => module.clone(),
            };
            while parts.first().is_some_and(|p| p == "super") {
                parts.remove(0);
                base.pop();
            }
            let mut target: Vec<String> = base.into_iter().chain(parts).collect();
            while !target.is_empty() && !mods.contains_key(&target) {
                target.pop();
            }
            if !target.is_empty() && &target != module {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    (mods, edges)
}

/// Strongly connected components of more than one node (iterative Tarjan).
fn cycles(nodes: &[Module], edges: &Edges) -> Vec<Vec<Module>> {
    let mut index: HashMap<&Vec<String>, usize> = HashMap::new();
    let mut low: HashMap<&Vec<String>, usize> = HashMap::new();
    let (mut stack, mut on, mut out) = (Vec::new(), BTreeSet::new(), Vec::new());
    let empty = BTreeSet::new();
    for start in nodes {
        if index.contains_key(start) {
            continue;
        }
        let mut work: Vec<(&Vec<String>, Vec<&Vec<String>>)> =
            vec![(start, edges.get(start).unwrap_or(&empty).iter().rev().collect())];
        index.insert(start, index.len());
        low.insert(start, index[start]);
        stack.push(start);
        on.insert(start);
        while let Some((node, next)) = work.last_mut() {
            let node = *node;
            if let Some(n) = next.pop() {
                if !index.contains_key(n) {
                    index.insert(n, index.len());
                    low.insert(n, index[n]);
                    stack.push(n);
                    on.insert(n);
                    work.push((n, edges.get(n).unwrap_or(&empty).iter().rev().collect()));
                } else if on.contains(n) {
                    let l = low[node].min(index[n]);
                    low.insert(node, l);
                }
                continue;
            }
            work.pop();
            if let Some((parent, _)) = work.last() {
                let l = low[parent].min(low[node]);
                low.insert(parent, l);
            }
            if low[node] == index[node] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on.remove(w);
                    comp.push(w.clone());
                    if w == node {
                        break;
                    }
                }
                if comp.len() > 1 {
                    out.push(comp);
                }
            }
        }
    }
    out
}

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|(_, mods)| mods.contains(&module))
}

/// Imports from a lower floor to a higher one.
fn upward(edges: &Edges) -> Vec<String> {
    let mut out = Vec::new();
    for (from, targets) in edges {
        for to in targets {
            let (Some(a), Some(b)) = (from.first(), to.first()) else { continue };
            if a != b && floor_of(a) < floor_of(b) {
                out.push(format!("{} -> {}", from.join("::"), to.join("::")));
            }
        }
    }
    out
}

#[test]
fn imports_only_go_down_the_floors_and_nothing_imports_in_a_circle() {
    let (mods, edges) = graph();
    let top: BTreeSet<String> = mods.keys().filter_map(|m| m.first().cloned()).collect();
    let unplaced: Vec<&String> = top.iter().filter(|m| floor_of(m).is_none()).collect();
    assert!(unplaced.is_empty(), "modules on no floor (add them to FLOORS and docs/design.md): {unplaced:?}");
    let upward = upward(&edges);
    assert!(upward.is_empty(), "imports from a lower floor to a higher one: {upward:#?}");
    let nodes: Vec<Vec<String>> = mods.keys().cloned().collect();
    let file_cycles = cycles(&nodes, &edges);
    assert!(file_cycles.is_empty(), "files importing each other: {file_cycles:?}");
    let mut top_edges: Edges = BTreeMap::new();
    for (from, targets) in &edges {
        for to in targets {
            if let (Some(a), Some(b)) = (from.first(), to.first()) {
                if a != b {
                    top_edges.entry(vec![a.clone()]).or_default().insert(vec![b.clone()]);
                }
            }
        }
    }
    let tops: Vec<Vec<String>> = top.iter().map(|t| vec![t.clone()]).collect();
    let module_cycles = cycles(&tops, &top_edges);
    assert!(module_cycles.is_empty(), "top-level modules importing each other: {module_cycles:?}");
    assert!(edges.values().map(BTreeSet::len).sum::<usize>() > 200, "the parser sees the imports");
}

/// The checker itself: a circle and an upward import are seen.
#[test]
fn the_layer_checker_sees_a_circle_and_resolves_groups_and_super() {
    let refs = references("use crate::cache::{Cache, Kind};\nuse super::super::x::Y;\nlet a = crate::fs::core::f();");
    assert!(refs.contains(&("crate".to_string(), vec!["cache".into(), "Cache".into()])));
    assert!(refs.contains(&("super".to_string(), vec!["super".into(), "x".into(), "Y".into()])));
    assert!(refs.contains(&("crate".to_string(), vec!["fs".into(), "core".into(), "f".into()])));
    let a = vec!["a".to_string()];
    let b = vec!["b".to_string()];
    let edges: BTreeMap<_, _> =
        [(a.clone(), BTreeSet::from([b.clone()])), (b.clone(), BTreeSet::from([a.clone()]))].into_iter().collect();
    assert_eq!(cycles(&[a, b], &edges).len(), 1);
    assert!(floor_of("cache") < floor_of("build") && floor_of("build") < floor_of("fs"));
    let up: Edges = [(vec!["cache".to_string(), "obtain".to_string()], BTreeSet::from([vec!["build".to_string()]]))]
        .into_iter()
        .collect();
    assert_eq!(upward(&up), ["cache::obtain -> build"]);
}

#[test]
fn no_source_file_is_over_600_lines() {
    let long: Vec<String> = modules()
        .values()
        .filter_map(|p| {
            let n = std::fs::read_to_string(p).unwrap().lines().count();
            (n > 600).then(|| format!("{} ({n} lines)", p.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these: {long:?}");
}

#[test]
fn fuser_is_known_to_at_most_two_files() {
    let users: Vec<PathBuf> = modules()
        .into_values()
        .filter(|p| {
            let c = code(p);
            c.contains("fuser::") || c.contains("use fuser")
        })
        .collect();
    assert!(!users.is_empty() && users.len() <= 2, "{users:?}");
}
