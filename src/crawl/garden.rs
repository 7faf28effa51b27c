//! Garden Linux's kernels, found as kernel-packer's garden crawler found
//! them: the GitHub releases of the distribution (the API's JSON, paged
//! with `page` and `per_page`), each release's `component-descriptor`
//! asset (YAML), its build metadata's `debianPackages`, and there the
//! `linux-image-<x.y.z>-garden[linux]-cloud-amd64 <version>` line. Each
//! kernel gives two ordinary Debian-family bundles from the source's
//! `pool_url`: the `cloud-amd64` and `amd64` flavours, each with its
//! `-common` headers and `linux-kbuild-<x.y>`, named as kernel-packer
//! named them (`5.15.114-gardenlinux-cloud-amd64`). Neither the API nor
//! the descriptor is signed, and the descriptor gives no checksums: the
//! packages are trusted on HTTPS (docs/crawl.md).

use super::http::IndexFetcher;
use super::sources::Source;
use super::Found;
use crate::manifest::Package;
use anyhow::{anyhow, bail, Context, Result};
use regex::Regex;
use serde::Deserialize;
use std::sync::OnceLock;

const PER_PAGE: usize = 30;
const MAX_PAGES: usize = 200;
const MAX_DESCRIPTOR_PACKAGES: usize = 100_000;

#[derive(Deserialize)]
pub struct Release {
    #[serde(default)]
    pub tag_name: String,
    #[serde(default)]
    pub assets: Vec<Asset>,
}

#[derive(Deserialize)]
pub struct Asset {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub browser_download_url: String,
}

#[derive(Deserialize, Default)]
struct Descriptor {
    #[serde(default)]
    component: Component,
}

#[derive(Deserialize, Default)]
struct Component {
    #[serde(default)]
    resources: Vec<Resource>,
}

#[derive(Deserialize, Default)]
struct Resource {
    #[serde(default)]
    labels: Vec<Label>,
}

#[derive(Deserialize, Default)]
struct Label {
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: LabelValue,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct LabelValue {
    debian_packages: Vec<String>,
}

const METADATA_LABEL: &str = "gardener.cloud/gardenlinux/ci/build-metadata";

/// A Garden kernel: `(x.y, Debian release without the flavour, package version)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Kernel {
    pub series: String,
    pub release: String,
    pub version: String,
}

/// The kernels a component descriptor's build metadata lists.
pub fn kernels(descriptor: &str) -> Result<Vec<Kernel>> {
    static IMAGE: OnceLock<Regex> = OnceLock::new();
    let re = IMAGE.get_or_init(|| {
        Regex::new(r"^linux-image-(([0-9]\.[0-9]+)\.[0-9]+-garden(?:linux)?)-cloud-amd64 ([0-9]\.[0-9]+\.[0-9]+-[0-9]+gardenlinux[0-9]+)$")
            .expect("static regex")
    });
    let d: Descriptor = serde_saphyr::from_str(descriptor).map_err(|e| anyhow!("the component descriptor: {e}"))?;
    let packages: Vec<&String> = d
        .component
        .resources
        .iter()
        .flat_map(|r| &r.labels)
        .filter(|l| l.name == METADATA_LABEL)
        .flat_map(|l| &l.value.debian_packages)
        .take(MAX_DESCRIPTOR_PACKAGES)
        .collect();
    let mut found: Vec<Kernel> = packages
        .iter()
        .filter_map(|p| re.captures(p))
        .map(|c| Kernel { series: c[2].to_string(), release: c[1].to_string(), version: c[3].to_string() })
        .collect();
    found.sort();
    found.dedup();
    Ok(found)
}

/// The two bundles of a kernel: cloud-amd64 and amd64, as kernel-packer listed them.
pub fn bundles(pool: &str, k: &Kernel) -> Vec<Vec<Package>> {
    let dir = format!("{}/linux-{}", pool.trim_end_matches('/'), k.series);
    let package = |file: String| Package {
        url: format!("{dir}/{file}"),
        also: Vec::new(),
        sha256: None,
        sha512: None,
        size: None,
    };
    let common = format!("linux-headers-{}-common_{}_all.deb", k.release, k.version);
    let kbuild = format!("linux-kbuild-{}_{}_amd64.deb", k.series, k.version);
    ["cloud-amd64", "amd64"]
        .iter()
        .map(|flavour| {
            vec![
                package(kbuild.clone()),
                package(format!("linux-headers-{}-{flavour}_{}_amd64.deb", k.release, k.version)),
                package(common.clone()),
            ]
        })
        .collect()
}

