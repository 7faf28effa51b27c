//! Packages over HTTP(S), with the mirror map applied at request time.

use super::{Body, BoxFuture, PackageSource, Resume};
use crate::fetch::error::{error_chain, FetchError};
use crate::fetch::mirror::MirrorMap;
use reqwest::header;

pub struct HttpSource {
    client: reqwest::Client,
    mirrors: MirrorMap,
}

impl HttpSource {
    pub fn new(client: reqwest::Client, mirrors: MirrorMap) -> HttpSource {
        HttpSource { client, mirrors }
    }
}

struct HttpBody(reqwest::Response);

impl Body for HttpBody {
    fn chunk(&mut self) -> BoxFuture<'_, Result<Option<bytes::Bytes>, FetchError>> {
        Box::pin(async move {
            self.0.chunk().await.map_err(|e| match is_timeout(&e) {
                // The client's read timeout is the stall timeout.
                true => FetchError::Stalled { after_bytes: 0, timeout: std::time::Duration::ZERO },
                false => FetchError::Cut { after_bytes: 0, expected: None, cause: error_chain(&e) },
            })
        })
    }
}

/// Whether a transfer error is a timeout anywhere in its source chain.
fn is_timeout(e: &reqwest::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        if err.downcast_ref::<reqwest::Error>().is_some_and(|r| r.is_timeout())
            || err.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        src = err.source();
    }
    false
}

/// A validator usable with If-Range: a strong ETag, else Last-Modified.
pub fn strong_validator(headers: &header::HeaderMap) -> Option<String> {
    let get = |name| headers.get(name).and_then(|v: &header::HeaderValue| v.to_str().ok()).map(str::to_string);
    get(header::ETAG).filter(|e| !e.starts_with("W/")).or_else(|| get(header::LAST_MODIFIED))
}

impl PackageSource for HttpSource {
    fn location(&self, url: &str) -> String {
        self.mirrors.rewrite(url)
    }

    fn get<'a>(
        &'a self,
        url: &'a str,
        resume: Option<&'a Resume>,
    ) -> BoxFuture<'a, Result<super::Response, FetchError>> {
        Box::pin(async move {
            let mut req = self.client.get(self.mirrors.rewrite(url));
            if let Some(r) = resume {
                req = req.header(header::RANGE, format!("bytes={}-", r.offset));
                if let Some(v) = &r.validator {
                    req = req.header(header::IF_RANGE, v.as_str());
                }
            }
            let resp = req.send().await.map_err(|e| FetchError::Connect(error_chain(&e)))?;
            let status = resp.status().as_u16();
            let partial = match status {
                200 => false,
                206 if resume.is_some() => true,
                s => return Err(FetchError::Status(s)),
            };
            Ok(super::Response {
                partial,
                length: resp.content_length(),
                validator: strong_validator(resp.headers()),
                body: Box::new(HttpBody(resp)),
            })
        })
    }
}
