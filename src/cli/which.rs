//! `kpackfs which [KERNEL…]`: the path of a kernel's build directory (or
//! bundle directory, or .tgz) in a mount, and `--link` for
//! `/lib/modules/<release>/build`. docs/lookup.md has the recipes.

use super::ViewArgs;
use crate::daemon::mountpoint;
use crate::lookup::view::View;
use crate::lookup::which::{self, Kernel, OsRelease};
use crate::lookup::{link, resolve};
use crate::settings::Settings;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct WhichArgs {
    /// The kernel: a release (`uname -r`), a release and a version (`uname -v`, Falco's kernelversion or the
    /// package version), a package file name, or a bundle name (bundle-NAME.tgz, TYPE/NAME, id). None: the running kernel.
    #[arg(value_name = "KERNEL")]
    kernel: Vec<String>,
    /// The distribution: an os-release ID (debian, ubuntu, rocky, …) or a kpackfs type. Default for the running
    /// kernel: the host's /etc/os-release.
    #[arg(long, value_name = "ID")]
    distro: Option<String>,
    /// Print the bundle's .tgz instead.
    #[arg(long)]
    tgz: bool,
    /// Print the bundle directory instead (nothing is built).
    #[arg(long, conflicts_with = "tgz")]
    dir: bool,
    /// Make <modules-dir>/<release>/build a link to the build directory (never replacing a real one).
    #[arg(long, conflicts_with_all = ["tgz", "dir"])]
    link: bool,
    /// Remove that link, if it points into a kpackfs mount.
    #[arg(long, conflicts_with_all = ["tgz", "dir", "link"])]
    unlink: bool,
    /// driverkit's target (debian, ubuntu-generic, ubuntu-aws, …): with --kernelrelease (and --kernelversion),
    /// the kernel as a kernel-crawler list names it (kpackfs list --format kernel-crawler).
    #[arg(long, requires = "kernelrelease", conflicts_with = "kernel")]
    target: Option<String>,
    /// driverkit's kernelrelease (with --target).
    #[arg(long, requires = "target")]
    kernelrelease: Option<String>,
    /// driverkit's kernelversion (with --target): tells apart the uploads of one kernelrelease.
    #[arg(long, requires = "target")]
    kernelversion: Option<String>,
    /// Where the kernels' module directories are.
    #[arg(long, value_name = "DIR", default_value = "/lib/modules")]
    modules_dir: PathBuf,
    /// The host's root as seen from here (a container's view of the host, as Falco's HOST_ROOT): its
    /// etc/os-release and proc/sys/kernel/osrelease name the running kernel.
    #[arg(long, value_name = "DIR", default_value = "/")]
    host_root: PathBuf,
    /// Cache directory whose last crawl result is merged, without a mount (default: the configured one).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    view: ViewArgs,
}

/// Exit code when nothing (or more than one bundle) matches.
const NOT_FOUND: u8 = 3;

/// The distribution to narrow to: --distro, or the host's for its own kernel.
fn distribution(args: &WhichArgs, view: &View) -> Option<(String, Vec<String>)> {
    if let Some(d) = &args.distro {
        let mut types: Vec<String> =
            which::types_of_id(&d.to_ascii_lowercase()).iter().map(|t| t.to_string()).collect();
        if types.is_empty() {
            // A type name given as is (garden, cos, …).
            let known = (0..view.index.type_count() as u16).filter_map(|t| view.index.type_name(t));
            types.extend(known.into_iter().filter(|t| t == d).map(str::to_string));
        }
        return Some((d.clone(), types));
    }
    if args.kernel.is_empty() {
        let os = OsRelease::read(&args.host_root)?;
        return Some((os.describe(), os.types().iter().map(|t| t.to_string()).collect()));
    }
    None
}

/// The conventional mount point, tried first when no `--mount` is given.
pub(super) const DEFAULT_MOUNT: &str = "/kernels";

