//! A package tier below the sources: packages other hosts already
//! downloaded, kept by sha256 in shared storage (the fleet's bucket, issue
//! 23), and the archive of record for packages upstream deleted (issue 21).
//! The fetcher asks it first and gives it what it downloaded; the
//! implementation (`remote`, above this floor) keeps its own health and
//! never fails a fetch: anything wrong is "download it yourself".
//!
//! Nothing from the tier is trusted: what it sends is admitted into the
//! store only if size and sha256 are the manifest's, as from any mirror.

use super::source::BoxFuture;
use std::path::Path;

/// What asking the tier gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierGet {
    /// `dest` holds the package, its sha256 and size checked.
    Found,
    /// Download it here; `claimed`: this host holds the package's claim
    /// (other hosts wait for it rather than download it too), which
    /// `put` or `release` gives back.
    Download { claimed: bool },
}

pub trait PackageTier: Send + Sync {
    /// Write the package with this sha256 to `dest` (a new file in a
    /// directory of ours), at most `size` bytes when known.
    fn get<'a>(&'a self, sha256: &'a str, size: Option<u64>, dest: &'a Path) -> BoxFuture<'a, TierGet>;

    /// The package this host downloaded and verified, for the others
    /// (create-only); then releases the claim if `claimed`.
    fn put<'a>(&'a self, sha256: &'a str, path: &'a Path, claimed: bool) -> BoxFuture<'a, ()>;

    /// This host's download failed: release its claim.
    fn release<'a>(&'a self, sha256: &'a str) -> BoxFuture<'a, ()>;
}
