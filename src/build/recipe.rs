//! How a bundle is made from its inputs: the one place a new kind of
//! bundle plugs in. Today every type with a layout is made from header
//! packages (downloaded, checked, extracted, laid out); a kernel built
//! from source with its config, and a disk image's headers, are the next
//! recipes: each gathers its inputs and makes the same bundle tree, and
//! everything around it (the tier, the outputs, the cache, write-back,
//! errors) stays as it is. Kernels with no headers package (COS, minikube,
//! linuxkit, `kpackfs bundle --type source`) are prepared from their
//! source and config ([`super::source`]).

use super::assemble::{self, PackageFile};
use super::source::{self, ConfigInput, Release, SourceJob};
use super::Env;
use crate::cache::{Phase, Pinned};
use crate::error::{BuildError, ErrorClass};
use crate::ids::Sha256;
use crate::layout::{Family, LaidOut};
use crate::manifest::BundleSpec;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What a bundle is made from.
#[derive(Debug, Clone)]
pub enum Inputs {
    /// A manifest entry (its packages are downloaded).
    Entry(Arc<BundleSpec>),
    /// Local package files of a layout type (`kpackfs bundle --type`).
    Files { kind: String, files: Vec<PackageFile> },
    /// A local source tarball and config (`kpackfs bundle --type source`).
    Source { tarball: PathBuf, config: PathBuf, release: String },
}

impl Inputs {
    pub fn kind(&self) -> &str {
        match self {
            Inputs::Entry(spec) => &spec.kind,
            Inputs::Files { kind, .. } => kind,
            Inputs::Source { .. } => "source",
        }
    }
}

/// How to make a bundle of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipe {
    /// Header packages, extracted and laid out by the type's family.
    Packages(Family),
    /// A kernel source tree prepared with its config.
    Source(SourceKind),
    /// The build tree inside a disk image (Flatcar's and CoreOS's
    /// developer containers).
    Image,
}

/// Where a source build's tarball, config and release come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// Given as files, with the release.
    Files,
    /// `kernel-src.tar.gz`, the config inside `kernel-headers.tgz` (else
    /// the fallback config kpackfs ships), release `x.y.z+`.
    Cos,
    /// A kernel.org tarball and the minikube ISO's defconfig; the release
    /// is the tree's own.
    Minikube,
    /// A kernel.org tarball and the config of the linuxkit kernel image
    /// (shipped), release `x.y.z-linuxkit`.
    Linuxkit,
}

/// What a recipe gathered, kept (pinned in the cache) while it is used.
pub struct Gathered {
    files: Vec<PackageFile>,
    pinned: Option<Pinned>,
    /// A directory kpackfs made for what the recipe unpacks (an image).
    scratch: Option<super::Scratch>,
    /// The toolchain published beside a COS kernel, when it is needed.
    toolchain: Option<source::cos::Toolchain>,
    /// Where a failed source build's log goes (the cache's).
    keep_log: Option<Box<source::KeepLog>>,
}

impl Gathered {
    fn of(files: Vec<PackageFile>, pinned: Option<Pinned>) -> Gathered {
        Gathered { files, pinned, scratch: None, toolchain: None, keep_log: None }
    }

    pub fn count(&self) -> usize {
        self.files.len()
    }
}

impl Recipe {
    /// The recipe for a type: a type nothing can make fails here, before
    /// anything is downloaded.
    pub fn of(kind: &str) -> Result<Recipe, BuildError> {
        Ok(match kind {
            "source" => Recipe::Source(SourceKind::Files),
            "cos" => Recipe::Source(SourceKind::Cos),
            "minikube" => Recipe::Source(SourceKind::Minikube),
            "linuxkit" => Recipe::Source(SourceKind::Linuxkit),
            "coreos" => Recipe::Image,
            _ => Family::of(kind).map(Recipe::Packages).map_err(|e| BuildError::of(ErrorClass::Hostile, &e))?,
        })
    }

    /// Gather the inputs: download an entry's packages through the store
    /// (pinned in the cache, when there is one, from before the lookup
    /// until dropped).
    pub async fn gather(&self, env: &Env, id: &crate::ids::BundleId, inputs: &Inputs) -> Result<Gathered, BuildError> {
        let mut gathered = self.gather_inputs(env, id, inputs).await?;
        if *self == Recipe::Image {
            gathered.scratch = Some(super::scratch(env, "image.")?);
        }
        if let (Recipe::Source(_), Some(cache)) = (self, &env.cache) {
            let (cache, id) = (cache.clone(), *id);
            gathered.keep_log = Some(Box::new(move |text: &str| match cache.keep_log(&id, text) {
                Ok(path) => Some(path),
                Err(e) => {
                    log::warn!("bundle {id}: the build log was not kept: {e:#}");
                    None
                }
            }));
        }
        Ok(gathered)
    }

