//! A bucket's XML listing (Google Cloud Storage's and S3's `ListBucketResult`),
//! as COS publishes its kernels: `cos-tools/<build>/kernel-src.tar.gz` and,
//! for most builds, `kernel-headers.tgz` beside it. Paged with `marker`
//! (`NextMarker`, else the last key), every page and the page count
//! bounded; one bundle per build with a source tarball. The listing is not
//! signed: integrity rests on HTTPS (docs/crawl.md).

use super::http::IndexFetcher;
use super::sources::Source;
use super::Found;
use crate::manifest::Package;
use anyhow::{anyhow, bail, Context, Result};
use quick_xml::events::Event;
use std::collections::BTreeMap;

/// More pages than any bucket listing of kernels has (COS: ~5,000 builds,
/// ~20,000 objects, 1,000 a page).
const MAX_PAGES: usize = 2_000;
/// Keys in one listing.
const MAX_KEYS: usize = 2_000_000;

/// One page: its keys, and where the next starts (None: the last page).
#[derive(Debug, Default, PartialEq)]
pub struct Page {
    pub keys: Vec<String>,
    pub next: Option<String>,
}

/// Read one `ListBucketResult` page.
pub fn parse_page(xml: &[u8]) -> Result<Page> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    reader.config_mut().trim_text(true);
    let (mut page, mut path, mut truncated, mut next_marker) = (Page::default(), Vec::<String>::new(), false, None);
    let mut buf = Vec::new();
    let mut saw_root = false;
    loop {
        match reader.read_event_into(&mut buf).context("the bucket listing is not XML")? {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if path.is_empty() && name == "ListBucketResult" {
                    saw_root = true;
                }
                path.push(name);
                if path.len() > 8 {
                    bail!("the bucket listing nests too deep");
                }
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) => {
                let text = t.decode().context("the bucket listing's text")?.into_owned();
                let text = quick_xml::escape::unescape(&text).map(|c| c.into_owned()).unwrap_or(text);
                match path.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                    ["ListBucketResult", "Contents", "Key"] => page.keys.push(text),
                    ["ListBucketResult", "IsTruncated"] => truncated = text == "true",
                    ["ListBucketResult", "NextMarker"] => next_marker = Some(text),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !saw_root {
        bail!("not a bucket listing (no ListBucketResult)");
    }
    if truncated {
        page.next = next_marker.or_else(|| page.keys.last().cloned());
        if page.next.is_none() {
            bail!("the bucket listing is truncated but says nowhere to go on");
        }
    }
    Ok(page)
}

/// A COS build number: digits and dots (`16919.235.36`).
fn is_build(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && name.contains('.')
}

/// Bundles from a listing's keys: per build, `kernel-src.tar.gz` and the
/// `kernel-headers.tgz` beside it when there is one.
pub fn group(base: &str, keys: &[String]) -> Vec<Vec<Package>> {
    let mut builds: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
    for key in keys {
        let Some((build, file)) = key.split_once('/') else { continue };
        if !is_build(build) {
            continue;
        }
        let entry = builds.entry(build).or_default();
        match file {
            "kernel-src.tar.gz" => entry.0 = true,
            "kernel-headers.tgz" => entry.1 = true,
            _ => {}
        }
    }
    let package = |build: &str, file: &str| Package {
        url: format!("{}/{build}/{file}", base.trim_end_matches('/')),
        also: Vec::new(),
        sha256: None,
        sha512: None,
        size: None,
    };
    builds
        .into_iter()
        .filter(|(_, (src, _))| *src)
        .map(|(build, (_, headers))| {
            let mut bundle = vec![package(build, "kernel-src.tar.gz")];
            if headers {
                bundle.push(package(build, "kernel-headers.tgz"));
            }
            bundle
        })
        .collect()
}

pub async fn crawl(src: &Source, fetch: &IndexFetcher, progress: &(dyn Fn(String) + Sync)) -> Result<Found> {
    let base = src.url.trim_end_matches('/');
    let mut keys = Vec::new();
    let mut marker: Option<String> = None;
    for page_number in 1..=MAX_PAGES {
        // An empty marker is the first page.
        let m = marker.as_deref().unwrap_or("");
        let url = format!("{base}/?marker={}", url::form_urlencoded::byte_serialize(m.as_bytes()).collect::<String>());
        progress(format!("listing page {page_number}"));
        let fetched = fetch.get(&url).await?.ok_or_else(|| anyhow!("{url} not found"))?;
        let page = parse_page(&fetched.body).with_context(|| url.clone())?;
        fetch.keep(&fetched)?;
        keys.extend(page.keys);
        if keys.len() > MAX_KEYS {
            bail!("{base}: more than {MAX_KEYS} objects listed");
        }
        match page.next {
            Some(next) if Some(&next) != marker.as_ref() => marker = Some(next),
            Some(_) => bail!("{url}: the listing does not advance"),
            None => return Ok(Found { bundles: group(base, &keys), ..Found::default() }),
        }
    }
    bail!("{base}: the listing has more than {MAX_PAGES} pages")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://doc.s3.amazonaws.com/2006-03-01"><Name>cos-tools</Name><Prefix/><Marker/><NextMarker>16919.235.36/kernel-src.tar.gz</NextMarker><IsTruncated>true</IsTruncated><Contents><Key>16919.235.36/kernel-headers.tgz</Key><Size>1</Size></Contents><Contents><Key>16919.235.36/kernel-src.tar.gz</Key><Size>2</Size></Contents></ListBucketResult>"#;

    #[test]
    fn a_listing_page_gives_its_keys_and_the_next_marker() {
        let page = parse_page(PAGE.as_bytes()).unwrap();
        assert_eq!(page.keys, ["16919.235.36/kernel-headers.tgz", "16919.235.36/kernel-src.tar.gz"]);
        assert_eq!(page.next.as_deref(), Some("16919.235.36/kernel-src.tar.gz"));
        let last = PAGE.replace("<IsTruncated>true", "<IsTruncated>false");
        assert_eq!(parse_page(last.as_bytes()).unwrap().next, None);
        assert!(parse_page(b"<html>no</html>").is_err());
    }

    #[test]
    fn builds_group_their_tarballs_and_other_files_are_ignored() {
        let keys: Vec<String> = [
            "10527.0.0/kernel-src.tar.gz",
            "12739.68.0/kernel-headers.tgz",
            "12739.68.0/kernel-src.tar.gz",
            "12739.68.0/kernel-src.tar.gz.md5",
            "12739.68.0/toolchain.tar.xz",
            "only-headers.1/kernel-headers.tgz",
            "99.9/kernel-headers.tgz",
            "lakitu/whatever",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let urls: Vec<Vec<String>> =
            group("https://b/cos-tools", &keys).into_iter().map(|b| b.into_iter().map(|p| p.url).collect()).collect();
        assert_eq!(
            urls,
            [
                vec!["https://b/cos-tools/10527.0.0/kernel-src.tar.gz".to_string()],
                vec![
                    "https://b/cos-tools/12739.68.0/kernel-src.tar.gz".to_string(),
                    "https://b/cos-tools/12739.68.0/kernel-headers.tgz".to_string()
                ],
            ]
        );
    }
}
