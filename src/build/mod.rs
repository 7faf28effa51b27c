//! The one build path, shared by the mount, `kpackfs serve`, `kpackfs
//! bundle` and `kpackfs publish`: [`build`] takes a bundle from the remote
//! tier (a lower cache layer) or makes it from its inputs (its [`Recipe`]),
//! writes the outputs asked for (a pack, a .tgz), and writes what it made
//! back to the tier. Every failure is a [`BuildError`] with its class.
//!
//! A stored file's check on first use is the cache's (it only stores, and
//! knows its files); [`cached`] hands the cache the producers that call
//! this build for the mount and `serve`.

pub mod assemble;
pub mod cached;
pub mod image;
pub mod output;
pub mod recipe;
pub mod source;

pub use assemble::{extract_all, PackageFile};
pub use cached::Bundles;
pub use output::{Outputs, TgzOut, TgzWritten, Written};
pub use recipe::{Inputs, Recipe};

use crate::cache::{Cache, Phase};
use crate::error::{BuildError, ErrorClass};
use crate::fetch::Fetcher;
use crate::ids::BundleId;
use crate::layout::Meta;
use crate::observe::{bump, Counters};
use crate::package::Limits;
use crate::remote::{PackDest, Remote, TierRead, Upload, Wrote};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// What every build runs with.
#[derive(Clone)]
pub struct Env {
    pub fetcher: Fetcher,
    /// The shared tier: read before building, written after.
    pub tier: Option<Arc<Remote>>,
    pub limits: Limits,
    /// Bounds on a sandboxed source build.
    pub sandbox: source::sandbox::Limits,
    /// Bounds on reading a disk image.
    pub image: image::Limits,
    pub counters: Arc<Counters>,
    /// The cache the build is for (the mount, serve): phases for status,
    /// package pins, scratch space. None for `bundle` and `publish`.
    pub cache: Option<Arc<Cache>>,
}

/// One bundle to build.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: BundleId,
    /// `type/name`, for logs.
    pub label: String,
    pub inputs: Inputs,
}

/// Where the bundle came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The remote tier had it (verified).
    Tier,
    /// Made here from its inputs.
    Built,
}

/// The .tgz the mount writes back once it has it (path and sha256), from its cache.
pub struct LaterTgz {
    pub tgz: PathBuf,
    pub sha256: String,
}

/// A future of the cache, boxed: what the mount hands the write-back.
pub type Deferred<T> = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = Result<T, BuildError>> + Send>> + Send>;

/// A bundle's files to write back, as the mount's cache comes to have them:
/// its pack first (open once the build's flight ends), then its .tgz
/// (compressed from the pack). Hosts waiting on this host's claim install
/// the pack, so it goes before the compression, not after.
pub struct Later {
    pub pack: Deferred<Arc<crate::pack::Pack>>,
    pub tgz: Deferred<LaterTgz>,
}

/// Whether, and from what, a bundle made here goes to the tier.
pub enum WriteBack {
    /// Not written (the caller writes the tier itself, or must not).
    Never,
    /// From the .tgz output file (and a pack written beside it for the
    /// tier), before [`build`] returns.
    Output,
    /// In the background, from the files these give (the mount answers
    /// its readers first).
    Later(Later),
}

/// A build's result.
pub struct Built {
    pub origin: Origin,
    pub meta: Meta,
    /// Entries of the tree.
    pub entries: usize,
    pub written: Written,
    /// What writing back to the tier did (with [`WriteBack::Output`]).
    pub wrote_back: Option<Wrote>,
}

/// The one build: tier → inputs (gather, make) → outputs → write back.
pub async fn build(env: &Env, job: &Job, outputs: Outputs, write_back: WriteBack) -> Result<Built, BuildError> {
    // A type nothing can make fails before the tier or a download.
    let recipe = Recipe::of(job.inputs.kind())?;
    let tier = env.tier.clone().filter(|_| matches!(job.inputs, Inputs::Entry(_)));
    let mut outputs = outputs;
    // What goes to the tier gets its pack beside the .tgz: other hosts
    // install that by a copy. Written in a directory of ours, kept until
    // the write is done.
    let _pack_dir = match &tier {
        Some(t) if matches!(write_back, WriteBack::Output) && outputs.pack.is_none() && t.accepts_writes() => {
            let dir = scratch(env, "pack.")?;
            let dest = dir.path().join(format!("{}.pack", job.id.hex()));
            outputs.pack = Some(
                crate::files::AtomicFile::create_in(&dest, dir.path())
                    .map_err(|e| BuildError::of(ErrorClass::Internal, &e))?,
            );
            Some(dir)
        }
        _ => None,
    };
    let mut claimed = false;
    let mut result = make(env, job, recipe, tier.as_deref(), outputs, &mut claimed).await;
    match (&mut result, &tier) {
        (Ok(built), Some(tier)) if built.origin == Origin::Built => {
            built.wrote_back = write_back_to(env, job, tier, built, write_back, claimed).await;
        }
        // Waiting hosts build it themselves rather than wait out the claim.
        (Err(_), Some(tier)) if claimed => tier.release(&job.id).await,
        _ => {}
    }
    result
}

