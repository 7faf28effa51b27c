//! Flatcar's release servers: a channel's board directory
//! (`<the channel's release server>/amd64-usr/`) is an HTTP
//! directory index of release versions; each release directory holds the
//! developer container image and `flatcar_production_image_packages.txt`,
//! the image's package list, whose `sys-kernel/coreos-kernel-<version>`
//! gives the kernel release (`<version>-flatcar`) before anything large
//! is downloaded. One bundle per release with a package list. Nothing
//! here is signed: the index and the lists are trusted on HTTPS
//! (docs/crawl.md); the image is checked at build time by its contents.

use super::http::IndexFetcher;
use super::sources::Source;
use super::Found;
use crate::manifest::Package;
use anyhow::{anyhow, bail, Context, Result};
use regex::Regex;
use std::sync::OnceLock;

/// More releases than a channel has had (stable: ~150 since 2018).
const MAX_RELEASES: usize = 5_000;
const IMAGE: &str = "flatcar_developer_container.bin.bz2";
const PACKAGES: &str = "flatcar_production_image_packages.txt";

fn regex(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("static regex"))
}

/// Release versions an HTML directory index links to (`href="3510.2.0/"`).
pub fn releases(index: &str) -> Vec<String> {
    static HREF: OnceLock<Regex> = OnceLock::new();
    let re = regex(&HREF, r#"href="(?:\./)?([0-9]{1,6}\.[0-9]{1,6}\.[0-9]{1,6})/?""#);
    let mut found: Vec<String> = re.captures_iter(index).map(|c| c[1].to_string()).collect();
    found.sort_by_key(|v| v.split('.').map(|p| p.parse::<u64>().unwrap_or(0)).collect::<Vec<_>>());
    found.dedup();
    found
}

/// The kernel release a package list names: `sys-kernel/coreos-kernel-6.1.96`
/// (a Portage revision `-r1` and a repository `::coreos-overlay` may follow).
pub fn kernel_release(packages: &str) -> Option<String> {
    static KERNEL: OnceLock<Regex> = OnceLock::new();
    let re =
        regex(&KERNEL, r"(?m)^sys-kernel/coreos-kernel-([0-9]+\.[0-9]+\.[0-9]+)(?:-r[0-9]+)?(?:::[A-Za-z0-9_-]+)?\s*$");
    let caps = re.captures(packages)?;
    Some(format!("{}-flatcar", &caps[1]))
}

pub async fn crawl(src: &Source, fetch: &IndexFetcher, progress: &(dyn Fn(String) + Sync)) -> Result<Found> {
    let base = src.url.trim_end_matches('/');
    let url = format!("{base}/");
    progress("listing releases".into());
    let fetched = fetch.get(&url).await?.ok_or_else(|| anyhow!("{url} not found"))?;
    let index = String::from_utf8_lossy(&fetched.body).into_owned();
    fetch.keep(&fetched)?;
    let versions = releases(&index);
    if versions.len() > MAX_RELEASES {
        bail!("{url}: more than {MAX_RELEASES} releases listed");
    }
    let mut found = Found::default();
    for (n, version) in versions.iter().enumerate() {
        progress(format!("release {version} ({}/{})", n + 1, versions.len()));
        let list_url = format!("{base}/{version}/{PACKAGES}");
        let Some(list) = fetch.get(&list_url).await.with_context(|| list_url.clone())? else {
            log::debug!("crawl {}: {version} has no {PACKAGES}; skipped", src.name);
            continue;
        };
        let release = kernel_release(&String::from_utf8_lossy(&list.body));
        fetch.keep(&list)?;
        let Some(release) = release else {
            log::warn!("crawl {}: {list_url} names no sys-kernel/coreos-kernel; skipped", src.name);
            continue;
        };
        let image = Package {
            url: format!("{base}/{version}/{IMAGE}"),
            also: Vec::new(),
            sha256: None,
            sha512: None,
            size: None,
        };
        found.unames.insert(image.url.clone(), release);
        found.bundles.push(vec![image]);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_index_gives_its_release_directories_in_version_order() {
        let index = r#"<html><body><a href="../">../</a><a href="3510.2.0/">3510.2.0/</a>
            <a href="2605.10.0/">2605.10.0/</a><a href="current/">current/</a><a href="3510.2.0/">again</a>
            <a href="3510.2.0/flatcar_developer_container.bin.bz2">x</a><a href="evil/../1.2.3/">y</a></body></html>"#;
        assert_eq!(releases(index), ["2605.10.0", "3510.2.0"]);
    }

    #[test]
    fn the_package_list_names_the_kernel_release() {
        let list = "app-shells/bash-5.2_p15-r6::portage-stable\nsys-kernel/coreos-firmware-20230804::coreos-overlay\nsys-kernel/coreos-kernel-6.1.96::coreos-overlay\n";
        assert_eq!(kernel_release(list).as_deref(), Some("6.1.96-flatcar"));
        assert_eq!(kernel_release("sys-kernel/coreos-kernel-5.15.119-r1\n").as_deref(), Some("5.15.119-flatcar"));
        assert_eq!(kernel_release("sys-kernel/coreos-modules-6.1.96\n"), None);
        assert_eq!(kernel_release("sys-kernel/coreos-kernel-6.1.96; rm -rf /\n"), None);
    }
}
