//! Package files → laid-out bundle tree: check signatures, extract the
//! packages in parallel (in memory), stage them in a fixed order, run the
//! type's layout. Every failure has its class: a signature that does not
//! verify is `refused`; a package or layout that breaks a rule or a bound
//! is `hostile`.

use crate::error::{BuildError, ErrorClass};
use crate::layout::{self, Extracted, LaidOut, Request};
use crate::package::{self, Budget, Limits};
use crate::trust::keys::Keyring;
use std::path::PathBuf;

/// One package file of a bundle.
#[derive(Debug, Clone)]
pub struct PackageFile {
    pub path: PathBuf,
    /// The name errors use: the URL's file name, or the local file name.
    pub display: String,
    /// Staging order key (the simplified URL, as the id uses), so that the
    /// same packages in any manifest order give the same bundle.
    pub order_key: String,
}

pub struct Job<'a> {
    pub kind: &'a str,
    pub id: &'a str,
    pub uname: Option<&'a str>,
    /// The key every package must be signed by (the entry's `signed_by`).
    pub signed_by: Option<&'a str>,
    pub packages: Vec<PackageFile>,
    pub limits: Limits,
    /// Threads to extract with (the caller's CPU lease).
    pub threads: usize,
}

/// Check signatures, extract and lay out. Errors name the package and the cause.
pub fn assemble(job: Job<'_>) -> Result<LaidOut, BuildError> {
    let mut packages = job.packages;
    packages.sort_by(|a, b| a.order_key.cmp(&b.order_key));
    let budget = Budget::new(job.limits);
    let key = job
        .signed_by
        .map(Keyring::from_reference)
        .transpose()
        .map_err(|e| BuildError::of(ErrorClass::Hostile, &e.context("the entry's signed_by")))?;
    let extracted = extract_all(&packages, &budget, key.as_ref(), job.threads)?;
    let request = Request { kind: job.kind, checksum: job.id, uname: job.uname, limits: job.limits };
    layout::lay_out(&request, extracted).map_err(|e| BuildError::of(ErrorClass::Hostile, &e))
}

/// Extract every package with up to `threads` threads, each after its
/// signature is checked against `key` when there is one; results keep the
/// input order.
pub fn extract_all(
    packages: &[PackageFile],
    budget: &Budget,
    key: Option<&Keyring>,
    threads: usize,
) -> Result<Vec<Extracted>, BuildError> {
    let threads = threads.min(packages.len()).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut slots: Vec<Option<Result<Extracted, BuildError>>> = (0..packages.len()).map(|_| None).collect();
    let results = std::sync::Mutex::new(&mut slots);
    let work = || loop {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(p) = packages.get(i) else { return };
        let named = |class, e: anyhow::Error| BuildError::of(class, &e.context(format!("package {}", p.display)));
        let checked = match key {
            Some(key) => crate::trust::rpm_signature::check(&p.path, key)
                .map(drop)
                .map_err(|e| named(ErrorClass::Refused, e.context("gpgcheck"))),
            None => Ok(()),
        };
        let result = checked
            .and_then(|()| package::read_package(&p.path, budget).map_err(|e| named(ErrorClass::Hostile, e)))
            .map(|members| Extracted { file_name: p.display.clone(), members });
        if let Ok(mut slots) = results.lock() {
            slots[i] = Some(result);
        }
    };
    // The calling thread is one of the `threads` (it holds their lease).
    std::thread::scope(|s| {
        for _ in 1..threads {
            let _ = std::thread::Builder::new().name("kpackfs-extract".into()).spawn_scoped(s, work);
        }
        work();
    });
    slots
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(BuildError::new(ErrorClass::Internal, "extraction thread failed"))))
        .collect()
}

/// Download a bundle's packages concurrently (through the store), in
/// manifest order. Errors name the package and the cause.
pub async fn download(
    fetcher: &crate::fetch::Fetcher,
    spec: &crate::manifest::BundleSpec,
) -> Result<Vec<PackageFile>, BuildError> {
    let tasks: Vec<_> = spec
        .packages
        .iter()
        .cloned()
        .map(|pkg| {
            let fetcher = fetcher.clone();
            tokio::spawn(async move { fetcher.fetch(&pkg).await })
        })
        .collect();
    // Wait for every download, even after a failure: nothing of a failed
    // build goes on in the background.
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        let joined = task.await;
        results
            .push(joined.unwrap_or_else(|e| Err(BuildError::new(ErrorClass::Internal, format!("download task: {e}")))));
    }
    let mut files = Vec::with_capacity(results.len());
    for (result, pkg) in results.into_iter().zip(&spec.packages) {
        files.push(PackageFile {
            path: result?,
            display: crate::manifest::file_name_of(&pkg.url).to_string(),
            order_key: crate::manifest::simplify(&pkg.url),
        });
    }
    Ok(files)
}
