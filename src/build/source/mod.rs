//! Source bundles: a kernel source tarball and the config the kernel was
//! built with, prepared (`make olddefconfig modules_prepare`) in a sandbox
//! with the compiler the config names, checked option for option against
//! that config, and trimmed to what out-of-tree module builds read. The
//! recipe for kernels with no headers package (COS, minikube, linuxkit,
//! any vanilla kernel); see docs/layouts.md for what such a bundle lacks.

pub mod cos;
pub mod input;
pub mod kconfig;
pub mod sandbox;
pub mod toolchain;
pub mod trim;

use crate::error::{BuildError, ErrorClass};
use crate::layout::{LaidOut, Meta};
use crate::package::{Budget, Item, Limits, Member};
use kconfig::Config;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The kernel release a bundle gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Exactly this (`--release`, Debian's `6.1.0-N-amd64`).
    Exact(String),
    /// The tree's own `make kernelversion` with this appended (COS `+`,
    /// linuxkit `-linuxkit`).
    Suffix(String),
}

/// One source build.
pub struct SourceJob<'a> {
    /// BUNDLE_DISTRO: `source`, `cos`, `minikube`, `linuxkit`.
    pub kind: &'a str,
    /// BUNDLE_CHECKSUM.
    pub id: &'a str,
    pub tarball: &'a Path,
    /// The config: a file, or a package or tarball holding a `.config`.
    pub config: ConfigInput<'a>,
    pub release: Release,
    pub limits: Limits,
    pub sandbox: sandbox::Limits,
    pub threads: usize,
    /// Set when nobody waits for the build any more.
    pub cancel: &'a AtomicBool,
    /// The toolchain published beside the kernel, where the host has no
    /// compiler whose banner is the config's.
    pub toolchain: Option<&'a cos::Toolchain>,
    /// Keeps a failed build's log tail where status can point (the cache's
    /// `logs/`), returning where.
    pub keep_log: Option<&'a KeepLog>,
}

/// Keeps a failed build's log, returning where.
pub type KeepLog = dyn Fn(&str) -> Option<PathBuf> + Send + Sync;

pub enum ConfigInput<'a> {
    File(&'a Path),
    /// Data kpackfs ships (with its origin recorded beside it).
    Shipped {
        name: &'a str,
        text: &'a str,
    },
}

/// The script the sandbox runs: extract the toolchain from fd 4 when
/// there is one (inside the sandbox: a hostile tarball never touches the
/// host's disk; the SDK's Rust parts are left out, as COS's devenv does),
/// extract stdin, prepare, write the tree to fd 3 (stdout; the log goes
/// to stderr).
const SCRIPT: &str = r#"set -eu
exec 3>&1 1>&2
release="$1"; suffix="$2"; jobs="$3"; toolchain="$4"; shift 4
if [ -n "$toolchain" ]; then
  echo "kpackfs: extracting the toolchain"
  mkdir /build/toolchain
  tar -x --no-same-owner --no-same-permissions -C /build/toolchain -f /proc/self/fd/4 \
    --exclude='usr/lib64/rustlib' --exclude='usr/lib64/libstd-*.so' --exclude='lib/libstd-*.so' \
    --exclude='lib/librustc*' --exclude='usr/lib64/librustc*'
  exec 4<&-
  "${toolchain}" --version | head -n 1
fi
mkdir /build/src
cd /build/src
tar -x --no-same-owner -f -
if [ -z "$release" ]; then release="$(make -s "$@" kernelversion)$suffix"; fi
echo "kpackfs: preparing $release"
make -s "$@" KERNELRELEASE="$release" olddefconfig
make -s "$@" KERNELRELEASE="$release" -j"$jobs" modules_prepare
tar -c --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -f - . >&3
"#;

/// Where compilers and tools are looked for (the sandbox sees `/usr`).
pub(crate) fn tool_dirs() -> Vec<PathBuf> {
    vec![PathBuf::from("/usr/bin")]
}

