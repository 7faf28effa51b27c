//! minikube's ISO kernels: the published release list (`releases.json`,
//! `[{"name": "v1.33.1", …}, …]`) gives the tags; at each tag the ISO's
//! buildroot config (`deploy/iso/minikube-iso/configs/minikube_x86_64_defconfig`,
//! `minikube_defconfig` before v1.26) names the kernel version
//! (`BR2_LINUX_KERNEL_CUSTOM_VERSION_VALUE`) and the kernel config file
//! (`BR2_LINUX_KERNEL_CUSTOM_CONFIG_FILE`, under the ISO's tree). One bundle
//! per tag, as kernel-packer listed them: that defconfig (`?kernel=<version>`)
//! and the kernel.org tarball. From v1.24.0 on, where kernel-packer and
//! Falco's crawler start (older ISOs used other layouts). Nothing here is
//! signed: the list and the configs are trusted on HTTPS (docs/crawl.md).
//!
//! ```yaml
//! - name: minikube
//!   type: minikube
//!   kind: minikube
//!   url: <the release list: …/releases.json>
//!   tree_url: <tag trees: <tree_url>/<tag>/deploy/iso/…>
//!   kernel_url: <kernel.org's …/pub/linux/kernel>
//!   grouping: build
//! ```

use super::http::IndexFetcher;
use super::sources::Source;
use super::Found;
use crate::manifest::Package;
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

/// More releases than minikube has made (~200 by 2026).
const MAX_RELEASES: usize = 5_000;
/// The oldest tag crawled.
const FIRST: (u64, u64, u64) = (1, 24, 0);
/// Where the ISO's buildroot tree is in a tag, and its external-tree variable.
const ISO: &str = "deploy/iso/minikube-iso";
const ISO_VAR: &str = "$(BR2_EXTERNAL_MINIKUBE_PATH)/";
/// The buildroot configs, newest layout first.
const BUILDROOT_CONFIGS: &[&str] = &["configs/minikube_x86_64_defconfig", "configs/minikube_defconfig"];

#[derive(Deserialize)]
struct Release {
    name: String,
}

/// `v1.33.1` as numbers; prereleases (`v1.34.0-beta.0`) and anything else are None.
pub fn tag_version(tag: &str) -> Option<(u64, u64, u64)> {
    let mut parts = tag.strip_prefix('v')?.split('.');
    let mut next = || -> Option<u64> {
        let p = parts.next()?;
        (!p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse().ok())?
    };
    let version = (next()?, next()?, next()?);
    parts.next().is_none().then_some(version)
}

/// The tags to crawl from a release list, oldest first.
pub fn tags(list: &[u8]) -> Result<Vec<String>> {
    let releases: Vec<Release> =
        serde_json::from_slice(list).context("the release list is not a JSON array of releases")?;
    if releases.len() > MAX_RELEASES {
        bail!("more than {MAX_RELEASES} releases listed");
    }
    let mut found: Vec<((u64, u64, u64), String)> = releases
        .into_iter()
        .filter_map(|r| Some((tag_version(&r.name)?, r.name)))
        .filter(|(v, _)| *v >= FIRST)
        .collect();
    found.sort();
    found.dedup();
    Ok(found.into_iter().map(|(_, tag)| tag).collect())
}

/// What a buildroot config says about the kernel: its version, and its
/// config file's path in the ISO tree.
#[derive(Debug, PartialEq, Eq)]
pub struct Kernel {
    pub version: String,
    pub config: String,
}

fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('=')).map(|v| v.trim().trim_matches('"'))
}

/// The kernel a buildroot config names; None when it names none, or a
/// value that is not a plain version or a path inside the ISO's tree.
pub fn kernel(buildroot: &str) -> Option<Kernel> {
    let version = value(buildroot, "BR2_LINUX_KERNEL_CUSTOM_VERSION_VALUE")?;
    let numeric = version.split('.').all(|p| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()));
    if !numeric || !(2..=4).contains(&version.split('.').count()) {
        return None;
    }
    let config = value(buildroot, "BR2_LINUX_KERNEL_CUSTOM_CONFIG_FILE")?.strip_prefix(ISO_VAR)?;
    let safe = config.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && config.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
        && config.len() <= 256;
    safe.then(|| Kernel { version: version.to_string(), config: config.to_string() })
}

