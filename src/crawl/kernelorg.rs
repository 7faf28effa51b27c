//! Vanilla kernels from kernel.org's tarball listings (linuxkit-style
//! kernels: kernel.org source plus a config published per series). Each
//! series' major directory (`<url>/v6.x/`) is an HTTP directory index of
//! `linux-<version>.tar.xz`; the newest `newest` releases of each series
//! in `series` become bundles of that tarball and the series' config
//! (`config_url`, `{series}` replaced: linuxkit keeps one config per series,
//! `kernel/<series>.x/config-x86_64`). The listing is not signed; the
//! tarball is trusted on HTTPS (kernel.org signs the uncompressed .tar,
//! which is not checked here: docs/crawl.md).
//!
//! ```yaml
//! - name: linuxkit
//!   type: linuxkit
//!   kind: kernel-org
//!   url: <kernel.org's …/pub/linux/kernel>
//!   series: ['6.6', '6.1']
//!   config_url: <…/kernel/{series}.x/config-x86_64>
//!   newest: 3
//!   grouping: build
//! ```

use super::http::IndexFetcher;
use super::sources::Source;
use super::Found;
use crate::manifest::Package;
use anyhow::{anyhow, bail, Context, Result};
use regex::Regex;
use std::sync::OnceLock;

/// More links than a major directory has (v5.x: ~2,800 tarballs and signatures).
const MAX_LINKS: usize = 100_000;
/// Releases per series when `newest` is not set.
pub const DEFAULT_NEWEST: usize = 3;

/// The releases of `series` an index links to (`linux-6.6.22.tar.xz`; the
/// series' first release `linux-6.6.tar.xz` too), oldest first.
pub fn releases(index: &str, series: &str) -> Result<Vec<String>> {
    static HREF: OnceLock<Regex> = OnceLock::new();
    let re = HREF.get_or_init(|| {
        Regex::new(r#"href="(?:\./)?linux-([0-9]{1,3}\.[0-9]{1,3}(?:\.[0-9]{1,4})?)\.tar\.xz""#).expect("static regex")
    });
    let mut found = Vec::new();
    for (n, caps) in re.captures_iter(index).enumerate() {
        if n >= MAX_LINKS {
            bail!("more than {MAX_LINKS} tarballs listed");
        }
        let version = &caps[1];
        if version == series || version.strip_prefix(series).is_some_and(|rest| rest.starts_with('.')) {
            found.push(version.to_string());
        }
    }
    let key = |v: &String| v.split('.').map(|p| p.parse::<u64>().unwrap_or(0)).collect::<Vec<_>>();
    found.sort_by_key(key);
    found.dedup();
    Ok(found)
}

pub async fn crawl(src: &Source, fetch: &IndexFetcher, progress: &(dyn Fn(String) + Sync)) -> Result<Found> {
    let base = src.url.trim_end_matches('/');
    let template = src.config_url.as_deref().ok_or_else(|| anyhow!("kernel-org sources need config_url"))?;
    let newest = src.newest.unwrap_or(DEFAULT_NEWEST);
    let mut found = Found::default();
    for series in &src.series {
        let major = series.split('.').next().unwrap_or("0");
        let url = format!("{base}/v{major}.x/");
        progress(format!("listing {url} for {series}"));
        let fetched = fetch.get(&url).await?.ok_or_else(|| anyhow!("{url} not found"))?;
        let listed = releases(&String::from_utf8_lossy(&fetched.body), series).with_context(|| url.clone())?;
        fetch.keep(&fetched)?;
        if listed.is_empty() {
            log::warn!("crawl {}: {url} lists no release of {series}", src.name);
        }
        let config = template.replace("{series}", series);
        for version in listed.iter().skip(listed.len().saturating_sub(newest)) {
            found
                .bundles
                .push(vec![Package::new(format!("{url}linux-{version}.tar.xz")), Package::new(config.clone())]);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_gives_the_series_releases_in_version_order_and_nothing_else() {
        let index = r#"<a href="../">../</a><a href="linux-6.6.9.tar.xz">x</a><a href="linux-6.6.10.tar.xz">x</a>
            <a href="linux-6.6.10.tar.sign">s</a><a href="linux-6.6.tar.xz">x</a><a href="linux-6.60.1.tar.xz">x</a>
            <a href="linux-6.1.99.tar.xz">x</a><a href="linux-6.6.2.tar.gz">gz</a><a href="../linux-6.6.3.tar.xz">up</a>
            <a href="linux-6.6.9.tar.xz">again</a>"#;
        assert_eq!(releases(index, "6.6").unwrap(), ["6.6", "6.6.9", "6.6.10"]);
        use crate::crawl::sources::valid_series;
        assert!(valid_series("6.6") && valid_series("4.19"));
        assert!(!valid_series("6") && !valid_series("6.6.1") && !valid_series("6.x") && !valid_series("../6"));
    }
}
