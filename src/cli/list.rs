//! `kpackfs list [PATTERN]`: the bundles a mount with the same settings
//! serves (the shipped or `--manifest` manifest merged with the last crawl
//! in the cache directory), or a running mount's (`--mount`), one per line:
//!
//! ```text
//! TYPE/NAME  UNAME  ARCH  ID            (--all adds a fifth column: served,
//!                                        shadowed-by=<id>, or unnamed: <reason>)
//! ```
//! or as a JSON array. Output is streamed; a reader that goes away
//! (`| head`) ends the command quietly.

use super::ViewArgs;
use crate::lookup::arch;
use crate::lookup::view::View;
use crate::manifest::index::Index;
use crate::settings::Settings;
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub struct ListArgs {
    /// Only bundles whose TYPE/NAME, name or uname matches this pattern (`*` and `?` wildcards).
    pattern: Option<String>,
    /// Only bundles of this type (debian, ubuntu, redhat, …).
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// Only bundles whose kernel release matches this pattern.
    #[arg(long, value_name = "PATTERN")]
    uname: Option<String>,
    /// Only bundles of this architecture (x86_64 or amd64, aarch64 or arm64, …).
    #[arg(long, value_name = "ARCH")]
    arch: Option<String>,
    /// A JSON array of entries, packages included (as --format json).
    #[arg(long)]
    json: bool,
    /// text, json, or kernel-crawler: falcosecurity/kernel-crawler's list.json for one architecture (--arch,
    /// default x86_64), Debian and Ubuntu kernels by its rules, for driverkit.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Also entries that are not shown: shadowed by a same-named entry (with the one served), and unnamed ones (with the reason).
    #[arg(long)]
    all: bool,
    /// Also unnamed entries (as --all does).
    #[arg(long, hide = true)]
    unnamed: bool,
    /// Cache directory whose last crawl result is merged (default: the configured one).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    view: ViewArgs,
}

/// The settings of a command that only looks: the file's, `--cache-dir`,
/// and the view's flags.
pub fn view_settings(base: &Settings, view: &ViewArgs, cache_dir: Option<&std::path::PathBuf>) -> Settings {
    super::settings(base, |s| {
        if let Some(d) = cache_dir {
            s.cache_dir = d.clone();
        }
        view.apply(s);
    })
}

/// Shell-style `*` and `?` matching, iterative (no recursion on input).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
    KernelCrawler,
}

/// One listed entry.
#[derive(serde::Serialize)]
struct Row {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    uname: Option<String>,
    arch: Option<String>,
    id: String,
    /// served, shadowed or unnamed.
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    served_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signed_by: Option<String>,
    packages: Vec<crate::manifest::Package>,
}

fn row(index: &Index, slot: u32) -> Option<Row> {
    let (id, spec, reason) = index.entry(slot)?;
    let served = index.is_served(slot);
    let (state, served_by) = match (&spec.name, served) {
        (None, _) => ("unnamed", None),
        (Some(_), true) => ("served", None),
        (Some(name), false) => {
            let t = index.kind_number(slot)?;
            ("shadowed", index.find_in_type(t, name).and_then(|s| index.id(s)).map(|i| i.hex()))
        }
    };
    Some(Row {
        arch: arch::of(&spec).map(str::to_string),
        kind: spec.kind,
        name: spec.name,
        uname: spec.uname,
        id: id.hex(),
        state,
        served_by,
        reason,
        signed_by: spec.signed_by,
        packages: spec.packages,
    })
}

impl ListArgs {
    fn keeps(&self, r: &Row) -> bool {
        let name = r.name.as_deref().unwrap_or("-");
        let label = format!("{}/{name}", r.kind);
        let uname = r.uname.as_deref().unwrap_or("");
        self.kind.as_deref().is_none_or(|k| k == r.kind)
            && self.pattern.as_deref().is_none_or(|p| glob(p, &label) || glob(p, name) || glob(p, uname))
            && self.uname.as_deref().is_none_or(|p| glob(p, uname))
            && self.arch.as_deref().is_none_or(|a| r.arch.as_deref() == Some(arch::canonical(a)))
    }
}

fn text_line(r: &Row, all: bool) -> String {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut line = format!("{}/{}  {}  {}  {}", r.kind, dash(&r.name), dash(&r.uname), dash(&r.arch), r.id);
    if all {
        match r.state {
            "shadowed" => line.push_str(&format!("  shadowed-by={}", dash(&r.served_by))),
            "unnamed" => line.push_str(&format!("  unnamed: {}", dash(&r.reason))),
            _ => line.push_str("  served"),
        }
    }
    line.push('\n');
    line
}