    async fn gather_inputs(
        &self,
        env: &Env,
        id: &crate::ids::BundleId,
        inputs: &Inputs,
    ) -> Result<Gathered, BuildError> {
        match inputs {
            Inputs::Files { files, .. } => Ok(Gathered::of(files.clone(), None)),
            Inputs::Source { .. } => Ok(Gathered::of(Vec::new(), None)),
            Inputs::Entry(spec) => {
                if let Some(cache) = &env.cache {
                    cache.set_phase(*id, Phase::Fetching);
                }
                let known: Vec<Sha256> =
                    spec.packages.iter().filter_map(|p| Sha256::parse(&env.fetcher.store().known_sha(p)?)).collect();
                let mut pinned = env.cache.as_ref().map(|c| c.pin(known));
                let files = assemble::download(&env.fetcher, spec).await?;
                if let Some(pinned) = &mut pinned {
                    let shas: Vec<(Sha256, std::path::PathBuf)> = files
                        .iter()
                        .filter_map(|f| {
                            let sha = Sha256::parse(&f.path.file_name()?.to_string_lossy())?;
                            Some((sha, f.path.clone()))
                        })
                        .collect();
                    pinned.add(&shas);
                }
                let mut gathered = Gathered::of(files, pinned);
                if *self == Recipe::Source(SourceKind::Cos) {
                    cos_extras(env, spec, &mut gathered).await?;
                }
                Ok(gathered)
            }
        }
    }

    /// Make the tree from what was gathered, with `threads` (the caller's lease).
    pub fn make(
        &self,
        gathered: &Gathered,
        id: &str,
        inputs: &Inputs,
        (limits, sandbox, image): (crate::package::Limits, source::sandbox::Limits, super::image::Limits),
        threads: usize,
        cancel: &AtomicBool,
    ) -> Result<LaidOut, BuildError> {
        if let Recipe::Source(kind) = self {
            return make_source(kind, gathered, (id, inputs), (limits, sandbox), threads, cancel);
        }
        if *self == Recipe::Image {
            return make_image(gathered, (id, inputs), (limits, image), threads, cancel);
        }
        let (uname, signed_by) = match inputs {
            Inputs::Entry(spec) => (spec.uname.as_deref(), spec.signed_by.as_deref()),
            Inputs::Files { .. } | Inputs::Source { .. } => (None, None),
        };
        assemble::assemble(assemble::Job {
            kind: inputs.kind(),
            id,
            uname,
            signed_by,
            packages: gathered.files.clone(),
            limits,
            threads,
        })
    }
}

/// What COS publishes beside a build: every file's `.md5` is compared,
/// and where this host has no compiler whose banner is the config's, the
/// toolchain the kernel was built with is fetched (once: it is a package
/// in the store, pinned while the build uses it).
async fn cos_extras(env: &Env, spec: &BundleSpec, gathered: &mut Gathered) -> Result<(), BuildError> {
    for (package, file) in spec.packages.iter().zip(&gathered.files) {
        source::cos::check_md5(&env.fetcher, &package.url, &file.path).await?;
    }
    let Some(src) = spec.packages.iter().find(|p| p.url.ends_with("kernel-src.tar.gz")) else { return Ok(()) };
    let headers = gathered.files.iter().find(|f| f.display.ends_with("kernel-headers.tgz")).map(|f| f.path.clone());
    let text = match headers {
        Some(path) => {
            let read = crate::cpu::run(1, move |_| source::input::config_from(&path)).await;
            match read {
                Ok(files) => files.text,
                // The build reports a bad config with its context.
                Err(_) => return Ok(()),
            }
        }
        None => COS_FALLBACK_CONFIG.to_string(),
    };
    let Ok(wanted) = source::toolchain::Wanted::of(&source::kconfig::Config::parse(&text)) else { return Ok(()) };
    if source::toolchain::choose(&wanted, &source::tool_dirs()).is_ok_and(|c| c.exact) {
        return Ok(());
    }
    let Some(toolchain) = source::cos::toolchain(&env.fetcher, &src.url).await? else { return Ok(()) };
    if let (Some(pinned), Some(sha)) =
        (gathered.pinned.as_mut(), toolchain.tarball.file_name().and_then(|n| Sha256::parse(&n.to_string_lossy())))
    {
        pinned.add(&[(sha, toolchain.tarball.clone())]);
    }
    let name = spec.name.as_deref().unwrap_or("?");
    log::info!("bundle {}/{name}: the kernel's toolchain is {}", spec.kind, toolchain.url);
    gathered.toolchain = Some(toolchain);
    Ok(())
}