fn phase(env: &Env, id: BundleId, phase: Phase) {
    if let Some(cache) = &env.cache {
        cache.set_phase(id, phase);
    }
}

/// A private directory (what the tier sends, a raw image): in the cache's
/// `tmp/` (emptied when a mount starts), else in the system's temporary
/// directory (swept after a kill, see `scratch`).
pub enum Scratch {
    Cache(tempfile::TempDir),
    System(crate::scratch::Scratch),
}

impl Scratch {
    pub fn path(&self) -> &std::path::Path {
        match self {
            Scratch::Cache(dir) => dir.path(),
            Scratch::System(dir) => dir.path(),
        }
    }
}

fn scratch(env: &Env, prefix: &str) -> Result<Scratch, BuildError> {
    let made = match &env.cache {
        Some(cache) => cache.scratch(prefix).map(Scratch::Cache),
        None => crate::scratch::system(prefix).map(Scratch::System),
    };
    made.map_err(|e| BuildError::of(ErrorClass::Internal, &e))
}

async fn make(
    env: &Env,
    job: &Job,
    recipe: Recipe,
    tier: Option<&Remote>,
    outputs: Outputs,
    claimed: &mut bool,
) -> Result<Built, BuildError> {
    let started = Instant::now();
    let cores = crate::cpu::cores();
    if let Some(tier) = tier {
        phase(env, job.id, Phase::Remote);
        let dir = scratch(env, "remote.")?;
        // A pack and nothing else (the mount's cache): the tier's pack
        // object installs where the pack goes.
        let pack_to = match (&outputs.pack, &outputs.tgz) {
            (Some(out), None) => Some(PackDest {
                dest: out.dest().to_path_buf(),
                tmp_dir: crate::files::parent_dir(out.temp_path()).to_path_buf(),
            }),
            _ => None,
        };
        let read = tier.read_layer(&job.id, &job.label, dir.path(), pack_to.as_ref(), env.limits, &env.counters).await;
        let installed = |written: &Written, how: &str| {
            log::info!(
                "installed bundle {} from the remote tier{how}: {} in {:.2}s",
                job.label,
                crate::util::human_bytes(size_of(written)),
                started.elapsed().as_secs_f64()
            )
        };
        match read {
            TierRead::FoundPack(pack, bytes) => {
                let meta = pack
                    .meta()
                    .ok_or_else(|| BuildError::new(ErrorClass::Hostile, "the tier's pack has no BUNDLE_* files"))?;
                let entries = pack.len();
                // The pack output's own temporary file goes; the installed pack is at its name.
                drop(outputs);
                let written = Written { pack: Some((pack, bytes)), tgz: None };
                installed(&written, "'s pack");
                return Ok(Built { origin: Origin::Tier, meta, entries, written, wrote_back: None });
            }
            TierRead::Found(tree) => {
                let meta = Meta::from_tree(&tree)
                    .ok_or_else(|| BuildError::new(ErrorClass::Hostile, "the tier's bundle has no BUNDLE_* files"))?;
                let entries = tree.items.len();
                let want = if outputs.tgz.is_some() { cores } else { 1 };
                let written = crate::cpu::run(want, move |threads| output::write(&tree, outputs, threads)).await?;
                installed(&written, "");
                return Ok(Built { origin: Origin::Tier, meta, entries, written, wrote_back: None });
            }
            TierRead::Missing { claimed: c } => *claimed = c,
            TierRead::Unusable => {}
        }
    }
    let downloaded_before = env.counters.downloaded_bytes.load(Ordering::Relaxed);
    let gathered = recipe.gather(env, &job.id, &job.inputs).await?;
    let fetch_took = started.elapsed();
    env.counters.timings.observe("fetch", fetch_took);
    phase(env, job.id, Phase::Extracting);
    let extract_started = Instant::now();
    let (inputs, limits, hex, count) =
        (job.inputs.clone(), (env.limits, env.sandbox, env.image), job.id.hex(), gathered.count());
    // A build stops its sandbox when the cache finds nobody waits for it
    // (its flight's flag), or when its future is dropped mid-way.
    let cancel = env.cache.as_ref().and_then(|c| c.cancel_token(&job.id)).unwrap_or_default();
    let mut on_drop = CancelOnDrop(Some(cancel.clone()));
    let made = crate::cpu::run(cores, move |threads| {
        let laid_out = recipe.make(&gathered, &hex, &inputs, limits, threads, &cancel)?;
        let entries = laid_out.tree.items.len();
        output::write(&laid_out.tree, outputs, threads).map(|written| (laid_out.meta, entries, written))
    })
    .await;
    // Run to its end: a failure is the build's own, not a stop.
    on_drop.0 = None;
    let (meta, entries, written) = made?;
    if let Some(cache) = &env.cache {
        cache.forget_log(&job.id);
    }
    let extract_took = extract_started.elapsed();
    env.counters.timings.observe("extract", extract_took);
    bump(&env.counters.builds);
    // Approximate under concurrent builds: the counter is shared.
    let downloaded = env.counters.downloaded_bytes.load(Ordering::Relaxed).saturating_sub(downloaded_before);
    log::info!(
        "built bundle {} from {count} package(s) ({} downloaded): {} in {:.2}s (fetch {:.2}s, extract {:.2}s)",
        job.label,
        crate::util::human_bytes(downloaded),
        crate::util::human_bytes(size_of(&written)),
        started.elapsed().as_secs_f64(),
        fetch_took.as_secs_f64(),
        extract_took.as_secs_f64()
    );
    Ok(Built { origin: Origin::Built, meta, entries, written, wrote_back: None })
}

