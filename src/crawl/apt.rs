//! apt repositories: InRelease (or Release + Release.gpg) verified with the
//! source's keyring, Packages.xz/.gz checked against Release's SHA256, and
//! bundles chosen and grouped by the packages' own Depends, per
//! architecture (see [`flavour_roots`]): a flavour's headers with its
//! -common and kbuild (Debian), or with linux-<src>-headers-<abi> (Ubuntu).

use super::debversion;
use super::http::IndexFetcher;
use super::sources::Source;
use super::Found;
use crate::manifest::Package;
use crate::trust::gpg;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;

/// One stanza of a Packages file (the fields we use).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Stanza {
    pub name: String,
    pub version: String,
    pub filename: String,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub depends: String,
}

/// SHA256 entries of a Release file: path → (sha256, size).
pub fn release_sha256(release: &str) -> HashMap<String, (String, u64)> {
    let mut out = HashMap::new();
    let mut in_sha256 = false;
    for line in release.lines() {
        if !line.starts_with(' ') {
            in_sha256 = line.trim_end() == "SHA256:";
            continue;
        }
        if in_sha256 {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [sha, size, path] = f.as_slice() {
                if let Ok(size) = size.parse() {
                    out.insert(path.to_string(), (sha.to_string(), size));
                }
            }
        }
    }
    out
}

/// Parse a Packages file, keeping stanzas whose name passes `keep`.
pub fn parse_packages(text: &str, keep: impl Fn(&str) -> bool) -> Vec<Stanza> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut s = Stanza::default();
        for line in block.lines() {
            if line.starts_with(' ') || line.starts_with('\t') {
                continue; // continuation lines: only Description uses them
            }
            let Some((key, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            match key {
                "Package" => s.name = value.to_string(),
                "Version" => s.version = value.to_string(),
                "Filename" => s.filename = value.to_string(),
                "Size" => s.size = value.parse().ok(),
                "SHA256" => s.sha256 = Some(value.to_string()),
                "Depends" => s.depends = value.to_string(),
                _ => {}
            }
        }
        if !s.name.is_empty() && !s.filename.is_empty() && keep(&s.name) {
            out.push(s);
        }
    }
    out
}

/// (name, exact version if `(= v)`) for each dependency, first alternative of each.
fn depends(field: &str) -> Vec<(String, Option<String>)> {
    field
        .split(',')
        .filter_map(|group| {
            let atom = group.split('|').next()?.trim();
            let (name, rest) = atom.split_once(' ').map_or((atom, ""), |(n, r)| (n, r));
            let name = name.split(':').next().unwrap_or(name).to_string(); // drop :any
            let version =
                rest.trim().strip_prefix("(=").and_then(|v| v.strip_suffix(')')).map(|v| v.trim().to_string());
            (!name.is_empty()).then_some((name, version))
        })
        .collect()
}

/// A dependency that belongs in the bundle: other headers packages and kbuild.
fn is_bundle_dependency(name: &str) -> bool {
    name.starts_with("linux-kbuild-")
        || (name.starts_with("linux-") && name.contains("-headers-") && !name.ends_with("-headers-generic"))
}

/// The real flavour headers packages of one architecture's index, found
/// from the archive's own relationships rather than by name:
/// - a *leaf* is a headers or kbuild package with no headers or kbuild
///   dependency of its own (Debian's -common and kbuild, Ubuntu's
///   linux-<src>-headers-<abi>);
/// - a *candidate* is a `linux-headers-*` package that depends directly on
///   a leaf;
/// - a *root* (one bundle) is a candidate no other candidate depends on.
///
/// So metapackages (`linux-headers-amd64`, `linux-headers-6.12-amd64`,
/// Ubuntu's `linux-headers-generic`) are not bundles (they depend on a
/// flavour, not a leaf), shared parts such as `-common-rt` are not either
/// (a flavour depends on them), and a new kernel series needs no pattern.
pub fn flavour_roots(stanzas: &[Stanza]) -> BTreeSet<String> {
    let mut deps_of: HashMap<&str, Vec<String>> = HashMap::new();
    for s in stanzas {
        let deps = deps_of.entry(s.name.as_str()).or_default();
        for (name, _) in depends(&s.depends) {
            if is_bundle_dependency(&name) && !deps.contains(&name) {
                deps.push(name);
            }
        }
    }
    let is_leaf = |name: &str| deps_of.get(name).is_some_and(|d| d.is_empty());
    let candidates: BTreeSet<&str> = deps_of
        .iter()
        .filter(|(name, deps)| name.starts_with("linux-headers-") && deps.iter().any(|d| is_leaf(d)))
        .map(|(name, _)| *name)
        .collect();
    let depended: BTreeSet<&str> = candidates
        .iter()
        .flat_map(|c| deps_of[c].iter().map(String::as_str))
        .filter(|d| candidates.contains(d))
        .collect();
    candidates.difference(&depended).map(|s| s.to_string()).collect()
}