/// An image bundle from the one image an entry (or `--type coreos`) gives.
fn make_image(
    gathered: &Gathered,
    (id, inputs): (&str, &Inputs),
    (limits, image_limits): (crate::package::Limits, super::image::Limits),
    threads: usize,
    cancel: &AtomicBool,
) -> Result<LaidOut, BuildError> {
    let [image] = gathered.files.as_slice() else {
        return Err(BuildError::new(ErrorClass::Hostile, "an image bundle takes exactly one image file"));
    };
    let scratch = gathered
        .scratch
        .as_ref()
        .ok_or_else(|| BuildError::new(ErrorClass::Internal, "no scratch directory for the image"))?;
    let release = match inputs {
        Inputs::Entry(spec) => spec.uname.as_deref(),
        _ => None,
    };
    super::image::make(super::image::ImageJob {
        id,
        image: &image.path,
        scratch: scratch.path(),
        release,
        limits,
        image_limits,
        threads,
        cancel,
    })
}

/// The fallback COS config kernel-packer used for builds without a
/// headers tarball (kernel-package-lists/configs/README.md).
const COS_FALLBACK_CONFIG: &str = include_str!("../../kernel-package-lists/configs/cos/config");

/// The linuxkit kernel configs kernel-packer shipped, by kernel version.
const LINUXKIT_CONFIGS: &[(&str, &str)] = &[
    ("4.9.125", include_str!("../../kernel-package-lists/configs/linuxkit/4.9.125-config")),
    ("4.9.184", include_str!("../../kernel-package-lists/configs/linuxkit/4.9.184-config")),
    ("4.14.131", include_str!("../../kernel-package-lists/configs/linuxkit/4.14.131-config")),
    ("4.19.76", include_str!("../../kernel-package-lists/configs/linuxkit/4.19.76-config")),
];

fn is_tarball(name: &str) -> bool {
    [".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar.zst", ".tar"].iter().any(|s| name.ends_with(s))
}

/// A source build's inputs by role, from the files an entry lists.
fn make_source(
    kind: &SourceKind,
    gathered: &Gathered,
    (id, inputs): (&str, &Inputs),
    (limits, sandbox): (crate::package::Limits, source::sandbox::Limits),
    threads: usize,
    cancel: &AtomicBool,
) -> Result<LaidOut, BuildError> {
    let missing = |what: &str| BuildError::new(ErrorClass::Hostile, format!("the entry has no {what}"));
    let find = |pred: &dyn Fn(&str) -> bool| gathered.files.iter().find(|f| pred(&f.display)).map(|f| f.path.as_path());
    let job = |tarball, config, release, name: &'static str| SourceJob {
        kind: name,
        id,
        tarball,
        config,
        release,
        limits,
        sandbox,
        threads,
        cancel,
        toolchain: gathered.toolchain.as_ref(),
        keep_log: gathered.keep_log.as_deref(),
    };
    let (tarball, config, release, name) = match (kind, inputs) {
        (SourceKind::Files, Inputs::Source { tarball, config, release }) => {
            (tarball.as_path(), ConfigInput::File(config), Release::Exact(release.clone()), "source")
        }
        (SourceKind::Cos, Inputs::Entry(_)) => {
            let tarball = find(&|n| n.ends_with("kernel-src.tar.gz")).ok_or_else(|| missing("kernel-src.tar.gz"))?;
            let config = match find(&|n| n.ends_with("kernel-headers.tgz")) {
                Some(headers) => ConfigInput::File(headers),
                None => ConfigInput::Shipped { name: "fallback COS config", text: COS_FALLBACK_CONFIG },
            };
            (tarball, config, Release::Suffix("+".into()), "cos")
        }
        (SourceKind::Minikube, Inputs::Entry(_)) => {
            let tarball = find(&|n| is_tarball(n)).ok_or_else(|| missing("kernel tarball"))?;
            let config = find(&|n| !is_tarball(n)).ok_or_else(|| missing("minikube defconfig"))?;
            (tarball, ConfigInput::File(config), Release::Suffix(String::new()), "minikube")
        }
        (SourceKind::Linuxkit, Inputs::Entry(_)) => {
            let file =
                gathered.files.iter().find(|f| is_tarball(&f.display)).ok_or_else(|| missing("kernel tarball"))?;
            let version = file
                .display
                .strip_prefix("linux-")
                .map(|v| v.split(".tar").next().unwrap_or("").to_string())
                .ok_or_else(|| missing("linux-<version> tarball"))?;
            let tarball = file.path.as_path();
            // A crawled entry carries its series' config (kernel-org
            // sources); kernel-packer's four use the configs it shipped.
            let config = match find(&|n| !is_tarball(n)) {
                Some(config) => ConfigInput::File(config),
                None => {
                    let text = LINUXKIT_CONFIGS.iter().find(|(v, _)| *v == version).map(|(_, text)| *text).ok_or_else(
                        || {
                            BuildError::new(
                                ErrorClass::Refused,
                                format!("kpackfs has no linuxkit config for {version}"),
                            )
                        },
                    )?;
                    ConfigInput::Shipped { name: "linuxkit config", text }
                }
            };
            (tarball, config, Release::Suffix("-linuxkit".into()), "linuxkit")
        }
        _ => return Err(BuildError::new(ErrorClass::Internal, "a source recipe was given package inputs")),
    };
    source::make(job(tarball, config, release, name))
}
