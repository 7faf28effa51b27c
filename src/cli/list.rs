//! `kpackfs list`: the manifest's bundles, one per line (`type/name uname id`),
//! or as JSON; unnamed entries with the reason.

use super::load_manifest;
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
    let manifest = load_manifest(args.manifest.as_deref(), args.lists_dir.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&manifest.entries)?);
        return Ok(ExitCode::SUCCESS);
    }
    for (id, e) in &manifest.entries {
        match (&e.name, &e.uname) {
            (Some(name), Some(uname)) => println!("{}/{name} {uname} {id}", e.kind),
            _ if args.unnamed => {
                println!("{}/- - {id} ({})", e.kind, manifest.unnamed.get(id).map_or("", String::as_str))
            }
            _ => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}
