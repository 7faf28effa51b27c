//! kpackfs: the build headers of every distribution kernel, one path away.
//!
//! Module map (docs/design.md has the whole picture):
//! - [`manifest`]: the model, kernel-packer's format, names from package files.
//! - [`package`]: streaming .deb/.rpm/tar readers with hostile-input checks.
//! - [`staging`]: the in-memory tree packages extract into.
//! - [`layout`]: per-distribution normalisation into a relocatable bundle tree.
//! - [`assemble`]: package files → laid-out bundle tree (parallel extraction + layout).
//! - [`tgz`]: bundle tree → deterministic .tgz.
//! - [`pack`]: bundle tree → one cache file served by pread.
//! - [`source`]: where package bytes come from (HTTP, a directory, faults for tests).
//! - [`fetch`]: downloads with deadlines, retries and verification into the package store.
//! - [`cache`]: the LRU disk cache of packs, .tgz files and packages; single-flight builds.
//! - [`fs`]: the filesystem core (kpackfs types) and its fuser adapter.
//! - [`daemon`]: serving a mount: settings, refresh, lifecycle.
//! - [`crawl`]: repository crawling into package lists and the manifest.
//! - [`trust`]: keys and signature checks (gpgv; RPM gpgcheck).
//! - [`lookup`]: naming bundles: the served view, name forms, suggestions, `which`.
//! - [`cli`]: the command line.
//! - [`cpu`], [`files`], [`ids`], [`config`], [`util`]: shared pieces.

pub mod assemble;
pub mod cache;
pub mod cli;
pub mod config;
pub mod cpu;
pub mod crawl;
pub mod daemon;
pub mod fetch;
pub mod files;
pub mod fs;
pub mod ids;
pub mod layout;
pub mod lookup;
pub mod manifest;
pub mod metrics;
pub mod pack;
pub mod package;
pub mod publish;
pub mod remote;
pub mod serve;
pub mod source;
pub mod staging;
pub mod tgz;
pub mod trust;
pub mod util;