/// The kernel's source architecture from its config.
fn srcarch(config: &Config) -> Result<&'static str, String> {
    let host = std::env::consts::ARCH;
    let (arch, wanted_host) = if config.is_set("CONFIG_X86_64") || config.is_set("CONFIG_X86") {
        ("x86", "x86_64")
    } else if config.is_set("CONFIG_ARM64") {
        ("arm64", "aarch64")
    } else {
        return Err("the config is for an architecture kpackfs does not build (x86_64 and arm64 only)".into());
    };
    if host != wanted_host {
        return Err(format!("the kernel is {wanted_host}; this host ({host}) does not cross-build source bundles"));
    }
    Ok(arch)
}

/// Prepare the bundle. Errors: `refused` for a kernel this host cannot
/// prepare faithfully (compiler, architecture, a config that would
/// change), `hostile` for inputs or a build that fail, `internal` for a
/// sandbox that cannot start.
pub fn make(job: SourceJob<'_>) -> Result<LaidOut, BuildError> {
    let refused = |m: String| BuildError::new(ErrorClass::Refused, m);
    let hostile = |e: anyhow::Error| BuildError::of(ErrorClass::Hostile, &e);
    let config_files = match job.config {
        ConfigInput::File(path) => input::config_from(path).map_err(|e| hostile(e.context("the config")))?,
        ConfigInput::Shipped { name, text } => {
            input::ConfigFiles { text: text.to_string(), symvers: None, origin: format!("kpackfs's {name}") }
        }
    };
    let kernel = Config::parse(&config_files.text);
    if kernel.len() < 10 {
        return Err(BuildError::new(ErrorClass::Hostile, format!("{} is not a kernel config", config_files.origin)));
    }
    let arch = srcarch(&kernel).map_err(refused)?;
    let wanted = toolchain::Wanted::of(&kernel).map_err(refused)?;
    let compiler = match job.toolchain {
        Some(published) => {
            let host_cc = toolchain::host_cc(&tool_dirs())
                .ok_or_else(|| refused("a C compiler for the bundle's host programs (gcc) is not installed".into()))?;
            toolchain::published(&wanted, &kernel, &published.cc, published.cxx.as_deref(), &host_cc)
        }
        None => toolchain::choose(&wanted, &tool_dirs()).map_err(refused)?,
    };
    let path = match job.toolchain {
        Some(_) => "/build/toolchain/bin:/build/toolchain/usr/bin:/usr/bin:/bin",
        None => "/usr/bin:/bin",
    };
    let masked: Vec<PathBuf> = toolchain::probed_tools(&kernel)
        .into_iter()
        .filter(|(_, wanted)| !wanted)
        .flat_map(|(tool, _)| tool_dirs().into_iter().map(move |d| d.join(tool)))
        .filter(|p| p.exists())
        .collect();
    let sandbox = sandbox::Sandbox {
        limits: job.sandbox,
        masked,
        env: [
            ("PATH", path),
            ("HOME", "/build"),
            ("LC_ALL", "C"),
            ("TMPDIR", "/tmp"),
            ("KBUILD_BUILD_USER", "kpackfs"),
            ("KBUILD_BUILD_HOST", "kpackfs"),
            ("KBUILD_BUILD_TIMESTAMP", "1970-01-01"),
            ("SOURCE_DATE_EPOCH", "0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        fd4: job.toolchain.map(|t| t.tarball.clone()),
    };
    let (release, suffix) = match &job.release {
        Release::Exact(r) => (r.clone(), String::new()),
        Release::Suffix(s) => (String::new(), s.clone()),
    };
    if !release.is_empty() && !valid_release(&release) {
        return Err(BuildError::new(ErrorClass::Hostile, format!("release {release:?} is not a kernel release")));
    }
    let toolchain_cc = job.toolchain.map(|t| t.cc.clone()).unwrap_or_default();
    let mut args = vec![release, suffix, job.threads.max(1).to_string(), toolchain_cc, format!("ARCH={arch}")];
    args.extend(compiler.make_args());
    let source_limits =
        input::SourceLimits { max_bytes: sandbox.limits.scratch_bytes / 2, max_entries: job.limits.max_entries };
    let config_bytes = config_files.text.as_bytes();
    let output_limits = job.limits;
    let members = sandbox::run(
        &sandbox,
        SCRIPT,
        &args,
        job.cancel,
        |out| input::stream_source(job.tarball, arch, source_limits, &[(".config", config_bytes)], out).map(drop),
        |out| {
            let keep = |p: &str| trim::kept_output(p, arch);
            crate::package::read_tarball_where(
                BufReader::with_capacity(1 << 20, out),
                &Budget::new(output_limits),
                &keep,
            )
        },
    )
    .map_err(|f| {
        let class = if f.by_build { ErrorClass::Hostile } else { ErrorClass::Internal };
        let tail: Vec<&str> = f.log_tail.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        // A stopped build's log says nothing about the bundle.
        let stopped = job.cancel.load(std::sync::atomic::Ordering::SeqCst);
        let kept = job.keep_log.filter(|_| !stopped).and_then(|keep| keep(&f.log_tail));
        let whole = kept.map(|p| format!(" (its last 16 KiB: {})", p.display())).unwrap_or_default();
        BuildError::new(class, format!("{}; the build log ends: {}{whole}", f.cause, tail.join(" | ")))
    })?;
    finish(&job, members, &kernel, &compiler, &wanted, config_files)
}

fn file_text(members: &[Member], path: &str) -> Option<String> {
    members.iter().find(|m| m.path == path).and_then(|m| match &m.item {
        Item::File(blob) => Some(String::from_utf8_lossy(blob).into_owned()),
        _ => None,
    })
}

/// Check the prepared tree against the kernel's config and make the bundle.
fn finish(
    job: &SourceJob<'_>,
    mut members: Vec<Member>,
    kernel: &Config,
    compiler: &toolchain::Chosen,
    wanted: &toolchain::Wanted,
    config_files: input::ConfigFiles,
) -> Result<LaidOut, BuildError> {
    let prepared = file_text(&members, ".config")
        .map(|t| Config::parse(&t))
        .ok_or_else(|| BuildError::new(ErrorClass::Hostile, "the prepared tree has no .config"))?;
    let changed = kconfig::differences(kernel, &prepared);
    if !changed.is_empty() {
        let shown: Vec<&str> = changed.iter().take(12).map(String::as_str).collect();
        return Err(BuildError::new(
            ErrorClass::Refused,
            format!(
                "preparing with {} would change {} option(s) of the kernel's config ({}); install the kernel's compiler, {}",
                compiler.banner,
                changed.len(),
                shown.join(", "),
                wanted.describe()
            ),
        ));
    }
    // The release the headers carry (vermagic's): `include/config/kernel.release`
    // keeps the tree's own version, as Debian's packaged headers do.
    let release = file_text(&members, "include/generated/utsrelease.h")
        .and_then(|t| t.split('"').nth(1).map(str::to_string))
        .filter(|r| valid_release(r))
        .ok_or_else(|| BuildError::new(ErrorClass::Hostile, "the prepared tree has no kernel release"))?;
    if let Release::Exact(asked) = &job.release {
        if *asked != release {
            return Err(BuildError::new(ErrorClass::Hostile, format!("the tree says release {release}, not {asked}")));
        }
    }
    if let Some(symvers) = config_files.symvers {
        if !members.iter().any(|m| m.path == "Module.symvers") {
            members.push(Member {
                path: "Module.symvers".into(),
                item: Item::File(Arc::new(symvers)),
                mode: 0o644,
                mtime: 0,
            });
        }
    }
    if !compiler.exact {
        log::info!(
            "bundle {}: prepared with {} for a kernel built with {}; every option is the kernel's",
            job.id,
            compiler.banner,
            wanted.describe()
        );
    }
    let meta =
        Meta { checksum: job.id.to_string(), distro: job.kind.to_string(), uname: release, build_dir: ".".into() };
    crate::layout::from_prepared(members, meta, job.limits).map_err(|e| BuildError::of(ErrorClass::Hostile, &e))
}

/// A release as `uname -r` prints one: no spaces, quotes or slashes.
pub fn valid_release(release: &str) -> bool {
    !release.is_empty()
        && release.len() <= 64
        && release.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-~".contains(&b))
        && release.starts_with(|c: char| c.is_ascii_digit())
}