pub async fn crawl(src: &Source, fetch: &IndexFetcher, progress: &(dyn Fn(String) + Sync)) -> Result<Found> {
    let base = src.url.trim_end_matches('/');
    let pool = src.pool_url.as_deref().ok_or_else(|| anyhow!("source {}: garden sources need pool_url", src.name))?;
    let mut descriptors = Vec::new();
    for page in 1..=MAX_PAGES {
        let url = format!("{base}?page={page}&per_page={PER_PAGE}");
        progress(format!("releases page {page}"));
        let fetched = fetch.get(&url).await?.ok_or_else(|| anyhow!("{url} not found"))?;
        let releases: Vec<Release> =
            serde_json::from_slice(&fetched.body).with_context(|| format!("{url}: not a list of releases"))?;
        fetch.keep(&fetched)?;
        let count = releases.len();
        for release in releases {
            if let Some(asset) = release.assets.into_iter().find(|a| a.name == "component-descriptor") {
                descriptors.push((release.tag_name, asset.browser_download_url));
            }
        }
        if count < PER_PAGE {
            let mut kernels = Vec::new();
            for (tag, url) in descriptors {
                progress(format!("release {tag}"));
                let Some(fetched) = fetch.get(&url).await.with_context(|| url.clone())? else {
                    log::warn!("crawl {}: release {tag}: {url} not found; skipped", src.name);
                    continue;
                };
                match kernels_of(&fetched.body) {
                    Ok(found) => kernels.extend(found),
                    Err(e) => log::warn!("crawl {}: release {tag}: {e:#}; skipped", src.name),
                }
                fetch.keep(&fetched)?;
            }
            kernels.sort();
            kernels.dedup();
            let bundles = kernels.iter().flat_map(|k| bundles(pool, k)).collect();
            return Ok(Found { bundles, ..Found::default() });
        }
    }
    bail!("{base}: more than {MAX_PAGES} pages of releases")
}

fn kernels_of(body: &[u8]) -> Result<Vec<Kernel>> {
    kernels(std::str::from_utf8(body).context("the component descriptor is not UTF-8")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESCRIPTOR: &str = r#"
meta:
  schemaVersion: v2
component:
  name: github.com/gardenlinux/gardenlinux
  version: 934.9.0
  resources:
  - name: rootfs
    labels:
    - name: gardener.cloud/gardenlinux/ci/build-metadata
      value:
        modifiers: [aws, gardener, _prod]
        debianPackages:
        - adduser 3.118
        - linux-image-5.15.114-gardenlinux-cloud-amd64 5.15.114-0gardenlinux3
        - linux-image-5.15.114-gardenlinux-cloud-amd64 5.15.114-0gardenlinux3
        - linux-image-amd64 5.15.114-0gardenlinux3
  - name: other
    labels:
    - name: cloud.gardener.cnudie/dso/scanning-hints/binary_id/v1
      value: {policy: skip}
"#;

    #[test]
    fn a_component_descriptor_gives_its_kernel_once() {
        let found = kernels(DESCRIPTOR).unwrap();
        assert_eq!(
            found,
            [Kernel {
                series: "5.15".into(),
                release: "5.15.114-gardenlinux".into(),
                version: "5.15.114-0gardenlinux3".into()
            }]
        );
        assert!(kernels("component: [").is_err());
    }

    #[test]
    fn each_kernel_gives_kernel_packers_cloud_and_amd64_bundles() {
        let k = &kernels(DESCRIPTOR).unwrap()[0];
        let urls: Vec<Vec<String>> =
            bundles("https://pool/l", k).into_iter().map(|b| b.into_iter().map(|p| p.url).collect()).collect();
        assert_eq!(
            urls[0][1],
            "https://pool/l/linux-5.15/linux-headers-5.15.114-gardenlinux-cloud-amd64_5.15.114-0gardenlinux3_amd64.deb"
        );
        assert_eq!(
            urls[1][1],
            "https://pool/l/linux-5.15/linux-headers-5.15.114-gardenlinux-amd64_5.15.114-0gardenlinux3_amd64.deb"
        );
        assert_eq!(
            urls[0][2],
            "https://pool/l/linux-5.15/linux-headers-5.15.114-gardenlinux-common_5.15.114-0gardenlinux3_all.deb"
        );
        assert_eq!(urls[0][0], "https://pool/l/linux-5.15/linux-kbuild-5.15_5.15.114-0gardenlinux3_amd64.deb");
    }
}
