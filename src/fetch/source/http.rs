//! Packages over HTTP(S), through the one client (credentials, redirects).
//! The fetcher hands it concrete URLs: mirrors are applied by the fetcher,
//! which also decides what to try when a location fails.

use super::{Body, BoxFuture, PackageSource, Resume};
use crate::fetch::client::HttpClient;
use crate::fetch::error::{error_chain, FetchError};
use reqwest::header;

pub struct HttpSource {
    client: HttpClient,
}

impl HttpSource {
    pub fn new(client: HttpClient) -> HttpSource {
        HttpSource { client }
    }
}

struct HttpBody(reqwest::Response);

impl Body for HttpBody {
    fn chunk(&mut self) -> BoxFuture<'_, Result<Option<bytes::Bytes>, FetchError>> {
        Box::pin(async move {
            self.0.chunk().await.map_err(|e| match is_timeout(&e) {
                // The client's read timeout is the stall timeout.
                true => FetchError::Stalled { after_bytes: 0, timeout: std::time::Duration::ZERO },
                false => FetchError::Cut { after_bytes: 0, expected: None, cause: error_chain(&e.without_url()) },
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
    fn get<'a>(
        &'a self,
        url: &'a str,
        resume: Option<&'a Resume>,
    ) -> BoxFuture<'a, Result<super::Response, FetchError>> {
        Box::pin(async move {
            let mut headers = header::HeaderMap::new();
            if let Some(r) = resume {
                if let Ok(v) = header::HeaderValue::from_str(&format!("bytes={}-", r.offset)) {
                    headers.insert(header::RANGE, v);
                }
                if let Some(v) = r.validator.as_deref().and_then(|v| header::HeaderValue::from_str(v).ok()) {
                    headers.insert(header::IF_RANGE, v);
                }
            }
            let resp = self.client.get(url, &headers).await?;
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

    fn lookup<'a>(&'a self, url: &'a str, limit: u64) -> BoxFuture<'a, Result<Vec<u8>, FetchError>> {
        Box::pin(async move {
            let mut resp = self.client.get(url, &header::HeaderMap::new()).await?;
            match resp.status().as_u16() {
                200 => {}
                s => return Err(FetchError::Status(s)),
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::Cut {
                after_bytes: 0,
                expected: None,
                cause: error_chain(&e.without_url()),
            })? {
                if body.len() as u64 + chunk.len() as u64 > limit {
                    return Err(FetchError::TooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        })
    }
}
