//! `kpackfs bundle`: build one bundle .tgz.
//!
//! - `kpackfs bundle --type TYPE -o OUT.tgz PKG_FILE…` from local files;
//! - `kpackfs bundle NAME [--manifest FILE] -o OUT.tgz` downloads the entry's
//!   packages (sha256 and size checked where given), then builds.
//!
//! `-o` takes a file (written beside it, then renamed: a failure leaves the
//! old file or nothing), a device or FIFO (streamed), or `-` (stdout).

use super::FetchArgs;
use crate::assemble::{self, PackageFile};
use crate::config::Config;
use crate::fetch::{Fetcher, PackageStore};
use crate::files::{AtomicFile, Output};
use crate::lookup::resolve::resolve;
use crate::manifest::{bundle_id, simplify};
use crate::package::Limits;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args)]
pub struct BundleArgs {
    /// With --type: package files. Otherwise: one bundle, by name, TYPE/NAME or id.
    #[arg(required = true, value_name = "NAME | PKG_FILE")]
    inputs: Vec<String>,
    /// Build from local package files with this layout type (debian, ubuntu, redhat, oracle, suse, …).
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// The output .tgz: a file (replaced atomically), a device or FIFO, or - for stdout.
    #[arg(short, long, value_name = "OUT.tgz")]
    output: PathBuf,
    #[command(flatten)]
    view: super::ViewArgs,
    /// Largest uncompressed size of one bundle's contents (default 2G).
    #[arg(long, value_name = "SIZE")]
    max_bundle_size: Option<String>,
    #[command(flatten)]
    fetch: FetchArgs,
}

pub fn run(args: BundleArgs, config: &Config) -> Result<ExitCode> {
    let mut pairs = args.fetch.pairs();
    if let Some(v) = &args.max_bundle_size {
        pairs.push(("max_bundle_size", v.clone()));
    }
    let settings = super::settings(config, &pairs)?;
    // Decide where the output goes before any work: a bad -o fails at once.
    let output = Output::resolve(&args.output)?;
    let limits = Limits { max_total_bytes: settings.max_bundle_size, ..Limits::default() };
    // CPU work runs under a lease, taken only once the downloads are done
    // (looking packages up takes a lease of its own).
    let cpu = || crate::cpu::pool().lease(crate::cpu::cores());
    let (laid_out, write_back) = match &args.kind {
        Some(kind) => {
            let lease = cpu();
            (from_files(kind, &args.inputs, limits, lease.threads())?, None)
        }
        None => {
            let [name] = args.inputs.as_slice() else {
                bail!("give one bundle name (or --type TYPE with package files)");
            };
            from_manifest(name, &args, config, &settings, limits)?
        }
    };
    let lease = cpu();
    let (sha, size) = write_output(&laid_out.tree, &output, lease.threads())?;
    drop(lease);
    if let (Some((remote, id, runtime)), Output::File(path)) = (write_back, &output) {
        match runtime.block_on(remote.publish_id(&id, path, &sha)) {
            Ok(put) => log::info!(
                "bundle {id}: {} the remote tier {}",
                if put == crate::remote::Put::Created { "written to" } else { "already in" },
                remote.url()
            ),
            Err(e) => log::warn!("bundle {id}: not written to the remote tier {}: {e:#}", remote.url()),
        }
    }
    let summary = format!(
        "{}: {} ({} entries, {} bytes, sha256 {sha}) uname {}\n",
        args.output.display(),
        laid_out.meta.distro,
        laid_out.tree.items.len(),
        size,
        laid_out.meta.uname
    );
    // With the bundle on stdout, the summary goes to stderr.
    match output {
        Output::Stdout => super::eprint(&summary),
        _ => super::print(&summary)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn from_files(kind: &str, files: &[String], limits: Limits, threads: usize) -> Result<crate::layout::LaidOut> {
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
    assemble::assemble(assemble::Job { kind, id: &id, uname: None, signed_by: None, packages, limits, threads })
}

/// What to write back to the remote tier after a local build.
type WriteBack = Option<(Arc<crate::remote::Remote>, crate::ids::BundleId, tokio::runtime::Runtime)>;

fn from_manifest(
    key: &str,
    args: &BundleArgs,
    config: &Config,
    settings: &crate::daemon::settings::Settings,
    limits: Limits,
) -> Result<(crate::layout::LaidOut, WriteBack)> {
    // The same view a mount with these settings serves, or --mount's.
    let view = args.view.open(config, &args.fetch.pairs())?;
    let slot = resolve(&view.index, key)?;
    let (id, spec, _) = view.index.entry(slot).context("the index entry is unreadable")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let remote = settings.open_remote()?;
    if let Some(remote) = &remote {
        // The tier first: a verified bundle from it is what a build would make.
        let scratch = crate::files::private_temp_dir(&std::env::temp_dir(), "kpackfs-remote.")?;
        match runtime.block_on(remote.fetch_verified(&id, scratch.path(), limits)) {
            Ok(Some((_, tree))) => {
                let meta = crate::layout::Meta::from_tree(&tree).context("the fetched bundle has no BUNDLE_* files")?;
                log::info!("bundle {id}: from the remote tier {}", remote.url());
                return Ok((crate::layout::LaidOut { tree, meta }, None));
            }
            Ok(None) => {}
            Err(e) => log::warn!("bundle {id}: remote tier {}: {e:#}; building it from packages", remote.url()),
        }
    }
    let store = PackageStore::open(&settings.cache_dir.join("packages"))?;
    let fetcher = Fetcher::http(settings.fetch.clone(), store)?;
    let packages = runtime.block_on(assemble::download(&fetcher, &spec))?;
    let hex = id.hex();
    let lease = crate::cpu::pool().lease(crate::cpu::cores());
    let laid_out = assemble::assemble(assemble::Job::of(&spec, &hex, packages, limits, lease.threads()))?;
    drop(lease);
    let write_back = remote.filter(|r| !r.is_read_only()).map(|r| (r, id, runtime));
    Ok((laid_out, write_back))
}

/// Write the .tgz; returns its sha256 and size.
fn write_output(tree: &crate::layout::BundleTree, output: &Output, threads: usize) -> Result<(String, u64)> {
    use crate::tgz::write_hashed as stream;
    match output {
        Output::File(path) => {
            let mut out = AtomicFile::create(path)?;
            let result = stream(tree, out.file(), threads)?;
            out.commit()?;
            Ok(result)
        }
        Output::Stream(path) => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            stream(tree, file, threads)
        }
        Output::Stdout => stream(tree, std::io::stdout().lock(), threads),
    }
}
