//! Docs that cannot rot: every test docs/*.md cites must exist.

use std::path::{Path, PathBuf};

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

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out
}

fn defines(files: &[PathBuf], name: &str) -> bool {
    let needle = format!("fn {name}(");
    files.iter().any(|f| std::fs::read_to_string(f).unwrap_or_default().contains(&needle))
}

fn missing_citations(doc: &str) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(repo().join(doc)).unwrap();
    let cited = citations(&text);
    let mut missing = Vec::new();
    for item in &cited {
        let parts: Vec<&str> = item.split("::").collect();
        let ok = match parts.as_slice() {
            ["lib", .., name] => defines(&rust_files(&repo().join("src")), name),
            ["quick", module, name] => defines(&[repo().join(format!("tests/quick/{module}.rs"))], name),
            [target, "*"] => repo().join(format!("tests/{target}.rs")).exists(),
            [target, name] => defines(&[repo().join(format!("tests/{target}.rs"))], name),
            _ => false,
        };
        if !ok {
            missing.push(item.clone());
        }
    }
    (cited.len(), missing)
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
