//! The fast tier: the filesystem core, the cache and the fetcher, driven
//! in-process with synthetic packages, a directory source and injected
//! faults. No root, no FUSE, no network, no apt (`.ci/quick` runs this
//! and the library's unit tests, under `unshare -n`).

mod build;
mod cache;
mod docs;
mod faults;
mod fs;
mod hardening;
mod harness;
mod layers;
mod metrics;
mod order;
mod remote;
mod synthetic;
