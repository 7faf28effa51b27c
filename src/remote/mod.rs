//! The shared bundle tier on object storage: every host's cache reads a
//! bundle from it before building one from packages, and writes back what
//! it built, create-only, so a fleet downloads and builds each bundle once.
//!
//! `--remote URL`: `s3://bucket/prefix` (and S3-compatible stores through
//! `AWS_ENDPOINT_URL`), `gs://…`, `az://…`, `file:///path`, or read-only
//! `http(s)://…`, all through the `object_store` crate. Objects:
//!
//! ```text
//! <prefix>/by-id/<id>.tgz       the bundle, as `kpackfs bundle` writes it
//! <prefix>/by-id/<id>.sha256    "<sha256>  <id>.tgz\n" (sha256sum's format)
//! <prefix>/by-id/<id>.pack      the same bundle in the cache's pack format ([`packs`]: installs by a copy)
//! <prefix>/by-id/<id>.pack.sha256  the pack's digest, in the same format
//! <prefix>/by-id/<id>.building  a host is building it (create-only claim; removed when written)
//! <prefix>/bundle-<name>.tgz    collector's flat layout (`kpackfs publish --layout collector`)
//! <prefix>/packages/sha256/<sha256>         a verified package (the package tier, [`packages`])
//! <prefix>/packages/sha256/<sha256>.fetching a host is downloading it (claim)
//! ```
//! The claim makes the fleet build each bundle once: a host that finds a
//! bundle missing claims it before building; a host that finds it claimed
//! waits for it (up to [`CLAIM_TTL`]) instead of building it again.
//! A reader needs both by-id objects and checks the .tgz against the
//! digest; the cache then checks BUNDLE_CHECKSUM against the id. docs/
//! operations.md has the trust model.

mod health;
mod packages;
mod packs;
mod store;
mod tier;

pub use health::Health;
pub use packages::PackageLayer;
pub use packs::{check_index, pack_digest_key, pack_key, PackGot};
pub use store::{open_store, RemoteOptions};
pub use tier::{PackDest, TierRead, Upload, Wrote};

use crate::ids::BundleId;
use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sha2::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The largest digest object read.
const MAX_DIGEST_BYTES: u64 = 4096;

/// A bundle fetched from the tier into a local file, its digest checked.
#[derive(Debug)]
pub struct Fetched {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

/// What a create-only write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    /// Someone wrote it first (the same bytes: builds are deterministic).
    Present,
}

/// The tier holds other bytes under a bundle's id than this host built
/// (a damaged object, or a digest that does not describe it). That
/// bundle's write fails; the tier is not failing, so other writes go on.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Conflict(pub String);

/// One remote tier.
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    /// The URL as given, for messages (object_store never puts credentials in it).
    url: String,
    read_only: bool,
    opts: RemoteOptions,
    health: Health,
    /// Write-backs at once (each holds a whole .tgz in memory).
    writes: tokio::sync::Semaphore,
}

pub fn id_key(id: &BundleId) -> ObjectPath {
    ObjectPath::from(format!("by-id/{}.tgz", id.hex()))
}

pub fn digest_key(id: &BundleId) -> ObjectPath {
    ObjectPath::from(format!("by-id/{}.sha256", id.hex()))
}

pub fn claim_key(id: &BundleId) -> ObjectPath {
    ObjectPath::from(format!("by-id/{}.building", id.hex()))
}

/// A claim older than this is a host that died: build anyway.
pub const CLAIM_TTL: Duration = Duration::from_secs(180);

/// Clocks of hosts sharing a tier may disagree by this much unremarked.
const CLAIM_SKEW_SECS: i64 = 60;

/// What [`Remote::stream_to`] copied.
enum Copied {
    Whole { len: u64, sha256: String },
    OverLimit,
}

/// What [`Remote::fetch_or_wait`] ended with.
enum Got<T> {
    Found(T),
    /// Missing; this host took the claim (and must release it).
    Claimed,
    /// Missing and not claimed by this host (read-only, the claim could not
    /// be written, or its holder gave up or timed out): make it here.
    Unclaimed,
}

/// Collector's object name, as is: `ObjectPath::from` would percent-encode
/// the `~` of Ubuntu's backport names, which collector asks for literally.
pub fn collector_key(name: &str) -> Result<ObjectPath> {
    ObjectPath::parse(format!("bundle-{name}.tgz")).with_context(|| format!("bundle name {name:?}"))
}

