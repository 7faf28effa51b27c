//! kpackfs: the build headers of every distribution kernel, one path away.
//!
//! Module map, lowest floor first (docs/design.md has the whole picture;
//! `tests/quick/layers.rs` checks that imports only go down):
//! - [`defaults`], [`error`], [`util`], [`files`], [`ids`], [`cpu`]: shared pieces.
//! - [`manifest`]: the model, kernel-packer's format, names from package files.
//! - [`package`]: streaming .deb/.rpm/tar readers with hostile-input checks.
//! - [`staging`]: the in-memory tree packages extract into.
//! - [`layout`]: per-distribution normalisation into a relocatable bundle tree.
//! - [`trust`]: keys and signature checks (gpgv; RPM gpgcheck).
//! - [`tgz`], [`pack`]: bundle tree → deterministic .tgz; → one cache file served by pread.
//! - [`fetch`]: package downloads with deadlines, retries and verification (sources inside).
//! - [`crawl`]: repository crawling into package lists and the manifest.
//! - [`settings`]: every setting, typed, from flags, `-o` and the configuration file.
//! - [`observe`]: counters, the status report and its renderings (text, JSON, Prometheus).
//! - [`remote`]: the shared bundle tier on object storage, a lower cache layer.
//! - [`cache`]: the LRU disk cache; it only stores.
//! - [`build`]: the one build path (tier → inputs → outputs → write back).
//! - [`namespace`]: what is served, over the manifest index.
//! - [`lookup`]: naming bundles: views, name forms, suggestions, `which`.
//! - [`fs`]: the filesystem core (kpackfs types) and its fuser adapter.
//! - [`serve`], [`publish`]: bundles over HTTP; filling a bucket.
//! - [`daemon`]: serving a mount: lifecycle, refresh, status.
//! - [`cli`]: the command line.

pub mod build;
pub mod cache;
pub mod cli;
pub mod cpu;
pub mod crawl;
pub mod daemon;
pub mod defaults;
pub mod error;
pub mod fetch;
pub mod files;
pub mod fs;
pub mod ids;
pub mod layout;
pub mod lookup;
pub mod manifest;
pub mod namespace;
pub mod observe;
pub mod pack;
pub mod package;
pub mod publish;
pub mod remote;
pub mod scratch;
pub mod serve;
pub mod settings;
pub mod staging;
pub mod tgz;
pub mod trust;
pub mod util;
