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
//!
//! Many workers can fill one bucket at once (cron hosts, a Kubernetes
//! Indexed Job): each bundle is built under the tier's claim, so it is
//! built once; a bundle another worker is building is deferred to the end
//! of this worker's run rather than waited on, by then it is usually
//! there. `--shard I/N` splits the bundles by id so workers do not even
//! meet ([`Shard`]).

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

/// Worker `index` of `count`: the bundles whose id, read as a number, is
/// `index` modulo `count`. By id, not by position, so workers reading
/// manifests that list bundles in another order still split them the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// `I/N`, with 0 ≤ I < N.
    pub fn parse(v: &str) -> Result<Shard, String> {
        let (i, n) = v.split_once('/').ok_or_else(|| format!("{v:?}: expected I/N, such as 0/4"))?;
        let num = |x: &str| x.trim().parse::<u64>().map_err(|e| format!("{v:?}: {x:?}: {e}"));
        let (index, count) = (num(i)?, num(n)?);
        if count == 0 || index >= count {
            return Err(format!("{v:?}: I must be less than N, and N at least 1 (the shards of 4 are 0/4 to 3/4)"));
        }
        Ok(Shard { index, count })
    }

    pub fn holds(&self, id: &BundleId) -> bool {
        let mut lead = [0u8; 8];
        lead.copy_from_slice(&id.0[..8]);
        u64::from_be_bytes(lead) % self.count == self.index
    }
}

/// Which pass over the bundles this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// A bundle another worker is building is put off.
    First,
    /// Nothing is put off: the build path waits on the claim, then reads
    /// what was written (or builds it, if that worker gave up or died).
    Last,
}

/// What one pass did with a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Done(Outcome),
    /// Another worker holds its claim: tried again in the last pass.
    Deferred,
}

/// Publish one bundle: skip what the destination has, build (or read the
/// destination's copy), write. `env.tier` is the destination.
pub async fn publish_one(job: &Job, env: &Env, asked: Asked, pass: Pass) -> Step {
    let result = async {
        let remote = env.tier.as_ref().ok_or_else(|| anyhow::anyhow!("no destination"))?;
        let layout = asked.layout;
        let need_id = layout.id() && !remote.has_id(&job.id).await?;
        let need_named = layout.collector() && !remote.has_named(&job.name).await?;
        if (need_id || need_named) && pass == Pass::First && remote.claimed_elsewhere(&job.id).await? {
            return Ok(Step::Deferred);
        }
        let mut written = 0;
        if asked.packages {
            written += publish_packages(job, env, remote).await?;
        }
        if !need_id && !need_named {
            return Ok(Step::Done(published_or_present(written)));
        }
        let scratch = crate::scratch::system("publish.")?;
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
        Ok::<_, anyhow::Error>(Step::Done(published_or_present(written)))
    }
    .await;
    result.unwrap_or_else(|e| Step::Done(Outcome::Failed(format!("{e:#}"))))
}

fn published_or_present(written: usize) -> Outcome {
    if written > 0 {
        Outcome::Published(written)
    } else {
        Outcome::Present
    }
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
/// `env.tier` is the destination. Returns the outcomes and how many
/// bundles were deferred behind another worker's claim.
pub async fn publish_all(
    jobs: Vec<Job>,
    env: Env,
    asked: Asked,
    parallel: usize,
    done: OnDone,
) -> (Vec<(Job, Outcome)>, usize) {
    let limit = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let env = Arc::new(env);
    let mut out = Vec::with_capacity(jobs.len());
    let later = run_pass(jobs, &env, asked, &limit, &done, Pass::First, &mut out).await;
    let deferred = later.len();
    if deferred > 0 {
        log::info!("publish: {deferred} bundles were being built by other workers; taking them up again now");
    }
    let left = run_pass(later, &env, asked, &limit, &done, Pass::Last, &mut out).await;
    debug_assert!(left.is_empty(), "the last pass defers nothing");
    (out, deferred)
}

/// One pass over `jobs`: outcomes go to `out`, the deferred jobs are returned.
async fn run_pass(
    jobs: Vec<Job>,
    env: &Arc<Env>,
    asked: Asked,
    limit: &Arc<tokio::sync::Semaphore>,
    done: &OnDone,
    pass: Pass,
    out: &mut Vec<(Job, Outcome)>,
) -> Vec<Job> {
    let tasks: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let (env, limit, done) = (env.clone(), limit.clone(), done.clone());
            tokio::spawn(async move {
                let _permit = limit.acquire_owned().await;
                let step = publish_one(&job, &env, asked, pass).await;
                if let Step::Done(outcome) = &step {
                    done(&job, outcome);
                }
                (job, step)
            })
        })
        .collect();
    let mut deferred = Vec::new();
    for t in tasks {
        match t.await {
            Ok((job, Step::Done(outcome))) => out.push((job, outcome)),
            Ok((job, Step::Deferred)) => deferred.push(job),
            Err(e) => log::error!("publish task failed: {e}"),
        }
    }
    deferred
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_is_i_of_n_with_i_below_n() {
        assert_eq!(Shard::parse("3/4"), Ok(Shard { index: 3, count: 4 }));
        assert_eq!(Shard::parse(" 0 / 1 "), Ok(Shard { index: 0, count: 1 }));
        for bad in ["4/4", "0/0", "1", "/2", "a/2", "-1/2", "1/2/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_split_ids_between_them_each_id_in_one() {
        let ids: Vec<BundleId> = (0u8..64).map(|i| BundleId([i.wrapping_mul(37); 32])).collect();
        let shards: Vec<Shard> = (0..3).map(|index| Shard { index, count: 3 }).collect();
        for id in &ids {
            assert_eq!(shards.iter().filter(|s| s.holds(id)).count(), 1, "{id:?}");
        }
        for s in &shards {
            assert!(ids.iter().any(|id| s.holds(id)), "shard {} holds some", s.index);
        }
    }
}