fn not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl Remote {
    pub fn open(url: &str, opts: RemoteOptions) -> Result<Remote> {
        let (store, read_only) = open_store(url, &opts)?;
        Ok(Remote {
            store,
            url: url.to_string(),
            read_only: read_only || opts.read_only,
            health: Health::default(),
            writes: tokio::sync::Semaphore::new(2),
            opts,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The read and write backoffs (status, tests).
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Start reading an object of at most `limit` bytes; None when absent.
    async fn get_bounded(&self, key: &ObjectPath, limit: u64) -> Result<Option<object_store::GetResult>> {
        let got = match tokio::time::timeout(self.opts.stall, self.store.get(key)).await {
            Err(_) => bail!("no answer for {key} in {:?}", self.opts.stall),
            Ok(Err(e)) if not_found(&e) => return Ok(None),
            Ok(Err(e)) => return Err(anyhow!(e).context(format!("reading {key}"))),
            Ok(Ok(got)) => got,
        };
        if got.meta.size > limit {
            bail!("{key} is {} bytes, over the limit of {limit}", got.meta.size);
        }
        Ok(Some(got))
    }

    /// A small object's bytes, or None when absent.
    async fn get_small(&self, key: &ObjectPath, limit: u64) -> Result<Option<Vec<u8>>> {
        let Some(got) = self.get_bounded(key, limit).await? else { return Ok(None) };
        let bytes = tokio::time::timeout(self.opts.stall, got.bytes())
            .await
            .map_err(|_| anyhow!("{key} stalled"))?
            .with_context(|| format!("reading {key}"))?;
        Ok(Some(bytes.to_vec()))
    }

    /// The recorded digest of bundle `id`'s .tgz, if the tier has it.
    async fn digest(&self, id: &BundleId) -> Result<Option<String>> {
        self.recorded_digest(&digest_key(id)).await
    }

    /// The sha256 a digest object records ("<sha256>  <name>\n"), if the tier has it.
    async fn recorded_digest(&self, key: &ObjectPath) -> Result<Option<String>> {
        let Some(bytes) = self.get_small(key, MAX_DIGEST_BYTES).await? else { return Ok(None) };
        let text = String::from_utf8_lossy(&bytes);
        let sha = text.split_whitespace().next().unwrap_or_default().to_ascii_lowercase();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{key} does not hold a sha256");
        }
        Ok(Some(sha))
    }

    /// Copy `got` (the object at `key`) into `out`, hashing it, each wait
    /// bounded by the stall timeout; stops past `limit` bytes.
    async fn stream_to(
        &self,
        key: &ObjectPath,
        got: object_store::GetResult,
        out: &mut std::fs::File,
        limit: u64,
    ) -> Result<Copied> {
        let mut hasher = sha2::Sha256::new();
        let mut len = 0u64;
        let mut stream = got.into_stream();
        let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
        loop {
            let next = tokio::time::timeout(self.opts.stall, stream.next())
                .await
                .map_err(|_| anyhow!("{key} stalled: nothing for {:?}", self.opts.stall))?;
            let Some(chunk) = next else { break };
            let chunk = chunk.with_context(|| format!("reading {key}"))?;
            len += chunk.len() as u64;
            if len > limit {
                return Ok(Copied::OverLimit);
            }
            hasher.update(&chunk);
            w.write_all(&chunk).with_context(|| format!("writing what {key} holds"))?;
        }
        w.flush().with_context(|| format!("writing what {key} holds"))?;
        Ok(Copied::Whole { len, sha256: hex::encode(hasher.finalize()) })
    }

    /// Fetch bundle `id` into a new file in `dir` (a directory of ours),
    /// at most `limit` bytes, its sha256 checked against the recorded one.
    /// None: the tier does not have it. Every wait is bounded by the stall
    /// timeout, the whole by the deadline.
    pub async fn fetch(&self, id: &BundleId, dir: &Path, limit: u64) -> Result<Option<Fetched>> {
        let work = async {
            let Some(expected) = self.digest(id).await? else { return Ok(None) };
            let key = id_key(id);
            let Some(got) = self.get_bounded(&key, limit).await? else { return Ok(None) };
            // Removed on drop unless kept: a failed fetch leaves nothing.
            let mut out = tempfile::Builder::new()
                .prefix("remote-")
                .suffix(".tgz")
                .tempfile_in(dir)
                .with_context(|| format!("creating a file in {}", dir.display()))?;
            let Copied::Whole { len: size, sha256: actual } =
                self.stream_to(&key, got, out.as_file_mut(), limit).await?
            else {
                bail!("{key} is over the limit of {limit} bytes");
            };
            if actual != expected {
                bail!("{key} has sha256 {actual}, the tier records {expected}");
            }
            let (_, path) = out.keep().context("keeping the fetched bundle")?;
            Ok(Some(Fetched { path, sha256: actual, size }))
        };
        tokio::time::timeout(self.opts.deadline, work)
            .await
            .map_err(|_| anyhow!("fetching bundle {id} took over {:?}", self.opts.deadline))?
    }

    /// `fetch`; when it finds nothing, take the claim at `key` for this
    /// host (when `claim`), or wait for the host holding it and fetch what
    /// it writes.
    async fn fetch_or_wait<T, F, Fut>(&self, what: &str, key: &ObjectPath, claim: bool, fetch: F) -> Result<Got<T>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>>>,
    {
        if let Some(f) = fetch().await? {
            return Ok(Got::Found(f));
        }
        let now = crate::util::now_secs() as i64;
        let claimed_at = match self.store.head(key).await {
            Ok(meta) => meta.last_modified.timestamp(),
            Err(e) if not_found(&e) => {
                if !claim {
                    return Ok(Got::Unclaimed);
                }
                let stamp = format!("{}\n", crate::util::now_secs()).into_bytes();
                match self.put_new(key, stamp).await {
                    Ok(Put::Created) => return Ok(Got::Claimed),
                    Err(_) => return Ok(Got::Unclaimed),
                    // Claimed meanwhile by another host: wait for it below.
                    Ok(Put::Present) => now,
                }
            }
            Err(e) => return Err(anyhow!(e).context(format!("checking {key}"))),
        };
        if claimed_at > now + CLAIM_SKEW_SECS {
            // Another host's clock, or a hostile object: the wait below is
            // measured on our clock, so it ends within CLAIM_TTL anyway.
            log::warn!(
                "{what}: the tier's claim {key} is dated {}s in the future; waiting at most {}s for it",
                claimed_at - now,
                CLAIM_TTL.as_secs()
            );
        }
        let age = Duration::from_secs(now.saturating_sub(claimed_at).max(0) as u64);
        let Some(mut left) = CLAIM_TTL.checked_sub(age) else { return self.take_over(key, claim).await };
        // A build takes about a second: look often at first, then less.
        let started = std::time::Instant::now();
        while !left.is_zero() {
            let pause = if started.elapsed() < Duration::from_secs(20) {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(2)
            };
            tokio::time::sleep(pause.min(left)).await;
            left = left.saturating_sub(pause);
            if let Some(f) = fetch().await? {
                return Ok(Got::Found(f));
            }
            if !self.exists(key).await? {
                // Released without the object: that host failed; make it here.
                return Ok(Got::Unclaimed);
            }
        }
        self.take_over(key, claim).await
    }

    /// A claim older than [`CLAIM_TTL`] is a host that died: replace it by
    /// this host's (so this host drops it when done, and nothing stale is
    /// left). Two hosts taking over at once: one gets it, the other makes
    /// the thing unclaimed (double work, never a wrong result).
    async fn take_over<T>(&self, key: &ObjectPath, claim: bool) -> Result<Got<T>> {
        if !claim {
            return Ok(Got::Unclaimed);
        }
        let _ = tokio::time::timeout(self.opts.stall, self.store.delete(key)).await;
        let stamp = format!("{}\n", crate::util::now_secs()).into_bytes();
        Ok(match self.put_new(key, stamp).await {
            Ok(Put::Created) => Got::Claimed,
            _ => Got::Unclaimed,
        })
    }

    /// Drop this host's claim (after the bundle is written, or on failure).
    pub async fn release(&self, id: &BundleId) {
        if !self.read_only {
            let _ = tokio::time::timeout(self.opts.stall, self.store.delete(&claim_key(id))).await;
        }
    }

    /// Whether the tier has bundle `id` (its digest).
    pub async fn has_id(&self, id: &BundleId) -> Result<bool> {
        self.exists(&digest_key(id)).await
    }

    /// Whether another host holds a live claim on bundle `id` (one younger
    /// than [`CLAIM_TTL`]: an older one is a host that died, taken over by
    /// the build path). Ours never exists here: a build takes its claim
    /// after this is asked, and drops it before it returns.
    pub async fn claimed_elsewhere(&self, id: &BundleId) -> Result<bool> {
        let Some(meta) = self.head(&claim_key(id)).await? else { return Ok(false) };
        let age = (crate::util::now_secs() as i64).saturating_sub(meta.last_modified.timestamp());
        Ok(age < CLAIM_TTL.as_secs() as i64)
    }

    pub async fn has_named(&self, name: &str) -> Result<bool> {
        self.exists(&collector_key(name)?).await
    }

    async fn exists(&self, key: &ObjectPath) -> Result<bool> {
        Ok(self.head(key).await?.is_some())
    }

    /// `key`'s metadata, or None when absent; bounded by the stall timeout.
    async fn head(&self, key: &ObjectPath) -> Result<Option<object_store::ObjectMeta>> {
        match tokio::time::timeout(self.opts.stall, self.store.head(key)).await {
            Err(_) => bail!("no answer for {key} in {:?}", self.opts.stall),
            Ok(Ok(meta)) => Ok(Some(meta)),
            Ok(Err(e)) if not_found(&e) => Ok(None),
            Ok(Err(e)) => Err(anyhow!(e).context(format!("checking {key}"))),
        }
    }

    /// Create-only write of `bytes` at `key`.
    async fn put_new(&self, key: &ObjectPath, bytes: Vec<u8>) -> Result<Put> {
        if self.read_only {
            bail!("the tier {} is read-only here", self.url);
        }
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        let put = self.store.put_opts(key, PutPayload::from(bytes), opts);
        match tokio::time::timeout(self.opts.deadline, put).await {
            Err(_) => bail!("writing {key} took over {:?}", self.opts.deadline),
            Ok(Ok(_)) => Ok(Put::Created),
            Ok(Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. })) => {
                Ok(Put::Present)
            }
            Ok(Err(e)) => Err(anyhow!(e).context(format!("writing {key}"))),
        }
    }

    /// Write bundle `id` in the id layout: the .tgz, then its digest (a
    /// reader needs both, so it never sees a bundle without its digest).
    pub async fn publish_id(&self, id: &BundleId, tgz: &Path, sha256: &str) -> Result<Put> {
        let bytes = tokio::fs::read(tgz).await.with_context(|| format!("reading {}", tgz.display()))?;
        let first = self.put_new(&id_key(id), bytes).await?;
        if first == Put::Present {
            // Written by another host, or by us before a crash: it must be
            // the same bytes before its digest may vouch for it.
            if let Some(recorded) = self.digest(id).await? {
                return if recorded == sha256 {
                    Ok(Put::Present)
                } else {
                    Err(Conflict(format!("{} records sha256 {recorded}, this build made {sha256}", digest_key(id)))
                        .into())
                };
            }
            let there = self.fetch_unverified_sha(&id_key(id)).await?;
            if there != sha256 {
                let held = format!("{} holds other bytes (sha256 {there}); left for an operator", id_key(id));
                return Err(Conflict(held).into());
            }
        }
        let line = format!("{sha256}  {}.tgz\n", id.hex());
        self.put_new(&digest_key(id), line.into_bytes()).await?;
        Ok(first)
    }

    /// Write `tgz` as collector's `bundle-<name>.tgz`.
    pub async fn publish_named(&self, name: &str, tgz: &Path) -> Result<Put> {
        let bytes = tokio::fs::read(tgz).await.with_context(|| format!("reading {}", tgz.display()))?;
        self.put_new(&collector_key(name)?, bytes).await
    }

    /// The sha256 of an object's bytes (streamed).
    async fn fetch_unverified_sha(&self, key: &ObjectPath) -> Result<String> {
        let got = self.store.get(key).await.with_context(|| format!("reading {key}"))?;
        let mut stream = got.into_stream();
        let mut hasher = sha2::Sha256::new();
        while let Some(chunk) =
            tokio::time::timeout(self.opts.stall, stream.next()).await.map_err(|_| anyhow!("{key} stalled"))?
        {
            hasher.update(&chunk.with_context(|| format!("reading {key}"))?);
        }
        Ok(hex::encode(hasher.finalize()))
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.url)
    }
}

/// Check a bundle .tgz fetched from a tier: read it as the hostile input it
/// is (the tarball reader under the bundle limits), and require its
/// BUNDLE_CHECKSUM to be `id`. Returns its tree.
pub fn verify_bundle(path: &Path, id: &BundleId, limits: crate::package::Limits) -> Result<crate::layout::BundleTree> {
    let budget = crate::package::Budget::new(limits);
    let members = crate::package::read_package(path, &budget).context("reading the fetched bundle")?;
    let tree = crate::layout::from_bundle(members, limits).context("the fetched bundle")?;
    let meta = crate::layout::Meta::from_tree(&tree).context("the fetched bundle has no BUNDLE_* files")?;
    if meta.checksum != id.hex() {
        bail!("its BUNDLE_CHECKSUM is {:?}, not the bundle's id", meta.checksum);
    }
    Ok(tree)
}

/// The default of every remote timing, from the fetch settings.
pub fn options_from(fetch: &crate::fetch::FetchConfig, read_only: bool) -> RemoteOptions {
    RemoteOptions { stall: fetch.stall_timeout, deadline: fetch.deadline.min(Duration::from_secs(600)), read_only }
}
