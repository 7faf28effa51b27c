//! The filesystem: a core that speaks kpackfs types ([`core`]), driven by
//! the kernel through a thin fuser adapter ([`fuse`], the only file that
//! knows fuser) or by tests directly.
//!
//! Speed comes from letting the kernel cache: content is immutable, so
//! entry and attribute TTLs are about 100 years, missing names inside
//! bundles get negative entries, OPEN is answered ENOSYS so page caches
//! survive across opens, bundle directories open with FOPEN_CACHE_DIR, and
//! readdirplus answers lookups in bulk. See docs/semantics.md for what the
//! filesystem promises.

pub mod core;
pub mod fuse;
pub mod ino;
pub mod meta;
mod procfd;
pub mod types;
pub mod waiting;

pub use self::core::{FsCore, Invalidator};
pub use meta::{FsFacts, MetaFile, MetaFiles};
pub use types::{Attr, Caller, Data, DirItem, Errno, FileKind, Lookup, Requests, Timed};
pub use waiting::{CallerProbe, ProcProbe};
