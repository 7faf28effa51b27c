//! `kpackfs bundle`: build one bundle .tgz.
//!
//! - `kpackfs bundle --type TYPE -o OUT.tgz PKG_FILE…` from local files;
//! - `kpackfs bundle NAME [--manifest FILE] -o OUT.tgz` downloads the entry's
//!   packages (sha256 and size checked where given), then builds.

use super::{load_manifest, FetchArgs};
use crate::build::{self, PackageFile};
use crate::config::Config;
use crate::fetch::{Fetcher, PackageStore};
use crate::manifest::{bundle_id, file_name_of, simplify};
use crate::package::Limits;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct BundleArgs {
    /// With --type: package files. Otherwise: one bundle, by name, TYPE/NAME or id.
    #[arg(required = true, value_name = "NAME | PKG_FILE")]
    inputs: Vec<String>,
    /// Build from local package files with this layout type (debian, ubuntu, redhat, oracle, suse, …).
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// The output .tgz (written atomically).
    #[arg(short, long, value_name = "OUT.tgz")]
    output: PathBuf,
    /// Manifest to look NAME up in (default: the shipped manifest).
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// kernel-packer package lists (*.txt) for a manifest of simplified names.
    #[arg(long, value_name = "DIR")]
    lists_dir: Option<PathBuf>,
    /// Largest uncompressed size of one bundle's contents.
    #[arg(long, value_name = "SIZE", default_value = "2G", value_parser = crate::util::parse_size)]
    max_bundle_size: u64,
    #[command(flatten)]
    fetch: FetchArgs,
}

pub fn run(args: BundleArgs, config: &Config) -> Result<ExitCode> {
    let limits = Limits { max_total_bytes: args.max_bundle_size, ..Limits::default() };
    let built = match &args.kind {
        Some(kind) => from_files(kind, &args.inputs, limits)?,
        None => {
            let [name] = args.inputs.as_slice() else {
                bail!("give one bundle name (or --type TYPE with package files)");
            };
            from_manifest(name, &args, config, limits)?
        }
    };
    let (sha, size) = write_output(&built.bundle, &args.output)?;
    println!(
        "{}: {} ({} entries, {} bytes, sha256 {sha}) uname {}",
        args.output.display(),
        built.meta.distro,
        built.bundle.entries.len(),
        size,
        built.meta.uname
    );
    Ok(ExitCode::SUCCESS)
}

fn from_files(kind: &str, files: &[String], limits: Limits) -> Result<crate::layout::Built> {
    let mut packages = Vec::new();
    for f in files {
        let path = PathBuf::from(f);
        if !path.is_file() {
            bail!("package {f}: no such file");
        }
        let display = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| f.clone());
        packages.push(PackageFile { order_key: simplify(&display), display, path });
    }
    let id = bundle_id(packages.iter().map(|p| p.display.as_str()));
    build::build(build::Job { kind, id: &id, uname: None, packages, limits })
}

fn from_manifest(key: &str, args: &BundleArgs, config: &Config, limits: Limits) -> Result<crate::layout::Built> {
    let manifest = load_manifest(args.manifest.as_deref(), args.lists_dir.as_deref())?;
    let (id, entry) = manifest.find(key)?;
    let store = PackageStore::open(&args.fetch.cache_dir(config).join("packages"))?;
    let fetcher = Fetcher::new(args.fetch.fetch_config(config)?, store)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let paths = runtime.block_on(async {
        let tasks: Vec<_> = entry
            .packages
            .iter()
            .cloned()
            .map(|pkg| {
                let fetcher = fetcher.clone();
                tokio::spawn(async move { fetcher.fetch(&pkg).await })
            })
            .collect();
        let mut paths = Vec::new();
        for (task, pkg) in tasks.into_iter().zip(&entry.packages) {
            paths.push((task.await.context("download task failed")??, pkg));
        }
        Ok::<_, anyhow::Error>(paths)
    })?;
    let packages = paths
        .into_iter()
        .map(|(path, pkg)| PackageFile {
            path,
            display: file_name_of(&pkg.url).to_string(),
            order_key: simplify(&pkg.url),
        })
        .collect();
    build::build(build::Job { kind: &entry.kind, id, uname: entry.uname.as_deref(), packages, limits })
}

/// Write the .tgz next to its destination, then rename: a failure leaves nothing.
fn write_output(bundle: &crate::layout::Bundle, output: &Path) -> Result<(String, u64)> {
    let tmp = crate::util::temp_path_beside(output);
    let result = (|| -> Result<(String, u64)> {
        let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let hashing = crate::bundle::HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        let hashing = crate::bundle::write_tgz(bundle, hashing)?;
        let (writer, sha, size) = hashing.finish();
        let file = writer.into_inner().map_err(|e| e.into_error()).context("flushing the output")?;
        file.sync_all().context("syncing the output")?;
        std::fs::rename(&tmp, output).with_context(|| format!("renaming into {}", output.display()))?;
        Ok((sha, size))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