/// kernel.org's tarball of `version` under `base` (`…/pub/linux/kernel`).
pub fn tarball_url(base: &str, version: &str) -> String {
    let major = version.split('.').next().unwrap_or("0");
    format!("{}/v{major}.x/linux-{version}.tar.xz", base.trim_end_matches('/'))
}

pub async fn crawl(src: &Source, fetch: &IndexFetcher, progress: &(dyn Fn(String) + Sync)) -> Result<Found> {
    let trees = src.tree_url.as_deref().ok_or_else(|| anyhow!("minikube sources need tree_url"))?.trim_end_matches('/');
    let kernels = src.kernel_url.as_deref().ok_or_else(|| anyhow!("minikube sources need kernel_url"))?;
    progress("reading the release list".into());
    let fetched = fetch.get(&src.url).await?.ok_or_else(|| anyhow!("{} not found", src.url))?;
    let tags = tags(&fetched.body).with_context(|| src.url.clone())?;
    fetch.keep(&fetched)?;
    let mut found = Found::default();
    for (n, tag) in tags.iter().enumerate() {
        progress(format!("{tag} ({}/{})", n + 1, tags.len()));
        let mut named = None;
        for config in BUILDROOT_CONFIGS {
            let url = format!("{trees}/{tag}/{ISO}/{config}");
            if let Some(got) = fetch.get(&url).await.with_context(|| url.clone())? {
                named = Some((url, kernel(&String::from_utf8_lossy(&got.body))));
                fetch.keep(&got)?;
                break;
            }
        }
        let kernel = match named {
            Some((_, Some(kernel))) => kernel,
            Some((url, None)) => {
                log::warn!("crawl {}: {url} names no kernel version and config file; {tag} skipped", src.name);
                continue;
            }
            None => {
                log::debug!("crawl {}: {tag} has no ISO buildroot config; skipped", src.name);
                continue;
            }
        };
        found.bundles.push(vec![
            Package::new(format!("{trees}/{tag}/{ISO}/{}?kernel={}", kernel.config, kernel.version)),
            Package::new(tarball_url(kernels, &kernel.version)),
        ]);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_list_gives_final_tags_from_v1_24_in_version_order() {
        let list = br#"[{"name":"v1.33.1","checksums":{"linux":"ab"}},{"name":"v1.34.0-beta.0"},{"name":"v1.9.0"},
            {"name":"v1.24.0"},{"name":"v1.23.2"},{"name":"v1.100.0"},{"name":"v1.33.1"},{"name":"v1.2.3; rm"}]"#;
        assert_eq!(tags(list).unwrap(), ["v1.24.0", "v1.33.1", "v1.100.0"]);
        assert!(tags(b"{\"name\":\"v1.24.0\"}").is_err());
    }

    #[test]
    fn a_buildroot_config_names_the_kernel_and_its_config_inside_the_iso_tree() {
        let config = "BR2_LINUX_KERNEL=y\nBR2_LINUX_KERNEL_CUSTOM_VERSION_VALUE=\"5.10.207\"\n\
            BR2_LINUX_KERNEL_CUSTOM_CONFIG_FILE=\"$(BR2_EXTERNAL_MINIKUBE_PATH)/board/minikube/x86_64/linux_x86_64_defconfig\"\n";
        assert_eq!(
            kernel(config),
            Some(Kernel { version: "5.10.207".into(), config: "board/minikube/x86_64/linux_x86_64_defconfig".into() })
        );
        let escape = config.replace("board/minikube", "../../../etc");
        assert_eq!(kernel(&escape), None, "a path out of the ISO tree");
        assert_eq!(kernel(&config.replace("5.10.207", "5.10.207$(shell id)")), None);
        assert_eq!(kernel(&config.replace("$(BR2_EXTERNAL_MINIKUBE_PATH)", "/abs")), None);
        assert_eq!(
            tarball_url("https://k.example/pub/linux/kernel/", "6.6.22"),
            "https://k.example/pub/linux/kernel/v6.x/linux-6.6.22.tar.xz"
        );
    }
}