/// The slots to list, in (type, name) order: the served ones from the
/// index's own order; with `all`, every slot.
fn slots(index: &Index, all: bool) -> Vec<u32> {
    if !all {
        return crate::namespace::served_slots(index);
    }
    let mut every: Vec<(String, String, String, u32)> = (0..index.slot_count())
        .map(|s| {
            let kind = index.kind(s).unwrap_or_default().to_string();
            let name = index.name(s).unwrap_or("\u{10FFFF}").to_string();
            let id = index.id(s).map(|i| i.hex()).unwrap_or_default();
            (kind, name, id, s)
        })
        .collect();
    every.sort();
    every.into_iter().map(|(_, _, _, s)| s).collect()
}

pub fn run(mut args: ListArgs, base: &Settings) -> Result<ExitCode> {
    let settings = view_settings(base, &args.view, args.cache_dir.as_ref());
    let view = args.view.open(&settings)?;
    if args.format == Format::KernelCrawler {
        return kernel_crawler(&mut args, &view);
    }
    args.json |= args.format == Format::Json;
    let all = args.all || args.unnamed;
    let mut out = String::new();
    let mut first = true;
    if args.json {
        out.push_str("[\n");
    }
    for slot in slots(&view.index, all) {
        let Some(r) = row(&view.index, slot) else { continue };
        if !args.keeps(&r) {
            continue;
        }
        if args.json {
            if !first {
                out.push_str(",\n");
            }
            out.push_str(&serde_json::to_string(&r)?);
        } else {
            out.push_str(&text_line(&r, all));
        }
        first = false;
        if out.len() > 64 << 10 {
            super::print(&out)?;
            out.clear();
        }
    }
    if args.json {
        out.push_str("\n]\n");
    }
    super::print(&out)?;
    if first {
        if let Some(query) = args.pattern.as_deref().or(args.uname.as_deref()) {
            return Ok(no_match(&view, query, all));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// kernel-crawler's list for one architecture (its lists are per architecture).
fn kernel_crawler(args: &mut ListArgs, view: &View) -> Result<ExitCode> {
    args.arch.get_or_insert_with(|| "x86_64".to_string());
    let slots: Vec<u32> = slots(&view.index, false)
        .into_iter()
        .filter(|s| row(&view.index, *s).is_some_and(|r| args.keeps(&r)))
        .collect();
    let (records, left_out) = crate::lookup::falco::records(&view.index, &slots);
    if left_out > 0 {
        super::eprint(&format!("kpackfs: {left_out} bundles of types kernel-crawler's format has no rule for here (not Debian or Ubuntu) left out\n"));
    }
    super::print(&(serde_json::to_string_pretty(&records)? + "\n"))?;
    if records.is_empty() {
        if let Some(query) = args.pattern.as_deref().or(args.uname.as_deref()) {
            return Ok(no_match(view, query, false));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Nothing matched a pattern: say so on stderr with the closest names and
/// releases, and exit 1 (a script's `list PATTERN` must not look like success).
fn no_match(view: &View, query: &str, all: bool) -> ExitCode {
    let rows: Vec<Row> = slots(&view.index, all).into_iter().filter_map(|slot| row(&view.index, slot)).collect();
    let names = rows.iter().flat_map(|r| r.name.as_deref().into_iter().chain(r.uname.as_deref()));
    let bare = query.trim_matches('*');
    let closest = crate::lookup::suggest::closest(bare, names, 5);
    let hint =
        if closest.is_empty() { " (nothing close)".to_string() } else { format!("; closest: {}", closest.join(", ")) };
    super::eprint(&format!("kpackfs: no bundle matches {query:?} in {}{hint}\n", view.origin));
    ExitCode::from(1)
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("6.1.0-*-amd64", "6.1.0-56-amd64"));
        assert!(!glob("6.1.0-*-amd64", "6.1.0-56-arm64"));
        assert!(glob("debian/*", "debian/6.1.0-56-amd64"));
        assert!(glob("*", ""));
        assert!(glob("6.1.0-5?-*", "6.1.0-56-cloud-amd64"));
        assert!(!glob("a*b*c", &"ab".repeat(10_000)), "no blow-up on a long miss");
    }
}