/// Group root packages with their headers/kbuild dependencies.
pub fn group_by_depends(stanzas: &[Stanza], is_root: impl Fn(&str) -> bool) -> Vec<Vec<Stanza>> {
    let mut by_name: HashMap<&str, Vec<&Stanza>> = HashMap::new();
    for s in stanzas {
        by_name.entry(&s.name).or_default().push(s);
    }
    let mut bundles = Vec::new();
    for root in stanzas.iter().filter(|s| is_root(&s.name)) {
        let mut group: Vec<Stanza> = vec![root.clone()];
        let mut queue = vec![root];
        while let Some(pkg) = queue.pop() {
            for (name, exact) in depends(&pkg.depends) {
                if !is_bundle_dependency(&name) || group.iter().any(|g| g.name == name) {
                    continue;
                }
                let Some(candidates) = by_name.get(name.as_str()) else {
                    log::debug!("{} {}: dependency {name} is not in this index", root.name, root.version);
                    continue;
                };
                let chosen = match &exact {
                    Some(v) => candidates.iter().find(|c| &c.version == v),
                    // Unversioned: the build of the same source version, else the newest.
                    None => candidates
                        .iter()
                        .find(|c| c.version == root.version)
                        .or_else(|| candidates.iter().max_by(|a, b| debversion::compare(&a.version, &b.version))),
                };
                if let Some(dep) = chosen {
                    group.push((*dep).clone());
                    queue.push(dep);
                }
            }
        }
        group.sort_by(|a, b| a.name.cmp(&b.name));
        bundles.push(group);
    }
    bundles
}

/// The verified Release text of one suite, checked for freshness before
/// anything of it is kept.
async fn release_text(src: &Source, fetch: &IndexFetcher, suite: &str) -> Result<String> {
    let base = format!("{}/dists/{suite}", src.url.trim_end_matches('/'));
    let mut kept = Vec::new();
    let text = match fetch.get(&format!("{base}/InRelease")).await? {
        Some(signed) => {
            let text = match src.index_key() {
                Some(keyring) => {
                    gpg::verify_clearsigned(keyring, &signed.body).with_context(|| format!("{suite}/InRelease"))?
                }
                None => gpg::strip_clearsign(&signed.body),
            };
            kept.push(signed);
            text
        }
        None => {
            let release = fetch
                .get(&format!("{base}/Release"))
                .await?
                .ok_or_else(|| anyhow!("{suite}: no InRelease or Release"))?;
            let sig = fetch.get(&format!("{base}/Release.gpg")).await?;
            match (src.index_key(), &sig) {
                (Some(keyring), Some(sig)) => {
                    gpg::verify_detached(keyring, &release.body, &sig.body, gpg::ExpiredKey::Refuse)
                        .with_context(|| format!("{suite}/Release"))?
                }
                (Some(_), None) => {
                    bail!("{suite}: unsigned repository (no InRelease or Release.gpg); set insecure: true to accept it")
                }
                (None, _) => {}
            }
            let text = release.body.clone();
            kept.push(release);
            kept.extend(sig);
            text
        }
    };
    let text = String::from_utf8(text).map_err(|_| anyhow!("{suite}: Release is not UTF-8"))?;
    let slot = format!("apt {} {suite}", src.url);
    super::freshness::check_release(src, &fetch.state_path(&slot), &text, crate::util::now_secs() as i64)
        .with_context(|| format!("{suite}/Release"))?;
    for f in &kept {
        fetch.keep(f)?;
    }
    Ok(text)
}

fn decompress(path: &str, data: &[u8]) -> Result<String> {
    let mut out = String::new();
    let mut reader: Box<dyn Read + '_> = if path.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new_multi_decoder(data))
    } else if path.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(data))
    } else {
        Box::new(data)
    };
    reader.read_to_string(&mut out).with_context(|| format!("decompressing {path}"))?;
    Ok(out)
}

