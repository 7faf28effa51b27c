//! `kpackfs serve`: the namespace's `.tgz` files over HTTP, for hosts and
//! containers that cannot use FUSE, built on demand through the same cache
//! as a mount (one build however many ask).
//!
//! ```text
//! GET|HEAD /bundles/bundle-<name>.tgz     as the mount's /bundles/
//! GET|HEAD /<type>/<name>.tgz             as the mount's /<type>/
//! GET|HEAD /index.json                    every served bundle: type, name, uname, id, paths
//! ```
//! Range (one range), ETag (the .tgz's sha256) with If-None-Match and
//! If-Range; nothing else exists (route.rs). Connections are bounded in
//! number and time.

pub mod route;

use crate::build::cached::SpecFn;
use crate::build::Bundles;
use crate::cache::Tgz;
use crate::namespace::{Current, Namespace, TypeChild};
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use route::{byte_range, Route};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Limits of one server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more wait in the listen queue.
    pub connections: usize,
    /// Connections one client address may hold at once (default: a quarter
    /// of `connections`); more from it are closed at once, so that one
    /// client reconnecting in a loop cannot hold every slot.
    pub per_client: Option<usize>,
    /// Time to send a request's headers (also between keep-alive requests):
    /// short, so that idle sockets give their slot back soon.
    pub header_timeout: Duration,
    /// One connection, all of it.
    pub connection_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 256,
            per_client: None,
            header_timeout: Duration::from_secs(3),
            connection_deadline: Duration::from_secs(1800),
        }
    }
}

impl Limits {
    pub fn per_client(&self) -> usize {
        self.per_client.unwrap_or(self.connections / 4).clamp(1, self.connections.max(1))
    }
}

/// Connections held per client address.
#[derive(Default)]
struct Clients(Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One client's hold on a slot; given back on drop.
struct Held(Arc<Clients>, std::net::IpAddr);

impl Clients {
    fn take(self: &Arc<Self>, ip: std::net::IpAddr, cap: usize) -> Option<Held> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Held(self.clone(), ip))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

/// What the server answers from: the bundles (built on demand through the
/// cache) and the namespace being served (the daemon reloads it).
pub struct Service {
    bundles: Arc<Bundles>,
    namespace: Arc<Current>,
    /// index.json, made once per namespace.
    index_json: Mutex<Option<(usize, Bytes)>>,
}

/// A range of a mapped .tgz as a `Bytes` owner: bodies are sent from the
/// page cache without a copy.
struct TgzSlice(Arc<Tgz>, std::ops::Range<usize>);

impl AsRef<[u8]> for TgzSlice {
    fn as_ref(&self) -> &[u8] {
        self.0.mapped(self.1.clone())
    }
}

pub type Reply = Response<Full<Bytes>>;

pub fn plain(status: StatusCode, text: &str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    r
}

impl Service {
    pub fn new(bundles: Arc<Bundles>, namespace: Arc<Current>) -> Arc<Service> {
        Arc::new(Service { bundles, namespace, index_json: Mutex::new(None) })
    }

    pub fn namespace(&self) -> Arc<Namespace> {
        self.namespace.get()
    }

    fn index_json(&self, ns: &Namespace) -> Bytes {
        let slots = ns.index().slot_count() as usize;
        let mut cached = self.index_json.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((n, bytes)) = cached.as_ref().filter(|(n, _)| *n == slots) {
            let _ = n;
            return bytes.clone();
        }
        let index = ns.index();
        let rows: Vec<serde_json::Value> = crate::namespace::served_slots(index)
            .into_iter()
            .filter_map(|s| {
                let (kind, name) = (index.kind(s)?, index.name(s)?);
                Some(serde_json::json!({
                    "type": kind,
                    "name": name,
                    "uname": index.uname(s),
                    "id": index.id(s)?.hex(),
                    "tgz": format!("/{kind}/{name}.tgz"),
                    "bundle": format!("/bundles/bundle-{name}.tgz"),
                }))
            })
            .collect();
        let bytes = Bytes::from(serde_json::to_vec(&rows).unwrap_or_default());
        *cached = Some((slots, bytes.clone()));
        bytes
    }

    /// The bundle a route names.
    fn slot_of(ns: &Namespace, route: &Route) -> Option<u32> {
        match route {
            Route::Flat(name) => ns.flat_child(&format!("bundle-{name}.tgz")),
            Route::Typed(kind, name) => match ns.type_child(ns.type_by_name(kind)?, &format!("{name}.tgz"))? {
                TypeChild::Tgz(slot) => Some(slot),
                TypeChild::Dir(_) => None,
            },
            _ => None,
        }
    }

    async fn tgz(&self, ns: &Arc<Namespace>, slot: u32) -> Result<Arc<Tgz>, crate::error::BuildError> {
        let Some(info) = ns.bundle(slot) else {
            return Err(crate::error::BuildError::new(crate::error::ErrorClass::NotFound, "no such bundle"));
        };
        let ns2 = ns.clone();
        let spec: SpecFn = Box::new(move || ns2.spec(slot));
        self.bundles.obtained::<Tgz>(info.id, &info.label(), spec, crate::cache::Watch::Stays).await
    }

    pub async fn handle<B>(&self, req: Request<B>) -> Reply {
        let head = req.method() == Method::HEAD;
        if req.method() != Method::GET && !head {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "GET and HEAD only");
            r.headers_mut().insert(hyper::header::ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let route = route::route(req.uri().path());
        let ns = self.namespace();
        let (body, etag, content_type) = match &route {
            Route::NotFound => return plain(StatusCode::NOT_FOUND, "not found"),
            Route::Index => {
                let body = self.index_json(&ns);
                let etag = format!("\"{}\"", &crate::util::sha256_hex(&body)[..32]);
                (Body::Whole(body), etag, "application/json")
            }
            _ => {
                let Some(slot) = Self::slot_of(&ns, &route) else { return plain(StatusCode::NOT_FOUND, "not found") };
                match self.tgz(&ns, slot).await {
                    Ok(tgz) => {
                        let etag = format!("\"{}\"", tgz.sha256);
                        (Body::Tgz(tgz), etag, "application/gzip")
                    }
                    Err(cause) => {
                        let status = match cause.class {
                            crate::error::ErrorClass::NoSpace => StatusCode::INSUFFICIENT_STORAGE,
                            _ => StatusCode::SERVICE_UNAVAILABLE,
                        };
                        return plain(status, &format!("the bundle could not be built ({}): {cause}", cause.class));
                    }
                }
            }
        };
        let header = |name: hyper::header::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok());
        let mut r = Response::new(Full::new(Bytes::new()));
        let h = r.headers_mut();
        h.insert(hyper::header::ETAG, etag.parse().expect("an etag is a valid header"));
        h.insert(hyper::header::ACCEPT_RANGES, hyper::header::HeaderValue::from_static("bytes"));
        h.insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
        if header(hyper::header::IF_NONE_MATCH)
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
        {
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            return r;
        }
        let size = body.len();
        // If-Range with another validator: the whole, current body.
        let range_ok = header(hyper::header::IF_RANGE).is_none_or(|v| v.trim() == etag);
        let range = if range_ok { byte_range(header(hyper::header::RANGE), size) } else { None };
        let (start, end) = match range {
            None => (0, size),
            Some(Err(())) => {
                *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                let v = format!("bytes */{size}");
                r.headers_mut().insert(hyper::header::CONTENT_RANGE, v.parse().expect("a valid header"));
                return r;
            }
            Some(Ok((a, b))) => {
                *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                let v = format!("bytes {a}-{b}/{size}");
                r.headers_mut().insert(hyper::header::CONTENT_RANGE, v.parse().expect("a valid header"));
                (a, b + 1)
            }
        };
        r.headers_mut().insert(hyper::header::CONTENT_LENGTH, (end - start).into());
        if !head {
            match body.slice(start, end) {
                Ok(bytes) => *r.body_mut() = Full::new(bytes),
                Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("reading the bundle: {e}")),
            }
        }
        r
    }
}

