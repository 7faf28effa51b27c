//! `kpackfs index MANIFEST…`: write the index beside a manifest
//! (`<manifest>.idx`, manifest::index::sidecar), so that a mount of it maps
//! the index instead of parsing the YAML. `kpackfs crawl` writes one itself;
//! this is for manifests made elsewhere.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct IndexArgs {
    /// Manifest files to index
    #[arg(value_name = "MANIFEST", required = true)]
    manifests: Vec<PathBuf>,
}

pub fn run(args: IndexArgs) -> Result<ExitCode> {
    for m in &args.manifests {
        let started = std::time::Instant::now();
        let counts = crate::manifest::index::sidecar::write(m).with_context(|| format!("indexing {}", m.display()))?;
        println!(
            "{}: {} in {:.2}s",
            crate::manifest::index::sidecar::path_for(m).display(),
            counts.summary(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}