/// Crawl every suite, component and architecture of an apt source. Roots
/// and groups are found per architecture: a kbuild package has one name
/// and a build per architecture.
pub async fn crawl(src: &Source, fetch: &IndexFetcher, progress: &(dyn Fn(String) + Sync)) -> Result<Found> {
    let filter = src.patterns()?;
    let mut by_arch: BTreeMap<String, Vec<Stanza>> = BTreeMap::new();
    for suite in &src.suites {
        progress(format!("{suite}: Release"));
        let release = release_text(src, fetch, suite).await?;
        // An unchanged signed Release means unchanged Packages: reuse what
        // they gave last time instead of fetching and parsing them again.
        let memo_slot = format!("apt-v2 {} {} {:?} {:?}", src.url, suite, src.components, src.architectures);
        let memo_key = crate::util::sha256_hex(release.as_bytes());
        if let Some(cached) = fetch
            .memo_get(&memo_slot, &memo_key)
            .and_then(|b| serde_json::from_slice::<BTreeMap<String, Vec<Stanza>>>(&b).ok())
        {
            for (arch, stanzas) in cached {
                by_arch.entry(arch).or_default().extend(stanzas);
            }
            continue;
        }
        let mut suite_stanzas: BTreeMap<String, Vec<Stanza>> = BTreeMap::new();
        let checksums = release_sha256(&release);
        for component in &src.components {
            for arch in &src.architectures {
                let stem = format!("{component}/binary-{arch}/Packages");
                let Some((path, (sha, size))) =
                    [".xz", ".gz", ""].iter().find_map(|ext| checksums.get_key_value(&format!("{stem}{ext}")))
                else {
                    bail!("{suite}: Release lists no {stem}");
                };
                progress(format!("{suite}: {path}"));
                let url = format!("{}/dists/{suite}/{path}", src.url.trim_end_matches('/'));
                let data = fetch.get_verified(&url, sha, Some(*size)).await.with_context(|| suite.to_string())?;
                let path = path.clone();
                let parsed = tokio::task::spawn_blocking(move || -> Result<Vec<Stanza>> {
                    let text = decompress(&path, &data)?;
                    Ok(parse_packages(&text, |name| name.starts_with("linux-")))
                })
                .await
                .map_err(|e| anyhow!("parsing task failed: {e}"))??;
                suite_stanzas.entry(arch.clone()).or_default().extend(parsed);
            }
        }
        fetch.memo_put(&memo_slot, &memo_key, &serde_json::to_vec(&suite_stanzas)?)?;
        for (arch, stanzas) in suite_stanzas {
            by_arch.entry(arch).or_default().extend(stanzas);
        }
    }
    let base = src.url.trim_end_matches('/');
    let mut bundles = Vec::new();
    for stanzas in by_arch.values() {
        let roots = flavour_roots(stanzas);
        let is_root =
            |name: &str| roots.contains(name) && (filter.is_empty() || filter.iter().any(|p| p.is_match(name)));
        for group in group_by_depends(stanzas, is_root) {
            bundles.push(
                group
                    .into_iter()
                    .map(|s| Package {
                        url: format!("{base}/{}", s.filename),
                        also: Vec::new(),
                        sha256: s.sha256,
                        size: s.size,
                    })
                    .collect(),
            );
        }
    }
    Ok(Found { bundles })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKAGES: &str = "\
Package: linux-headers-6.12.107+deb13-amd64
Version: 6.12.107-1
Depends: linux-base (>= 4.12~), linux-headers-6.12.107+deb13-common (= 6.12.107-1), linux-image-6.12.107+deb13-amd64 (= 6.12.107-1) | linux-image-6.12.107+deb13-amd64-unsigned (= 6.12.107-1), linux-kbuild-6.12.107+deb13, gcc-14
Filename: pool/a.deb
Size: 10
SHA256: aa
Description: headers
 long text

Package: linux-headers-6.12.107+deb13-common
Version: 6.12.107-1
Filename: pool/c.deb
Size: 20
SHA256: cc

Package: linux-kbuild-6.12.107+deb13
Version: 6.12.107-1
Filename: pool/k.deb
SHA256: kk

Package: linux-headers-5.4.0-1092-aws
Version: 5.4.0-1092.100
Depends: linux-aws-headers-5.4.0-1092, libc6 (>= 2.14)
Filename: pool/aws.deb

Package: linux-aws-headers-5.4.0-1092
Version: 5.4.0-1092.100
Filename: pool/aws-common.deb
";

    #[test]
    fn groups_debian_triples_and_ubuntu_pairs() {
        let stanzas = parse_packages(PACKAGES, |n| n.starts_with("linux-"));
        assert_eq!(stanzas.len(), 5);
        let groups = group_by_depends(&stanzas, |n| {
            n == "linux-headers-6.12.107+deb13-amd64" || n == "linux-headers-5.4.0-1092-aws"
        });
        let names: Vec<Vec<&str>> = groups.iter().map(|g| g.iter().map(|s| s.name.as_str()).collect()).collect();
        assert_eq!(
            names,
            [
                vec![
                    "linux-headers-6.12.107+deb13-amd64",
                    "linux-headers-6.12.107+deb13-common",
                    "linux-kbuild-6.12.107+deb13"
                ],
                vec!["linux-aws-headers-5.4.0-1092", "linux-headers-5.4.0-1092-aws"],
            ]
        );
    }

    #[test]
    fn roots_come_from_relationships_not_names() {
        let text = "\
Package: linux-headers-amd64
Depends: linux-headers-6.1.0-56-amd64 (= 6.1.192-2)
Filename: pool/m.deb

Package: linux-headers-6.12-amd64
Depends: linux-headers-6.12.117+deb12-amd64 (= 6.12.117-1~deb12u1)
Filename: pool/m612.deb

Package: linux-headers-6.1.0-56-amd64
Depends: linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), gcc-12
Filename: pool/a.deb

Package: linux-headers-6.1.0-56-common
Filename: pool/c.deb

Package: linux-kbuild-6.1
Filename: pool/k.deb

Package: linux-headers-6.12.117+deb12-amd64
Depends: linux-headers-6.12.117+deb12-common (= 6.12.117-1~deb12u1), linux-kbuild-6.12.117+deb12
Filename: pool/a612.deb

Package: linux-headers-6.12.117+deb12-rt-amd64
Depends: linux-headers-6.12.117+deb12-common-rt (= 6.12.117-1~deb12u1), linux-kbuild-6.12.117+deb12
Filename: pool/rt612.deb

Package: linux-headers-6.12.117+deb12-common-rt
Version: 6.12.117-1~deb12u1
Depends: linux-headers-6.12.117+deb12-common (= 6.12.117-1~deb12u1)
Filename: pool/crt612.deb

Package: linux-headers-6.12.117+deb12-common
Version: 6.12.117-1~deb12u1
Filename: pool/c612.deb

Package: linux-kbuild-6.12.117+deb12
Version: 6.12.117-1~deb12u1
Filename: pool/k612.deb

Package: linux-headers-5.15.0-91-generic
Depends: linux-headers-5.15.0-91, libc6 (>= 2.34)
Filename: pool/u.deb

Package: linux-headers-5.15.0-91
Filename: pool/uc.deb

Package: linux-headers-generic
Depends: linux-headers-5.15.0-91-generic
Filename: pool/um.deb
";
        let stanzas = parse_packages(text, |n| n.starts_with("linux-"));
        let roots: Vec<String> = flavour_roots(&stanzas).into_iter().collect();
        assert_eq!(
            roots,
            [
                "linux-headers-5.15.0-91-generic",
                "linux-headers-6.1.0-56-amd64",
                "linux-headers-6.12.117+deb12-amd64",
                "linux-headers-6.12.117+deb12-rt-amd64"
            ]
        );
        let groups = group_by_depends(&stanzas, |n| roots.iter().any(|r| r == n));
        let rt = groups.iter().find(|g| g.iter().any(|s| s.name.ends_with("rt-amd64"))).unwrap();
        let names: Vec<&str> = rt.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "linux-headers-6.12.117+deb12-common",
                "linux-headers-6.12.117+deb12-common-rt",
                "linux-headers-6.12.117+deb12-rt-amd64",
                "linux-kbuild-6.12.117+deb12"
            ]
        );
    }

    #[test]
    fn release_checksums() {
        let release = "Origin: Debian\nMD5Sum:\n 0123 10 main/binary-amd64/Packages.xz\nSHA256:\n abcd 8790396 main/binary-amd64/Packages.xz\n";
        let sums = release_sha256(release);
        assert_eq!(sums["main/binary-amd64/Packages.xz"], ("abcd".to_string(), 8790396));
        assert_eq!(sums.len(), 1);
    }
}