/// `--mount`, else every kpackfs mount here that answers, `/kernels` first.
fn the_mounts(args: &WhichArgs) -> Result<Vec<(PathBuf, View)>> {
    if let Some(m) = &args.view.mount {
        return Ok(vec![(m.clone(), View::of_mount(m)?)]);
    }
    let mut mounts = mountpoint::kpackfs_mounts();
    // Stable: /kernels first, the others in mount order.
    mounts.sort_by_key(|m| m != Path::new(DEFAULT_MOUNT));
    Ok(mounts
        .into_iter()
        .filter_map(|m| match View::of_mount(&m) {
            Ok(view) => Some((m, view)),
            Err(e) => {
                log::debug!("skipping the kpackfs mount at {}: {e:#}", m.display());
                None
            }
        })
        .collect())
}

/// What the mount's status says about a bundle that failed: its cause and
/// class, and the daemon's log file.
pub(super) fn why_failed(mnt: &Path, label: &str) -> String {
    let status: Option<serde_json::Value> = std::fs::read(mnt.join(".kpackfs/status.json"))
        .ok()
        .filter(|b| b.len() < 64 << 20)
        .and_then(|b| serde_json::from_slice(&b).ok());
    let Some(status) = status else { return "the daemon's log says why".into() };
    let log = status["cache_dir"].as_str().map(|d| Path::new(d).join("kpackfs.log").display().to_string());
    let log = log.unwrap_or_else(|| "the daemon's log".into());
    let failed = status["bundles"]
        .as_array()
        .and_then(|all| all.iter().find(|b| b["label"] == label))
        .filter(|b| b["state"] == "failed");
    match failed {
        Some(b) => format!(
            "{label} failed: {} ({}); retried in {} s; more in {log}",
            crate::util::printable(b["cause"].as_str().unwrap_or("?")),
            b["class"].as_str().unwrap_or("?"),
            b["retry_in_secs"].as_u64().unwrap_or(0)
        ),
        None => format!("{log} says why"),
    }
}

/// The kernel's slot in `view`, or why not.
fn locate(args: &WhichArgs, view: &View, kernel: &Kernel) -> Result<u32, String> {
    let distro = distribution(args, view);
    let types: Vec<&str> = distro.iter().flat_map(|(_, t)| t.iter().map(String::as_str)).collect();
    let narrowing = distro.as_ref().map(|(name, _)| (name.as_str(), types.as_slice()));
    which::find(&view.index, kernel, narrowing).map_err(|e| e.to_string())
}

/// The bundle of driverkit's (target, kernelrelease, kernelversion): the
/// kernel-crawler record that matches, else (driverkit's plain `ubuntu`, a
/// release as `uname -r` gives it) the release looked up among the
/// target's type.
fn locate_target(args: &WhichArgs, view: &View, target: &str) -> Result<u32, String> {
    let release = args.kernelrelease.clone().unwrap_or_default();
    let kind = if target.starts_with("ubuntu") { "ubuntu" } else { target };
    let slots: Vec<u32> =
        crate::namespace::served_slots(&view.index).into_iter().filter(|s| view.index.kind(*s) == Some(kind)).collect();
    let (records, _) = crate::lookup::falco::records(&view.index, &slots);
    let matching: Vec<&crate::lookup::falco::Record> = records
        .values()
        .flatten()
        .filter(|r| r.target == target && r.kernelrelease == release)
        .filter(|r| args.kernelversion.as_ref().is_none_or(|v| *v == r.kernelversion))
        .collect();
    match matching.as_slice() {
        [one] => return Ok(one.slot),
        [] => {}
        several => {
            let versions: Vec<&str> = several.iter().map(|r| r.kernelversion.as_str()).collect();
            return Err(format!(
                "{target} {release} has several kernelversions ({}): give --kernelversion",
                versions.join(", ")
            ));
        }
    }
    let version = args.kernelversion.as_deref().map(which::Version::parse);
    let kernel = Kernel::Release { release: release.clone(), version };
    which::find(&view.index, &kernel, Some((target, &[kind]))).map_err(|e| e.to_string())
}

