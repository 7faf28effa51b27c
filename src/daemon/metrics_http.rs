//! `--metrics ADDR`: the mount's Prometheus text over HTTP (GET /metrics),
//! the same rendering as `/.kpackfs/metrics`, served by `serve::run` with
//! its bounds on connections.

use super::status::Status;
use crate::fs::{FsCore, FsFacts};
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;

struct Metrics {
    status: Arc<Status>,
    core: Arc<FsCore>,
}

impl crate::serve::Handler for Metrics {
    async fn handle(&self, req: Request<hyper::body::Incoming>) -> crate::serve::Reply {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return crate::serve::plain(StatusCode::METHOD_NOT_ALLOWED, "GET and HEAD only");
        }
        if req.uri().path() != "/metrics" {
            return crate::serve::plain(StatusCode::NOT_FOUND, "not found (try /metrics)");
        }
        let (status, core) = (self.status.clone(), self.core.clone());
        let text = tokio::task::spawn_blocking(move || {
            let facts = FsFacts { requests: &core.requests, waiting: core.waiting().len() };
            crate::observe::prometheus::render(&status.report(&facts), &status.counters)
        })
        .await
        .unwrap_or_default();
        let mut r = Response::new(Full::new(Bytes::from(text)));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        r
    }
}

/// Bound before readiness, so a taken port fails the mount.
pub fn serve(
    runtime: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    status: Arc<Status>,
    core: Arc<FsCore>,
) -> Result<()> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("metrics: binding {addr}"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr().unwrap_or(addr);
    status.set_metrics_addr(addr.to_string());
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    let limits = crate::serve::Limits { connections: 16, ..Default::default() };
    let handler = Arc::new(Metrics { status, core });
    runtime.spawn(async move {
        if let Err(e) = crate::serve::run(listener, handler, limits, std::future::pending()).await {
            log::error!("metrics endpoint: {e:#}");
        }
    });
    log::info!("metrics at http://{addr}/metrics");
    Ok(())
}
