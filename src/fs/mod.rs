//! The filesystem: a core that speaks kpackfs types ([`core`]), driven by
//! the kernel through a thin fuser adapter ([`fuse`]) or by tests directly.
//!
//! Speed comes from letting the kernel cache: content is immutable, so
//! entry and attribute TTLs are about 100 years, missing names inside
//! bundles get negative entries, OPEN is answered ENOSYS so page caches
//! survive across opens, bundle directories open with FOPEN_CACHE_DIR, and
//! readdirplus answers lookups in bulk. See docs/semantics.md for what the
//! filesystem promises.

pub mod core;
pub mod fuse;
pub mod namespace;
mod procfd;
pub mod status;
pub mod types;
pub mod waiting;

pub use self::core::{FsCore, Invalidator, Requests};
pub use types::{Attr, Caller, Data, DirItem, Errno, FileKind, Lookup, Timed};
pub use waiting::{CallerProbe, ProcProbe};
