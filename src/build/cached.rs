//! The build for a cache (the mount and `kpackfs serve`): the producers the
//! cache runs when it has no good file of a bundle. A pack is [`build`]
//! into the cache's pack file (or installed from the tier's pack object),
//! and written back to the tier later with the .tgz; a .tgz is written
//! from the bundle's pack (byte-identical to the .tgz of the tree).

use super::{build, output, Env, Inputs, Job, Later, LaterTgz, Outputs, WriteBack};
use crate::cache::{Artefact, Cache, Kind, Outcome, Phase, Produce, Produced, Tgz, Waiter, Watch};
use crate::error::{BuildError, ErrorClass};
use crate::ids::BundleId;
use crate::manifest::BundleSpec;
use crate::pack::Pack;
use std::sync::Arc;
use std::time::Instant;

/// A bundle's packages, asked for only when a build must start (reading
/// them from the manifest index is wasted work for a cached bundle).
pub type SpecFn = Box<dyn FnOnce() -> Option<Arc<BundleSpec>> + Send>;

/// A cache and the build that fills it: what the filesystem and the HTTP
/// server read bundles through.
pub struct Bundles {
    cache: Arc<Cache>,
    env: Env,
}

/// A file of a bundle the cache can have built.
pub trait Buildable: Artefact {
    fn producer(bundles: Arc<Bundles>, id: BundleId, label: String, spec: SpecFn) -> Produce<Self>;
}

impl Buildable for Pack {
    fn producer(bundles: Arc<Bundles>, id: BundleId, label: String, spec: SpecFn) -> Produce<Pack> {
        Box::new(move || Box::pin(async move { bundles.make_pack(id, label, spec).await }))
    }
}

impl Buildable for Tgz {
    fn producer(bundles: Arc<Bundles>, id: BundleId, label: String, spec: SpecFn) -> Produce<Tgz> {
        Box::new(move || Box::pin(async move { bundles.make_tgz(id, label, spec).await }))
    }
}

fn internal(e: anyhow::Error) -> BuildError {
    BuildError::of(ErrorClass::Internal, &e)
}

impl Bundles {
    /// `env.cache` is set to `cache`: the build reports its phases and pins
    /// its packages there.
    pub fn new(cache: Arc<Cache>, mut env: Env) -> Arc<Bundles> {
        env.cache = Some(cache.clone());
        Arc::new(Bundles { cache, env })
    }

    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    pub fn env(&self) -> &Env {
        &self.env
    }

    /// The bundle's file if it is open (no allocation, no task).
    pub fn get<T: Artefact>(&self, id: &BundleId) -> Option<Arc<T>> {
        self.cache.get(id)
    }

    /// Call `waiter` with the bundle's file: at once if open, else after
    /// the cache's one flight (its stored file checked, or a build).
    /// `watch`: whether the waiter can leave early (see [`Watch`]).
    pub fn obtain<T: Buildable>(
        self: &Arc<Self>,
        id: BundleId,
        label: &str,
        spec: SpecFn,
        waiter: Waiter<T>,
        watch: Watch,
    ) {
        let produce = T::producer(self.clone(), id, label.to_string(), spec);
        self.cache.obtain(id, label, produce, waiter, watch);
    }

    /// [`Bundles::obtain`] as a future.
    pub async fn obtained<T: Buildable>(
        self: &Arc<Self>,
        id: BundleId,
        label: &str,
        spec: SpecFn,
        watch: Watch,
    ) -> Outcome<T> {
        let produce = T::producer(self.clone(), id, label.to_string(), spec);
        self.cache.obtained(id, label, produce, watch).await
    }

    async fn make_pack(
        self: Arc<Self>,
        id: BundleId,
        label: String,
        spec: SpecFn,
    ) -> Result<Produced<Pack>, BuildError> {
        let spec =
            spec().ok_or_else(|| BuildError::new(ErrorClass::NotFound, "the bundle is no longer in the manifest"))?;
        let out = self.cache.new_file(&id, Kind::Pack).map_err(internal)?;
        let job = Job { id, label: label.clone(), inputs: Inputs::Entry(spec.clone()) };
        let (me, again, pack_label) = (self.clone(), self.clone(), label.clone());
        let pack_spec = spec.clone();
        let later = Later {
            // This build's own flight: ready when it ends.
            pack: Box::new(move || {
                Box::pin(async move {
                    again.obtained::<Pack>(id, &pack_label, Box::new(move || Some(pack_spec)), Watch::Stays).await
                })
            }),
            tgz: Box::new(move || {
                Box::pin(async move {
                    let tgz = me.obtained::<Tgz>(id, &label, Box::new(move || Some(spec)), Watch::Stays).await?;
                    Ok(LaterTgz { tgz: me.cache.tgz_path(&id), sha256: tgz.sha256.clone() })
                })
            }),
        };
        let outputs = Outputs { pack: Some(out), tgz: None };
        let built = build(&self.env, &job, outputs, WriteBack::Later(later)).await?;
        let (pack, bytes) =
            built.written.pack.ok_or_else(|| BuildError::new(ErrorClass::Internal, "the build wrote no pack"))?;
        Ok(Produced { value: Arc::new(pack), bytes })
    }

    async fn make_tgz(self: Arc<Self>, id: BundleId, label: String, spec: SpecFn) -> Result<Produced<Tgz>, BuildError> {
        // The .tgz's own waiters say whether the pack is still wanted.
        let pack = self.obtained::<Pack>(id, &label, spec, Watch::Sibling).await?;
        self.cache.set_phase(id, Phase::Compressing);
        let started = Instant::now();
        let out = self.cache.new_file(&id, Kind::Tgz).map_err(internal)?;
        let dest = self.cache.tgz_path(&id);
        let (sha256, size) =
            crate::cpu::run(crate::cpu::cores(), move |threads| output::tgz_from_pack(&pack, out, threads)).await?;
        self.env.counters.timings.observe("compress", started.elapsed());
        log::info!("built {label}.tgz: {} in {:.2}s", crate::util::human_bytes(size), started.elapsed().as_secs_f64());
        let file = std::fs::File::open(&dest)
            .map_err(|e| internal(anyhow::Error::from(e).context(format!("opening {}", dest.display()))))?;
        Ok(Produced { value: Arc::new(Tgz::new(file, size, sha256)), bytes: size })
    }
}
