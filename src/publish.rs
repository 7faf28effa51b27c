//! `kpackfs publish`: fill a bucket (or a directory) ahead of time with
//! every selected bundle it lacks, in the id layout the remote tier reads
//! and/or collector's flat `bundle-<name>.tgz` layout (kernel-packer's
//! bucket). Idempotent (what is there is skipped), resumable after a kill
//! (writes are create-only and single-request: nothing partial is ever
//! visible), downloads overlapping the CPU-bound builds, which take CPU
//! leases (at most one busy thread per core).

use crate::assemble;
use crate::fetch::Fetcher;
use crate::ids::BundleId;
use crate::manifest::BundleSpec;
use crate::package::Limits;
use crate::remote::{Put, Remote};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which layouts to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// `by-id/<id>.tgz` and its digest: what `--remote` reads.
    Id,
    /// `bundle-<name>.tgz`: collector's bucket.
    Collector,
    Both,
}

impl Layout {
    fn id(self) -> bool {
        matches!(self, Layout::Id | Layout::Both)
    }
    fn collector(self) -> bool {
        matches!(self, Layout::Collector | Layout::Both)
    }
}

/// One bundle to publish.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: BundleId,
    /// `type/name`, for messages.
    pub label: String,
    pub name: String,
    pub spec: Arc<BundleSpec>,
}

/// What happened to one bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written (this many objects).
    Published(usize),
    /// Everything asked for was there already.
    Present,
    Failed(String),
}

/// Build the bundle's .tgz into `dir` (the tier's copy when it has one):
/// its path and sha256.
async fn tgz_of(
    job: &Job,
    remote: &Remote,
    fetcher: &Fetcher,
    dir: &Path,
    limits: Limits,
) -> Result<(PathBuf, String)> {
    // The tier's copy when it has one (the digest lookup is the probe).
    if let Some((f, _)) = remote.fetch_verified(&job.id, dir, limits).await? {
        return Ok((f.path, f.sha256));
    }
    let packages = assemble::download(fetcher, &job.spec).await?;
    let (spec, id, dir) = (job.spec.clone(), job.id, dir.to_path_buf());
    crate::cpu::run(crate::cpu::cores(), move |threads| -> Result<(PathBuf, String)> {
        let hex = id.hex();
        let laid_out = assemble::assemble(assemble::Job::of(&spec, &hex, packages, limits, threads))?;
        let path = dir.join(format!("{hex}.tgz"));
        let mut out = crate::files::AtomicFile::create_in(&path, &dir)?;
        let (sha, _) = crate::tgz::write_hashed(&laid_out.tree, out.file(), threads)?;
        out.commit()?;
        Ok((path, sha))
    })
    .await
}

/// Publish one bundle: skip what the destination has, build, write.
pub async fn publish_one(job: &Job, remote: &Remote, fetcher: &Fetcher, layout: Layout, limits: Limits) -> Outcome {
    let result = async {
        let need_id = layout.id() && !remote.has_id(&job.id).await?;
        let need_named = layout.collector() && !remote.has_named(&job.name).await?;
        if !need_id && !need_named {
            return Ok(Outcome::Present);
        }
        let scratch = crate::files::private_temp_dir(&std::env::temp_dir(), "kpackfs-publish.")?;
        let (tgz, sha) = tgz_of(job, remote, fetcher, scratch.path(), limits).await?;
        let mut written = 0;
        if need_id && remote.publish_id(&job.id, &tgz, &sha).await? == Put::Created {
            written += 2;
        }
        if need_named && remote.publish_named(&job.name, &tgz).await? == Put::Created {
            written += 1;
        }
        Ok::<_, anyhow::Error>(if written > 0 { Outcome::Published(written) } else { Outcome::Present })
    }
    .await;
    result.unwrap_or_else(|e| Outcome::Failed(format!("{e:#}")))
}

/// Called as each bundle ends (progress).
pub type OnDone = Arc<dyn Fn(&Job, &Outcome) + Send + Sync>;

/// Publish every job, `parallel` at a time; `done` is called as each ends.
pub async fn publish_all(
    jobs: Vec<Job>,
    remote: Arc<Remote>,
    fetcher: Fetcher,
    layout: Layout,
    limits: Limits,
    parallel: usize,
    done: OnDone,
) -> Vec<(Job, Outcome)> {
    let limit = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let tasks: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let (remote, fetcher, limit, done) = (remote.clone(), fetcher.clone(), limit.clone(), done.clone());
            tokio::spawn(async move {
                let _permit = limit.acquire_owned().await;
                let outcome = publish_one(&job, &remote, &fetcher, layout, limits).await;
                done(&job, &outcome);
                (job, outcome)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            Ok(r) => out.push(r),
            Err(e) => log::error!("publish task failed: {e}"),
        }
    }
    out
}
