//! Where package bytes come from, behind one trait.
//!
//! The fetcher ([`crate::fetch::Fetcher`]) owns everything that must hold
//! whatever the transport: timeouts, minimum rate and deadline, retries,
//! resume, size limits, verification and the package store. A source only
//! answers one request for one URL. So tests inject a directory source and
//! a faulty one (failures, stalls, cuts, corruption) and exercise the same
//! fetcher the mount uses, without a network.

mod dir;
#[cfg(feature = "test-doubles")]
mod faulty;
mod http;

pub use dir::DirSource;
#[cfg(feature = "test-doubles")]
pub use faulty::{Fault, FaultySource};
pub use http::HttpSource;

use crate::fetch::error::FetchError;
use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A request to continue a download at `offset`, only if the resource is
/// still the one `validator` named (HTTP `If-Range`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub offset: u64,
    pub validator: Option<String>,
}

/// The head of a response.
pub struct Response {
    /// The body continues at the requested resume offset (HTTP 206). When
    /// false, it is the whole resource from byte 0.
    pub partial: bool,
    /// The body's length, if announced.
    pub length: Option<u64>,
    /// A strong validator of the resource (ETag or Last-Modified), for resuming.
    pub validator: Option<String>,
    pub body: Box<dyn Body>,
}

/// A response body, chunk by chunk. `Ok(None)` is the end.
pub trait Body: Send {
    fn chunk(&mut self) -> BoxFuture<'_, Result<Option<bytes::Bytes>, FetchError>>;
}

/// One request for one URL. Errors: a status the source could not serve
/// (`FetchError::Status`), or a connection failure.
pub trait PackageSource: Send + Sync {
    fn get<'a>(&'a self, url: &'a str, resume: Option<&'a Resume>) -> BoxFuture<'a, Result<Response, FetchError>>;

    /// Where `url` is actually fetched from, for messages.
    fn location(&self, url: &str) -> String {
        crate::fetch::auth::redact(url)
    }

    /// A small answer (an archive's API), at most `limit` bytes.
    fn lookup<'a>(&'a self, url: &'a str, limit: u64) -> BoxFuture<'a, Result<Vec<u8>, FetchError>> {
        let _ = (url, limit);
        Box::pin(async { Err(FetchError::Status(404)) })
    }
}
