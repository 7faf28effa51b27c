//! Prometheus text, rendered from the same report as status (so
//! `/.kpackfs/metrics`, `--metrics ADDR` and `status.json` always agree)
//! plus the duration histograms only metrics carry. prometheus-client (the
//! Prometheus project's own Rust client) does the text format: names,
//! HELP/TYPE lines, label escaping, `_total` suffixes.

use super::{Counters, Labels, Report};
use crate::error::ErrorClass;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let g: Gauge = Gauge::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, g);
}

fn label(k: &str, v: &str) -> Labels {
    vec![(k.to_string(), v.to_string())]
}

/// The Prometheus text exposition of a status report and the timings.
pub fn render(report: &Report, counters: &Counters) -> String {
    let mut r = Registry::with_prefix("kpackfs");
    let requests: Family<Labels, Counter> = Family::default();
    if let Some(ops) = report.requests.as_object() {
        for (op, n) in ops {
            requests.get_or_create(&label("op", op)).inc_by(n.as_u64().unwrap_or(0));
        }
    }
    r.register("fuse_requests", "FUSE requests served, by operation", requests);
    counter(&mut r, "hits", "Bundle accesses served without a build", report.hits);
    counter(&mut r, "misses", "Bundle accesses that needed a build or the remote tier", report.misses);
    let builds: Family<Labels, Counter> = Family::default();
    builds.get_or_create(&label("outcome", "ok")).inc_by(report.builds);
    builds.get_or_create(&label("outcome", "failed")).inc_by(report.failures);
    r.register("builds", "Bundle builds from packages, by outcome", builds);
    let classes: Family<Labels, Counter> = Family::default();
    for class in ErrorClass::ALL {
        classes.get_or_create(&label("class", class.name())).inc_by(counters.failures_of(class));
    }
    r.register("build_failures", "Failed bundle builds, by class (docs/operations.md)", classes);
    counter(&mut r, "downloaded_bytes", "Package bytes downloaded", Counters::get(&counters.downloaded_bytes));
    counter(&mut r, "evictions", "Cache entries evicted", report.evictions);
    counter(&mut r, "damaged", "Cached files found damaged and removed", report.damaged);
    gauge(&mut r, "cache_bytes", "Bytes the cache holds", report.cache_used);
    gauge(&mut r, "cache_budget_bytes", "The cache's byte budget", report.cache_budget);
    gauge(&mut r, "cache_bundles", "Bundles in the cache", report.cached_bundles as u64);
    gauge(&mut r, "cache_packages", "Packages in the cache", report.cached_packages as u64);
    gauge(&mut r, "cache_pinned_bytes", "Bytes of bundles pinned by kpackfs warm --pin", report.pinned_bytes);
    gauge(&mut r, "bundles", "Bundles the mount shows", report.bundles_total as u64);
    gauge(&mut r, "waiting_requests", "Requests waiting on a build", report.waiting as u64);
    if report.remote.is_some() {
        counter(&mut r, "remote_hits", "Bundles installed from the remote tier", report.remote_hits);
        counter(&mut r, "remote_writes", "Bundles written to the remote tier", report.remote_writes);
        counter(&mut r, "remote_errors", "Remote tier failures (each logged)", report.remote_errors);
    }
    let ok: Family<Labels, Gauge> = Family::default();
    let last_success: Family<Labels, Gauge> = Family::default();
    for (source, s) in &report.crawl_sources {
        ok.get_or_create(&label("source", source)).set(i64::from(s.state == "ok"));
        if let Some(at) = s.last_success {
            last_success.get_or_create(&label("source", source)).set(i64::try_from(at).unwrap_or(i64::MAX));
        }
    }
    r.register("crawl_source_ok", "1 if the source's last crawl succeeded", ok);
    r.register("crawl_source_last_success_seconds", "Unix time of the source's last successful crawl", last_success);
    r.register("phase_seconds", "Time spent per build phase", counters.timings.phases.clone());
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &r) {
        log::error!("rendering metrics: {e}");
    }
    out
}
