//! `kpackfs list`: the manifest's bundles, one per line (`type/name uname id`),
//! or as JSON; unnamed entries with the reason.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ListArgs {
    /// Manifest to list (default: the shipped manifest).
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// kernel-packer package lists (*.txt) for a manifest of simplified names.
    #[arg(long, value_name = "DIR")]
    lists_dir: Option<PathBuf>,
    /// Full entries as JSON (id → entry).
    #[arg(long)]
    json: bool,
    /// Also list entries that have no name, with the reason.
    #[arg(long)]
    unnamed: bool,
}

pub fn run(args: ListArgs) -> Result<ExitCode> {
    let manifest = crate::manifest::load_or_shipped(args.manifest.as_deref(), args.lists_dir.as_deref())?;
    if args.json {
        super::print(&(serde_json::to_string_pretty(&manifest.entries)? + "\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    for (id, e) in &manifest.entries {
        match (&e.name, &e.uname) {
            (Some(name), Some(uname)) => out.push_str(&format!("{}/{name} {uname} {id}\n", e.kind)),
            _ if args.unnamed => out.push_str(&format!(
                "{}/- - {id} ({})\n",
                e.kind,
                manifest.unnamed.get(id).map_or("", String::as_str)
            )),
            _ => {}
        }
    }
    super::print(&out)?;
    Ok(ExitCode::SUCCESS)
}
