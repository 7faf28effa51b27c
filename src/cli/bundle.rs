//! `kpackfs bundle`: build one bundle .tgz, through the one build path
//! (`build::build`).
//!
//! - `kpackfs bundle --type TYPE -o OUT.tgz PKG_FILE…` from local files;
//! - `kpackfs bundle --type source --release RELEASE -o OUT.tgz SOURCE CONFIG`
//!   prepares a kernel source tarball (or a package holding one) with its
//!   config (or a headers package or tarball holding it), in a sandbox;
//! - `kpackfs bundle NAME [--manifest FILE] -o OUT.tgz` takes it from the
//!   remote tier or downloads the entry's packages (sha256 and size checked
//!   where given), then builds, and writes what it built back to the tier.
//!
//! `-o` takes a file (written beside it, then renamed: a failure leaves the
//! old file or nothing), a device or FIFO (streamed), or `-` (stdout). A
//! failed build exits with its class's code (docs/operations.md).

use super::FetchArgs;
use crate::build::{self, Env, Inputs, Job, Outputs, PackageFile, TgzOut, WriteBack};
use crate::fetch::{Fetcher, PackageStore};
use crate::files::{AtomicFile, Output};
use crate::ids::BundleId;
use crate::lookup::resolve::resolve;
use crate::manifest::{bundle_id, simplify};
use crate::settings::{parse, Settings};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args)]
pub struct BundleArgs {
    /// With --type: package files. Otherwise: one bundle, by name, TYPE/NAME or id.
    #[arg(required = true, value_name = "NAME | PKG_FILE")]
    inputs: Vec<String>,
    /// Build from local package files with this layout type (debian, ubuntu, redhat, oracle, suse, …),
    /// or `source` from a kernel source tarball and its config.
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// With --type source: the kernel release (`uname -r` of the kernel the config belongs to).
    #[arg(long, value_name = "RELEASE", requires = "kind")]
    release: Option<String>,
    /// The output .tgz: a file (replaced atomically), a device or FIFO, or - for stdout.
    #[arg(short, long, value_name = "OUT.tgz")]
    output: PathBuf,
    #[command(flatten)]
    view: super::ViewArgs,
    /// Largest uncompressed size of one bundle's contents (default 2G).
    #[arg(long, value_name = "SIZE", value_parser = parse::size)]
    max_bundle_size: Option<u64>,
    #[command(flatten)]
    fetch: FetchArgs,
}

pub fn run(args: BundleArgs, base: &Settings) -> Result<ExitCode> {
    let settings = super::settings(base, |s| {
        args.fetch.apply(s);
        args.view.apply(s);
        super::max_bundle_size(s, args.max_bundle_size);
    });
    // Decide where the output goes before any work: a bad -o fails at once.
    let output = Output::resolve(&args.output)?;
    let job = match &args.kind {
        Some(kind) if kind == "source" => from_source(&args.inputs, args.release.as_deref())?,
        Some(_) if args.release.is_some() => bail!("--release is for --type source"),
        Some(kind) => from_files(kind, &args.inputs)?,
        None => {
            let [name] = args.inputs.as_slice() else {
                bail!("give one bundle name (or --type TYPE with package files)");
            };
            let view = args.view.open(&settings)?;
            let slot = resolve(&view.index, name)?;
            let (id, spec, _) = view.index.entry(slot).context("the index entry is unreadable")?;
            let label = format!("{}/{}", spec.kind, spec.name.as_deref().unwrap_or(&id.hex()));
            Job { id, label, inputs: Inputs::Entry(Arc::new(spec)) }
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let tier = crate::daemon::open_tier(&settings)?;
    let fetcher = Fetcher::http(settings.fetch.clone(), PackageStore::open(&settings.cache_dir.join("packages"))?)?;
    let env = Env {
        fetcher: crate::daemon::with_package_tier(fetcher, &settings, tier.as_ref(), true),
        tier,
        limits: settings.limits(),
        sandbox: crate::build::source::sandbox::Limits::of(&settings),
        image: crate::build::image::Limits::of(&settings),
        counters: Arc::default(),
        cache: None,
    };
    let (tgz, write_back) = match &output {
        Output::File(path) => (TgzOut::File(AtomicFile::create(path)?), WriteBack::Output),
        Output::Stream(path) => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            (TgzOut::Stream(Box::new(file)), WriteBack::Never)
        }
        Output::Stdout => (TgzOut::Stream(Box::new(std::io::stdout())), WriteBack::Never),
    };
    let outputs = Outputs { pack: None, tgz: Some(tgz) };
    let built = runtime
        .block_on(build::build(&env, &job, outputs, write_back))
        .map_err(|e| anyhow!(e.clone()).context(format!("bundle {}", job.label)))?;
    let tgz = built.written.tgz.context("the build wrote no .tgz")?;
    let summary = format!(
        "{}: {} ({} entries, {} bytes, sha256 {}) uname {}\n",
        args.output.display(),
        built.meta.distro,
        built.entries,
        tgz.size,
        tgz.sha256,
        built.meta.uname
    );
    // With the bundle on stdout, the summary goes to stderr.
    match output {
        Output::Stdout => super::eprint(&summary),
        _ => super::print(&summary)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A source bundle from a tarball, a config and the release.
fn from_source(inputs: &[String], release: Option<&str>) -> Result<Job> {
    let [tarball, config] = inputs else {
        bail!("--type source takes two files: the source tarball (or a package holding it) and the config");
    };
    let release = release.context("--type source needs --release RELEASE (the kernel's uname -r)")?;
    if !crate::build::source::valid_release(release) {
        bail!("--release {release:?} is not a kernel release");
    }
    for f in [tarball, config] {
        if !std::path::Path::new(f).is_file() {
            bail!("{f}: no such file");
        }
    }
    let name = |f: &String| PathBuf::from(f).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let hex = bundle_id([name(tarball), name(config), release.to_string()].iter().map(String::as_str));
    let id = BundleId::parse(&hex).context("the bundle id")?;
    Ok(Job {
        id,
        label: format!("source/{release}"),
        inputs: Inputs::Source { tarball: tarball.into(), config: config.into(), release: release.to_string() },
    })
}

fn from_files(kind: &str, files: &[String]) -> Result<Job> {
    let mut packages = Vec::new();
    for f in files {
        let path = PathBuf::from(f);
        if !path.is_file() {
            bail!("package {f}: no such file");
        }
        let display = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| f.clone());
        packages.push(PackageFile { order_key: simplify(&display), display, path });
    }
    let hex = bundle_id(packages.iter().map(|p| p.display.as_str()));
    let id = BundleId::parse(&hex).context("the bundle id")?;
    Ok(Job { id, label: format!("{kind}/{hex}"), inputs: Inputs::Files { kind: kind.to_string(), files: packages } })
}
