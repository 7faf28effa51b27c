//! The files under `/.kpackfs/` (status, status.json, metrics): rendered
//! by the daemon through [`MetaFiles`] (the filesystem does not know what
//! they say), held here so that one reader sees one rendering.
//!
//! A file is rendered at lookup and at a getattr by path (its size must be
//! known before a read), and served by read. A reader's own refreshes
//! (getattr from the open file, which the kernel sends before reading past
//! the size it has) keep its rendering, so one read sequence never mixes
//! two renderings. A new rendering gets a new mtime, which makes the
//! kernel drop its cached pages of the old one (FUSE_AUTO_INVAL_DATA).

use super::types::Requests;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Which file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaFile {
    Status,
    StatusJson,
    Metrics,
}

impl MetaFile {
    pub const ALL: [(MetaFile, &'static str); 3] =
        [(MetaFile::Status, "status"), (MetaFile::StatusJson, "status.json"), (MetaFile::Metrics, "metrics")];

    pub fn by_name(name: &str) -> Option<MetaFile> {
        MetaFile::ALL.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }
}

/// What only the filesystem knows, for the renderings.
pub struct FsFacts<'a> {
    /// FUSE requests served, per operation.
    pub requests: &'a Requests,
    /// Answers queued on builds.
    pub waiting: usize,
}

/// Renders the files (the daemon's status, a test's).
pub trait MetaFiles: Send + Sync {
    fn render(&self, file: MetaFile, fs: &FsFacts<'_>) -> Vec<u8>;
}

/// How long a reader's refreshes keep the rendering it started with.
const KEPT_RENDERING: Duration = Duration::from_secs(2);

#[derive(Clone, Copy)]
pub enum Freshness {
    /// A path walk or a stat by name: render anew.
    New,
    /// The reader's own refresh: keep what it is reading.
    Kept,
}

#[derive(Clone)]
pub struct Rendered {
    pub bytes: Arc<Vec<u8>>,
    pub at: SystemTime,
    made: Instant,
}

/// The current rendering of each file.
#[derive(Default)]
pub struct Renderings(Mutex<HashMap<MetaFile, Rendered>>);

impl Renderings {
    /// Render anew (an open sees the state as it is now), or keep the
    /// current rendering for a reader that has the file open (for up to
    /// `KEPT_RENDERING`: a reader that keeps the file open sees updates).
    pub fn render(&self, file: MetaFile, freshness: Freshness, with: impl FnOnce() -> Vec<u8>) -> Rendered {
        let mut rendered = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let keep_for = match freshness {
            Freshness::New => Duration::ZERO,
            Freshness::Kept => KEPT_RENDERING,
        };
        if let Some(r) = rendered.get(&file).filter(|r| r.made.elapsed() < keep_for) {
            return r.clone();
        }
        let r = Rendered { bytes: Arc::new(with()), at: SystemTime::now(), made: Instant::now() };
        rendered.insert(file, r.clone());
        r
    }

    /// The rendering a read continues, if there is one.
    pub fn current(&self, file: MetaFile) -> Option<Rendered> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&file).cloned()
    }
}