pub fn run(args: WhichArgs, base: &Settings) -> Result<ExitCode> {
    let kernel = match &args.target {
        Some(_) => None,
        None => {
            Some(Kernel::from_args(&args.kernel, || which::running_release(&args.host_root)).map_err(|e| anyhow!(e))?)
        }
    };
    let mut candidates = if args.view.manifest.is_none() { the_mounts(&args)? } else { Vec::new() };
    if candidates.is_empty() {
        let settings = super::list::view_settings(base, &args.view, args.cache_dir.as_ref());
        candidates.push((args.view.mount.clone().unwrap_or_default(), args.view.open(&settings)?));
    }
    let several = candidates.len() > 1;
    // The first mount that serves the kernel; else the preferred one's answer.
    let mut first_error = None;
    let mut chosen = None;
    for (mount, view) in candidates {
        let found = match (&args.target, &kernel) {
            (Some(target), _) => locate_target(&args, &view, target),
            (None, Some(kernel)) => locate(&args, &view, kernel),
            (None, None) => Err("no kernel".to_string()),
        };
        match found {
            Ok(slot) => {
                chosen = Some((mount, view, slot));
                break;
            }
            Err(e) => {
                first_error.get_or_insert(format!("{e} (in {})", view.origin));
            }
        }
    }
    let Some((mount, view, slot)) = chosen else {
        let others = if several { "; no other kpackfs mount here serves it either" } else { "" };
        super::eprint(&format!("kpackfs: {}{others}\n", first_error.unwrap_or_default()));
        return Ok(ExitCode::from(NOT_FOUND));
    };
    if several {
        log::info!("using the mount at {} (it serves the kernel)", mount.display());
        super::eprint(&format!("kpackfs: from the mount at {}\n", mount.display()));
    }
    let mount = (!mount.as_os_str().is_empty()).then_some(mount);
    let (kind, name) = (
        view.index.kind(slot).context("unreadable index entry")?.to_string(),
        view.index.name(slot).unwrap_or_default().to_string(),
    );
    let release = view.index.uname(slot).unwrap_or(&name).to_string();
    let Some(mnt) = mount else {
        super::print(&format!("{kind}/{name}\n"))?;
        bail!("no kpackfs mount found for a path: mount one (kpackfs mount /kernels) or give --mount");
    };
    if !view.index.is_served(slot) {
        bail!("{} is not served by the mount (shadowed); name it by TYPE/NAME", resolve::describe(&view.index, slot));
    }
    let bundle = mnt.join(&kind).join(&name);
    if args.tgz {
        super::print(&format!("{}.tgz\n", bundle.display()))?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.dir {
        super::print(&format!("{}\n", bundle.display()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let ours = |p: &Path| mountpoint::kpackfs_mounts().iter().any(|m| p.starts_with(m)) || p.starts_with(&mnt);
    if args.unlink {
        let outcome = link::unlink(&args.modules_dir, &release, ours)?;
        super::print(&format!("{}: {outcome:?}\n", args.modules_dir.join(&release).join("build").display()))?;
        return Ok(ExitCode::SUCCESS);
    }
    // The build directory: reading BUNDLE_BUILD_DIR builds the bundle.
    let build_dir = std::fs::read_to_string(bundle.join("BUNDLE_BUILD_DIR")).with_context(|| {
        format!("reading {}/BUNDLE_BUILD_DIR ({})", bundle.display(), why_failed(&mnt, &format!("{kind}/{name}")))
    })?;
    let relative = build_dir.trim().trim_start_matches("./");
    let path = if relative.is_empty() || relative == "." { bundle.clone() } else { bundle.join(relative) };
    if args.link {
        let outcome = link::link(&args.modules_dir, &release, &path, ours)?;
        super::eprint(&format!("{}: {outcome:?}\n", args.modules_dir.join(&release).join("build").display()));
    }
    super::print(&format!("{}\n", path.display()))?;
    Ok(ExitCode::SUCCESS)
}