/// Sets the flag if dropped while still armed (the future was dropped).
struct CancelOnDrop(Option<Arc<std::sync::atomic::AtomicBool>>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(flag) = &self.0 {
            flag.store(true, Ordering::SeqCst);
        }
    }
}

fn size_of(written: &Written) -> u64 {
    written.pack.as_ref().map(|(_, bytes)| *bytes).or(written.tgz.as_ref().map(|t| t.size)).unwrap_or(0)
}

/// Write a bundle made here to the tier (create-only; a failure is the
/// tier's, never the build's), or drop this host's claim if it holds it.
async fn write_back_to(
    env: &Env,
    job: &Job,
    tier: &Arc<Remote>,
    built: &Built,
    write_back: WriteBack,
    claimed: bool,
) -> Option<Wrote> {
    let release = move |tier: Arc<Remote>, id: BundleId| async move {
        if claimed {
            tier.release(&id).await
        }
    };
    match write_back {
        WriteBack::Output => match &built.written.tgz {
            Some(TgzWritten { sha256, path: Some(path), .. }) => {
                let pack = built.written.pack.as_ref().map(|(p, _)| p);
                let up = Upload { tgz: Some((path, sha256)), pack, claimed };
                return Some(tier.write_layer(&job.id, &job.label, up, &env.counters).await);
            }
            _ => release(tier.clone(), job.id).await,
        },
        WriteBack::Later(files) if tier.accepts_writes() => {
            let (tier, id, label, counters) = (tier.clone(), job.id, job.label.clone(), env.counters.clone());
            tokio::spawn(async move {
                // The pack first, the claim kept: a failure here leaves the
                // .tgz to try (it is the bundle of record).
                match (files.pack)().await {
                    Ok(pack) => {
                        let up = Upload { tgz: None, pack: Some(&pack), claimed: false };
                        drop(tier.write_layer(&id, &label, up, &counters).await)
                    }
                    Err(e) => log::warn!("bundle {label}: its pack not written to the remote tier {}: {e}", tier.url()),
                }
                match (files.tgz)().await {
                    Ok(f) => {
                        let up = Upload { tgz: Some((&f.tgz, &f.sha256)), pack: None, claimed };
                        drop(tier.write_layer(&id, &label, up, &counters).await)
                    }
                    Err(e) => {
                        release(tier.clone(), id).await;
                        log::warn!("bundle {label}: not written to the remote tier {}: {e}", tier.url());
                    }
                }
            });
        }
        // The mount answers its readers first: the claim goes in the background.
        WriteBack::Later(_) => {
            tokio::spawn(release(tier.clone(), job.id));
        }
        WriteBack::Never => release(tier.clone(), job.id).await,
    }
    None
}