enum Body {
    Whole(Bytes),
    Tgz(Arc<Tgz>),
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Whole(b) => b.len() as u64,
            Body::Tgz(t) => t.size,
        }
    }

    fn slice(&self, start: u64, end: u64) -> std::io::Result<Bytes> {
        match self {
            Body::Whole(b) => Ok(b.slice(start as usize..end as usize)),
            Body::Tgz(t) if t.is_mapped() => Ok(Bytes::from_owner(TgzSlice(t.clone(), start as usize..end as usize))),
            Body::Tgz(t) => {
                let len = u32::try_from(end - start).map_err(|_| std::io::Error::other("range too large to read"))?;
                t.read(start, len).map(Bytes::from)
            }
        }
    }
}

/// What answers the requests of one server (`kpackfs serve`, or a
/// mount's `--metrics` endpoint).
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request<hyper::body::Incoming>) -> impl std::future::Future<Output = Reply> + Send;
}

impl Handler for Service {
    fn handle(&self, req: Request<hyper::body::Incoming>) -> impl std::future::Future<Output = Reply> + Send {
        Service::handle(self, req)
    }
}

/// Accept and serve connections until `stop` resolves.
pub async fn run<H: Handler>(
    listener: tokio::net::TcpListener,
    service: Arc<H>,
    limits: Limits,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.connections.max(1)));
    let clients = Arc::new(Clients::default());
    tokio::pin!(stop);
    loop {
        // A permit before accepting: over the limit, clients wait in the listen queue.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.context("the connection limit closed")?,
            _ = &mut stop => return Ok(()),
        };
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    log::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => return Ok(()),
        };
        // One client over its share: closed at once, its slot freed for others.
        let Some(held) = clients.take(peer.ip(), limits.per_client()) else {
            log::debug!("connection from {peer}: over its {} connections, closed", limits.per_client());
            drop(stream);
            continue;
        };
        let service = service.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _held = held;
            let svc = hyper::service::service_fn(move |req| {
                let service = service.clone();
                async move { Ok::<_, std::convert::Infallible>(service.handle(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            match tokio::time::timeout(limits.connection_deadline, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::debug!("connection from {peer}: {e}"),
                Err(_) => log::debug!("connection from {peer}: over {:?}, closed", limits.connection_deadline),
            }
        });
    }
}
