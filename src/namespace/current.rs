//! The namespace being served, shared by everything that serves it (the
//! filesystem, the HTTP server, status): swapped whole on a reload, so a
//! reader keeps the one it started with.

use super::{Changes, Namespace};
use std::sync::{Arc, RwLock};

pub struct Current(RwLock<Arc<Namespace>>);

impl Current {
    pub fn new(namespace: Namespace) -> Arc<Current> {
        Arc::new(Current(RwLock::new(Arc::new(namespace))))
    }

    pub fn get(&self) -> Arc<Namespace> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Serve `new` (built on the current one, so slots stay) and say what
    /// it shows that the old one did not.
    pub fn replace(&self, new: Namespace) -> Changes {
        let new = Arc::new(new);
        let old = std::mem::replace(&mut *self.0.write().unwrap_or_else(|e| e.into_inner()), new.clone());
        new.changes_since(&old)
    }
}
