//! kpackfs: the build headers of every distribution kernel, one path away.
//!
//! Module map (docs/design.md has the whole picture):
//! - [`manifest`]: the model, kernel-packer's format, names from package files.
//! - [`package`]: streaming .deb/.rpm/tar readers with hostile-input checks.
//! - [`tree`]: the in-memory staging tree the packages extract into.
//! - [`layout`]: per-distribution normalisation into a relocatable bundle tree.
//! - [`bundle`]: bundle tree → deterministic .tgz.
//! - [`build`]: package files → bundle (parallel extraction + layout).
//! - [`fetch`]: HTTP downloads into the content-addressed package store.
//! - [`crawl`]: repository crawling into package lists and the manifest.
//! - [`cache`], [`pack`], [`fs`]: the mount's LRU disk cache and FUSE filesystem.
//! - [`cli`]: the command line.

pub mod build;
pub mod bundle;
pub mod cache;
pub mod cli;
pub mod config;
pub mod crawl;
pub mod fetch;
pub mod fs;
pub mod layout;
pub mod manifest;
pub mod pack;
pub mod package;
pub mod tree;
pub mod util;
