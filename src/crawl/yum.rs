//! yum/dnf repositories: repomd.xml (with its detached `.asc` signature
//! checked when the source has a keyring), primary.xml (gz, xz, zstd or
//! bzip2) checked against repomd's checksum, and the kernel -devel packages
//! in it: one bundle each, or SUSE's flavour + base pairs.

use super::http::IndexFetcher;
use super::sources::{Grouping, Source};
use super::Found;
use crate::manifest::Package;
use crate::trust::gpg;
use anyhow::{anyhow, bail, Context, Result};
use quick_xml::events::{BytesStart, Event};
use std::collections::BTreeMap;
use std::io::{BufRead, Read};

/// One package of primary.xml (the fields we use).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RpmPackage {
    pub name: String,
    pub arch: String,
    pub version: String,
    pub release: String,
    pub sha256: Option<String>,
    pub href: String,
    pub base: Option<String>,
    pub size: Option<u64>,
}

/// Where primary.xml is, and its checksum: (href, checksum type, checksum, size).
pub fn repomd_primary(xml: &[u8]) -> Result<(String, String, String, Option<u64>)> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let (mut in_primary, mut field) = (false, String::new());
    let (mut href, mut ctype, mut csum, mut size) = (None, String::new(), String::new(), None);
    loop {
        match reader.read_event_into(&mut buf).context("parsing repomd.xml")? {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == b"data" => {
                in_primary = attr(&e, b"type").as_deref() == Some("primary");
            }
            Event::Start(e) if in_primary => {
                field = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if field == "checksum" {
                    ctype = attr(&e, b"type").unwrap_or_default();
                }
            }
            Event::Empty(e) if in_primary && e.local_name().as_ref() == b"location" => href = attr(&e, b"href"),
            Event::Text(t) if in_primary => {
                let text = t.decode().map_err(|e| anyhow!("repomd.xml: {e}"))?.trim().to_string();
                match field.as_str() {
                    "checksum" => csum = text,
                    "size" => size = text.parse().ok(),
                    _ => {}
                }
            }
            Event::End(e) if e.local_name().as_ref() == b"data" && in_primary => break,
            Event::End(_) => field.clear(),
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    let href = href.ok_or_else(|| anyhow!("repomd.xml has no primary data"))?;
    if csum.is_empty() {
        bail!("repomd.xml gives no checksum for primary");
    }
    Ok((href, ctype, csum, size))
}

fn attr(e: &BytesStart<'_>, name: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

fn entity(name: &[u8]) -> &'static str {
    match name {
        b"amp" => "&",
        b"lt" => "<",
        b"gt" => ">",
        b"quot" => "\"",
        b"apos" => "'",
        _ => "",
    }
}

/// Stream primary.xml, keeping packages whose name passes `keep`.
pub fn parse_primary(reader: impl BufRead, keep: impl Fn(&str) -> bool) -> Result<Vec<RpmPackage>> {
    let mut reader = quick_xml::Reader::from_reader(reader);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut pkg: Option<RpmPackage> = None;
    let mut depth = 0usize; // inside <package>: 1 = its direct children
    let mut field = String::new();
    let mut text = String::new();
    loop {
        let event = reader.read_event_into(&mut buf).context("parsing primary.xml")?;
        match event {
            Event::Start(e) => {
                if pkg.is_none() && e.local_name().as_ref() == b"package" {
                    pkg = Some(RpmPackage::default());
                    depth = 0;
                } else if pkg.is_some() {
                    depth += 1;
                    if depth == 1 {
                        field = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                        text.clear();
                        if field == "checksum" && attr(&e, b"type").as_deref() != Some("sha256") {
                            field.clear(); // only sha256 is recorded
                        }
                    }
                }
            }
            Event::Empty(e) if depth == 0 => {
                if let Some(p) = pkg.as_mut() {
                    match e.local_name().as_ref() {
                        b"version" => {
                            p.version = attr(&e, b"ver").unwrap_or_default();
                            p.release = attr(&e, b"rel").unwrap_or_default();
                        }
                        b"location" => {
                            p.href = attr(&e, b"href").unwrap_or_default();
                            p.base = attr(&e, b"base");
                        }
                        b"size" => p.size = attr(&e, b"package").and_then(|s| s.parse().ok()),
                        _ => {}
                    }
                }
            }
            Event::Text(t) if depth == 1 && !field.is_empty() => {
                text.push_str(&t.decode().map_err(|e| anyhow!("primary.xml: {e}"))?)
            }
            Event::GeneralRef(r) if depth == 1 && !field.is_empty() => text.push_str(entity(r.as_ref())),
            Event::End(e) => {
                if pkg.is_some() && depth == 0 && e.local_name().as_ref() == b"package" {
                    if let Some(p) = pkg.take() {
                        if keep(&p.name) && !p.href.is_empty() {
                            out.push(p);
                        }
                    }
                } else if let Some(p) = pkg.as_mut() {
                    if depth == 1 {
                        let value = text.trim().to_string();
                        match field.as_str() {
                            "name" => p.name = value,
                            "arch" => p.arch = value,
                            "checksum" => p.sha256 = Some(value.to_ascii_lowercase()),
                            _ => {}
                        }
                        field.clear();
                    }
                    depth = depth.saturating_sub(1);
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(out)
}

fn decompress(data: &[u8]) -> Result<Box<dyn BufRead + '_>> {
    let reader: Box<dyn Read + '_> = match data {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(data)),
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Box::new(liblzma::read::XzDecoder::new_multi_decoder(data)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(zstd::stream::read::Decoder::new(data).context("starting zstd")?),
        [b'B', b'Z', b'h', ..] => Box::new(bzip2::read::MultiBzDecoder::new(data)),
        _ => Box::new(data),
    };
    Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, reader)))
}

/// Repository bases: `url/repo` for each repo, or the mirror list's first URL.
async fn bases(src: &Source, fetch: &IndexFetcher) -> Result<Vec<String>> {
    let root = src.url.trim_end_matches('/');
    let mut bases: Vec<String> = src.repos.iter().map(|r| format!("{root}/{}", r.trim_matches('/'))).collect();
    if let Some(list) = &src.mirrorlist {
        let fetched = fetch.get(list).await?.ok_or_else(|| anyhow!("mirror list {list} not found"))?;
        let text = String::from_utf8_lossy(&fetched.body).into_owned();
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#') && l.contains("://"))
            .ok_or_else(|| anyhow!("mirror list {list} names no repository"))?;
        bases.push(first.trim_end_matches('/').to_string());
        fetch.keep(&fetched)?;
    }
    Ok(bases)
}

/// Crawl every repository of a yum source.
pub async fn crawl(src: &Source, fetch: &IndexFetcher, progress: &(dyn Fn(String) + Sync)) -> Result<Found> {
    let patterns = src.patterns()?;
    let mut found: Vec<(String, RpmPackage)> = Vec::new();
    for base in bases(src, fetch).await? {
        progress(format!("{base}: repomd.xml"));
        let repomd_url = format!("{base}/repodata/repomd.xml");
        let fetched = fetch.get(&repomd_url).await?.ok_or_else(|| anyhow!("{repomd_url} not found"))?;
        let mut sig = None;
        if let Some(keyring) = src.index_key() {
            let s = fetch.get(&format!("{repomd_url}.asc")).await?.ok_or_else(|| {
                anyhow!("{base}: repomd.xml is not signed (no repomd.xml.asc); set signed_index: false to accept it")
            })?;
            gpg::verify_detached(keyring, &fetched.body, &s.body, gpg::ExpiredKey::Refuse)
                .with_context(|| format!("{base}/repodata/repomd.xml"))?;
            sig = Some(s);
        }
        super::freshness::check_repomd(&fetch.state_path(&format!("yum {base}")), &fetched.body)
            .with_context(|| repomd_url.clone())?;
        fetch.keep(&fetched)?;
        if let Some(s) = &sig {
            fetch.keep(s)?;
        }
        let repomd = fetched.body;
        // An unchanged (signed) repomd means an unchanged primary: reuse its result.
        let memo_slot = format!("yum {base} {:?}", src.packages);
        let memo_key = crate::util::sha256_hex(&repomd);
        if let Some(cached) =
            fetch.memo_get(&memo_slot, &memo_key).and_then(|b| serde_json::from_slice::<Vec<RpmPackage>>(&b).ok())
        {
            found.extend(cached.into_iter().map(|p| (base.clone(), p)));
            continue;
        }
        let (href, ctype, csum, size) = repomd_primary(&repomd).with_context(|| repomd_url.clone())?;
        if ctype != "sha256" {
            bail!("{base}: primary checksum type {ctype} is not supported (sha256 only)");
        }
        progress(format!("{base}: {href}"));
        let data = fetch.get_verified(&format!("{base}/{href}"), &super::http::Checksum::Sha256(csum), size).await?;
        let keep_patterns = patterns.clone();
        let packages = crate::cpu::run(1, move |_| -> Result<Vec<RpmPackage>> {
            parse_primary(decompress(&data)?, |name| keep_patterns.iter().any(|p| p.is_match(name)))
        })
        .await?;
        fetch.memo_put(&memo_slot, &memo_key, &serde_json::to_vec(&packages)?)?;
        found.extend(packages.into_iter().map(|p| (base.clone(), p)));
    }
    let to_package = |(base, p): &(String, RpmPackage)| Package {
        url: format!("{}/{}", p.base.as_deref().unwrap_or(base).trim_end_matches('/'), p.href.trim_start_matches('/')),
        also: Vec::new(),
        sha256: p.sha256.clone(),
        sha512: None,
        size: p.size,
    };
    let bundles = match src.grouping {
        Grouping::Suse => {
            // kernel-<flavour>-devel pairs with kernel-devel of the same version-release.
            let mut bases: BTreeMap<(String, String), Package> = BTreeMap::new();
            for f in found.iter().filter(|(_, p)| p.name == "kernel-devel") {
                bases.insert((f.1.version.clone(), f.1.release.clone()), to_package(f));
            }
            found
                .iter()
                .filter(|(_, p)| p.name != "kernel-devel")
                .filter_map(|f| {
                    let base = bases.get(&(f.1.version.clone(), f.1.release.clone()))?;
                    Some(vec![to_package(f), base.clone()])
                })
                .collect()
        }
        _ => found.iter().map(|f| vec![to_package(f)]).collect(),
    };
    Ok(Found { bundles, ..Found::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repomd_and_primary() {
        let repomd = br#"<?xml version="1.0"?><repomd xmlns="http://linux.duke.edu/metadata/repo">
<data type="filelists"><checksum type="sha256">ff</checksum><location href="repodata/f.xml.gz"/></data>
<data type="primary"><checksum type="sha256">abc123</checksum><open-checksum type="sha256">x</open-checksum>
<location href="repodata/abc123-primary.xml.gz"/><size>4242</size></data></repomd>"#;
        let (href, ctype, csum, size) = repomd_primary(repomd).unwrap();
        assert_eq!(
            (href.as_str(), ctype.as_str(), csum.as_str(), size),
            ("repodata/abc123-primary.xml.gz", "sha256", "abc123", Some(4242))
        );
        let primary = br#"<?xml version="1.0"?><metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="2">
<package type="rpm"><name>kernel-devel</name><arch>x86_64</arch><version epoch="0" ver="5.14.0" rel="362.8.1.el9_3"/>
<checksum type="sha256" pkgid="YES">DEADBEEF</checksum><summary>a &amp; b</summary><location href="Packages/k/kernel-devel-5.14.0-362.8.1.el9_3.x86_64.rpm"/>
<size package="20000000" installed="1" archive="2"/><format><rpm:provides><rpm:entry name="kernel-devel"/></rpm:provides></format></package>
<package type="rpm"><name>bash</name><arch>x86_64</arch><version epoch="0" ver="5" rel="1"/><location href="Packages/b/bash.rpm"/></package>
</metadata>"#;
        let pkgs = parse_primary(&primary[..], |n| n == "kernel-devel").unwrap();
        assert_eq!(pkgs.len(), 1);
        let p = &pkgs[0];
        assert_eq!((p.arch.as_str(), p.version.as_str(), p.release.as_str()), ("x86_64", "5.14.0", "362.8.1.el9_3"));
        assert_eq!(p.sha256.as_deref(), Some("deadbeef"));
        assert_eq!(p.size, Some(20000000));
        assert_eq!(p.href, "Packages/k/kernel-devel-5.14.0-362.8.1.el9_3.x86_64.rpm");
    }
}
