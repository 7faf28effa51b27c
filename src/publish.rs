//! `kpackfs publish`: fill a bucket (or a directory) ahead of time with
//! every selected bundle it lacks, in the id layout the remote tier reads
//! and/or collector's flat `bundle-<name>.tgz` layout (kernel-packer's
//! bucket). Idempotent (what is there is skipped), resumable after a kill
//! (writes are create-only and single-request: nothing partial is ever
//! visible), downloads overlapping the CPU-bound builds, which take CPU
//! leases (at most one busy thread per core). Each bundle goes through the
//! one build path (`build::build`) with the destination as its tier: a
//! copy there is read (and verified) rather than built again, and what is
//! built is written back in the id layout.

use crate::build::{self, Env, Inputs, Outputs, TgzOut, WriteBack};
use crate::ids::BundleId;
use crate::manifest::BundleSpec;
use crate::remote::{Put, Wrote};
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

/// What to write for each bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    pub layout: Layout,
    /// Its packages too, by sha256 (the package tier, the archive of record).
    pub packages: bool,
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

/// Publish one bundle: skip what the destination has, build (or read the
/// destination's copy), write. `env.tier` is the destination.
pub async fn publish_one(job: &Job, env: &Env, asked: Asked) -> Outcome {
    let result = async {
        let remote = env.tier.as_ref().ok_or_else(|| anyhow::anyhow!("no destination"))?;
        let layout = asked.layout;
        let need_id = layout.id() && !remote.has_id(&job.id).await?;
        let need_named = layout.collector() && !remote.has_named(&job.name).await?;
        let mut written = 0;
        if asked.packages {
            written += publish_packages(job, env, remote).await?;
        }
        if !need_id && !need_named {
            return Ok(if written > 0 { Outcome::Published(written) } else { Outcome::Present });
        }
        let scratch = crate::files::private_temp_dir(&std::env::temp_dir(), "kpackfs-publish.")?;
        let path = scratch.path().join(format!("{}.tgz", job.id.hex()));
        let out = crate::files::AtomicFile::create_in(&path, scratch.path())?;
        let outputs = Outputs { pack: None, tgz: Some(TgzOut::File(out)) };
        // The id layout is the tier's own write-back; without it, nothing goes there.
        let write_back = if need_id { WriteBack::Output } else { WriteBack::Never };
        let build_job = build::Job { id: job.id, label: job.label.clone(), inputs: Inputs::Entry(job.spec.clone()) };
        let built = build::build(env, &build_job, outputs, write_back).await?;
        // Written back by the build, unless the destination had it (a copy read back).
        match built.wrote_back {
            // The .tgz and its digest, and the pack and its digest with them.
            Some(Wrote::Put(Put::Created)) => written += if built.written.pack.is_some() { 4 } else { 2 },
            Some(Wrote::Put(Put::Present)) | None => {}
            Some(Wrote::Skipped) => anyhow::bail!("writes to {} are backing off after a failure", remote.url()),
            Some(Wrote::Failed(e)) => anyhow::bail!("{e}"),
        }
        if need_named && remote.publish_named(&job.name, &path).await? == Put::Created {
            written += 1;
        }
        Ok::<_, anyhow::Error>(if written > 0 { Outcome::Published(written) } else { Outcome::Present })
    }
    .await;
    result.unwrap_or_else(|e| Outcome::Failed(format!("{e:#}")))
}

/// The bundle's packages the destination lacks, fetched (from the local
/// store, else downloaded and verified) and written by sha256. Returns how
/// many were written.
async fn publish_packages(job: &Job, env: &Env, remote: &crate::remote::Remote) -> anyhow::Result<usize> {
    let mut written = 0;
    for pkg in &job.spec.packages {
        let Some(sha) = pkg.sha256.as_deref().map(str::to_ascii_lowercase) else { continue };
        if remote.has_package(&sha).await? {
            continue;
        }
        let path = env.fetcher.fetch(pkg).await?;
        if remote.publish_package(&sha, &path).await? == Put::Created {
            written += 1;
        }
    }
    Ok(written)
}

/// Called as each bundle ends (progress).
pub type OnDone = Arc<dyn Fn(&Job, &Outcome) + Send + Sync>;

/// Publish every job, `parallel` at a time; `done` is called as each ends.
/// `env.tier` is the destination.
pub async fn publish_all(jobs: Vec<Job>, env: Env, asked: Asked, parallel: usize, done: OnDone) -> Vec<(Job, Outcome)> {
    let limit = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let env = Arc::new(env);
    let tasks: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let (env, limit, done) = (env.clone(), limit.clone(), done.clone());
            tokio::spawn(async move {
                let _permit = limit.acquire_owned().await;
                let outcome = publish_one(&job, &env, asked).await;
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
