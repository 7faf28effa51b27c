//! Docs that cannot rot: every test docs/*.md cites must exist.

use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `*(…)*` citation group's items.
fn citations(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("*(") {
        let after = &rest[start + 2..];
        let Some(end) = after.find(")*") else { break };
        let group = after[..end].trim_start_matches("tests:");
        for item in group.split(',') {
            out.push(item.trim().to_string());
        }
        rest = &after[end + 2..];
    }
    out
}

/// Whether `text` has `fn name(` marked `#[test]` or `#[tokio::test]` (doc comments and other
/// attributes may stand between them).
fn has_test(text: &str, name: &str) -> bool {
    let lines: Vec<&str> = text.lines().collect();
    let signature = format!("fn {name}(");
    lines.iter().enumerate().any(|(i, line)| {
        let line = line.trim_start();
        if !(line.starts_with(&signature) || line.strip_prefix("async ").is_some_and(|l| l.starts_with(&signature))) {
            return false;
        }
        lines[..i]
            .iter()
            .rev()
            .map(|l| l.trim())
            .take_while(|l| l.starts_with("#[") || l.starts_with("///") || l.starts_with("//"))
            .any(|l| l == "#[test]" || l.starts_with("#[tokio::test"))
    })
}

/// The text of a module's inline `mod tests` block, found by its file.
fn inline_tests(module: &[&str]) -> Option<String> {
    let base = repo().join("src").join(module.join("/"));
    let file = [base.with_extension("rs"), base.join("mod.rs")].into_iter().find(|p| p.is_file())?;
    let text = std::fs::read_to_string(file).ok()?;
    let at = text.find("mod tests {")?;
    Some(text[at..].to_string())
}

/// Whether a citation names a real test at the place it says:
/// `lib::<module path>::tests::<name>` (the module's inline tests),
/// `quick::<module>::<name>` (tests/quick/<module>.rs), `<target>::<name>`
/// (tests/<target>.rs) or `<target>::*` (the file).
fn resolves(item: &str) -> bool {
    let parts: Vec<&str> = item.split("::").collect();
    let file_has = |path: PathBuf, name: &str| std::fs::read_to_string(path).is_ok_and(|t| has_test(&t, name));
    match parts.as_slice() {
        ["lib", module @ .., "tests", name] if !module.is_empty() => {
            inline_tests(module).is_some_and(|t| has_test(&t, name))
        }
        ["quick", module, name] => file_has(repo().join(format!("tests/quick/{module}.rs")), name),
        [target, "*"] => repo().join(format!("tests/{target}.rs")).exists(),
        [target, name] => file_has(repo().join(format!("tests/{target}.rs")), name),
        _ => false,
    }
}

fn missing_citations(doc: &str) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(repo().join(doc)).unwrap();
    let cited = citations(&text);
    let missing = cited.iter().filter(|item| !resolves(item)).cloned().collect();
    (cited.len(), missing)
}

/// The checker itself: a name that is a test elsewhere, a helper without
/// `#[test]`, and a test in another module than cited are all refused.
#[test]
fn a_citation_resolves_only_to_a_test_at_the_place_it_names() {
    assert!(resolves("quick::docs::a_citation_resolves_only_to_a_test_at_the_place_it_names"));
    assert!(!resolves("quick::docs::missing_citations"), "a helper is not a test");
    assert!(!resolves("quick::cache::a_citation_resolves_only_to_a_test_at_the_place_it_names"), "another module");
    assert!(resolves("lib::manifest::naming::tests::ubuntu_flavours_and_backports"));
    assert!(!resolves("lib::manifest::index::tests::ubuntu_flavours_and_backports"), "another module's test");
    assert!(!resolves("lib::manifest::naming::derive_names"), "not a test");
}

#[test]
fn every_test_semantics_md_cites_exists() {
    let (cited, missing) = missing_citations("docs/semantics.md");
    assert!(cited > 40, "citations found: {cited}");
    assert!(missing.is_empty(), "docs/semantics.md cites tests that do not exist: {missing:?}");
}

#[test]
fn every_test_the_other_docs_cite_exists() {
    let mut total = 0;
    for entry in std::fs::read_dir(repo().join("docs")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".md") || name == "semantics.md" {
            continue;
        }
        let (cited, missing) = missing_citations(&format!("docs/{name}"));
        total += cited;
        assert!(missing.is_empty(), "docs/{name} cites tests that do not exist: {missing:?}");
    }
    assert!(total > 5, "citations found: {total}");
}

/// Whether `path` (`a::b`) is a module of the crate.
fn is_module(path: &str) -> bool {
    let base = repo().join("src").join(path.replace("::", "/"));
    base.with_extension("rs").is_file() || base.join("mod.rs").is_file()
}

/// The rows of design.md's module table: (module cell, job cell).
fn design_rows() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("docs/design.md")).unwrap();
    let table = text.split("| module | job |").nth(1).expect("design.md has its module table");
    table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').splitn(2, '|').collect();
            Some((cells.first()?.trim().to_string(), cells.get(1)?.trim().to_string()))
        })
        .collect()
}

/// Backticked items of a cell.
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// The submodules a job cell names in parentheses: "(`rules`)", "(`fuse`, the one file …)".
fn named_submodules(job: &str) -> Vec<String> {
    let mut out = Vec::new();
    for group in job.split('(').skip(1) {
        let group = group.split(')').next().unwrap_or("");
        if !group.starts_with('`') {
            continue;
        }
        for part in group.split(", ") {
            let Some(name) = part.strip_prefix('`').and_then(|p| p.split('`').next()) else { continue };
            if name.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == ':') {
                out.push(name.to_string());
            }
        }
    }
    out
}

#[test]
fn the_design_module_table_names_every_module_and_only_real_ones() {
    let rows = design_rows();
    assert!(rows.len() > 20, "the table parses: {rows:?}");
    let mut named = Vec::new();
    let mut missing = Vec::new();
    for (modules, job) in &rows {
        for m in ticked(modules) {
            if !is_module(&m) {
                missing.push(m.clone());
            }
            for sub in named_submodules(job) {
                let path = if sub.contains("::") { sub.clone() } else { format!("{m}::{sub}") };
                if !is_module(&path) {
                    missing.push(path);
                }
            }
            named.push(m);
        }
    }
    assert!(missing.is_empty(), "design.md names modules that do not exist: {missing:?}");
    let mut top: Vec<String> = std::fs::read_dir(repo().join("src"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            match name.strip_suffix(".rs") {
                Some("lib" | "main") => None,
                Some(stem) => Some(stem.to_string()),
                None if e.path().join("mod.rs").is_file() => Some(name),
                None => None,
            }
        })
        .collect();
    top.sort();
    let absent: Vec<&String> = top.iter().filter(|t| !named.contains(t)).collect();
    assert!(absent.is_empty(), "design.md's module table leaves out: {absent:?}");
    assert_eq!(named.len(), named.iter().collect::<std::collections::BTreeSet<_>>().len(), "a module has two rows");
}

#[test]
fn the_design_table_checker_sees_a_missing_module() {
    assert!(is_module("cache::obtain") && is_module("build") && !is_module("cache::pipeline"));
    assert_eq!(named_submodules("x (`rules`), y (`index`, `arch`: z) and (not `this`)"), ["rules", "index", "arch"]);
}
