//! apt repositories: InRelease (or Release + Release.gpg) verified with the
//! source's keyring, Packages.xz/.gz checked against Release's SHA256, and
//! bundles chosen and grouped by the packages' own Depends, per
//! architecture (see [`flavour_roots`]): a flavour's headers with its
//! -common and kbuild (Debian), or with linux-<src>-headers-<abi> (Ubuntu).

use super::http::{Checksum, IndexFetcher};
use super::sources::Source;
use super::Found;
use crate::manifest::debversion;
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
    #[serde(default)]
    pub sha512: Option<String>,
    pub depends: String,
    /// The base URL its `filename` is under (the suite's host); set when
    /// read, not kept in the memo.
    #[serde(skip)]
    pub base: String,
}

/// Checksummed entries of a Release file: path → (checksum, size). The
/// SHA256 section when there is one, else SHA512 (Ubuntu from 26.10 on
/// publishes only SHA512); MD5Sum and SHA1 are never trusted.
pub fn release_checksums(release: &str) -> HashMap<String, (Checksum, u64)> {
    let mut sha256 = HashMap::new();
    let mut sha512 = HashMap::new();
    let mut section = "";
    for line in release.lines() {
        if !line.starts_with(' ') {
            section = match line.trim_end() {
                "SHA256:" => "sha256",
                "SHA512:" => "sha512",
                _ => "",
            };
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [sum, size, path] = f.as_slice() {
            let Ok(size) = size.parse() else { continue };
            match section {
                "sha256" => drop(sha256.insert(path.to_string(), (Checksum::Sha256(sum.to_string()), size))),
                "sha512" => drop(sha512.insert(path.to_string(), (Checksum::Sha512(sum.to_string()), size))),
                _ => {}
            }
        }
    }
    if sha256.is_empty() {
        sha512
    } else {
        sha256
    }
}

/// The longest line accepted in a Packages file (a real one is under 64 KiB).
const MAX_LINE_BYTES: usize = 1 << 20;
/// The most stanzas kept from one Packages file (a real one keeps a few
/// thousand `linux-*` stanzas).
const MAX_KEPT_STANZAS: usize = 1_000_000;

/// Parse a Packages file, keeping stanzas whose name passes `keep`.
pub fn parse_packages(text: &str, keep: impl Fn(&str) -> bool) -> Vec<Stanza> {
    parse_packages_from(text.as_bytes(), keep).unwrap_or_default()
}

/// Parse a Packages file as a stream, keeping stanzas whose name passes
/// `keep`: memory is what is kept, never the whole (decompressed) file.
/// Lines and the number kept are bounded; a file over a bound is refused.
pub fn parse_packages_from(input: impl std::io::BufRead, keep: impl Fn(&str) -> bool) -> Result<Vec<Stanza>> {
    let mut input = input;
    let mut out = Vec::new();
    let mut s = Stanza::default();
    let mut line = Vec::new();
    let finish = |s: &mut Stanza, out: &mut Vec<Stanza>| -> Result<()> {
        let done = std::mem::take(s);
        if !done.name.is_empty() && !done.filename.is_empty() && keep(&done.name) {
            if out.len() >= MAX_KEPT_STANZAS {
                bail!("more than {MAX_KEPT_STANZAS} matching stanzas: refused");
            }
            out.push(done);
        }
        Ok(())
    };
    loop {
        line.clear();
        let n = std::io::BufRead::read_until(&mut (&mut input).take(MAX_LINE_BYTES as u64 + 1), b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.len() > MAX_LINE_BYTES {
            bail!("a line longer than {MAX_LINE_BYTES} bytes: refused");
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            finish(&mut s, &mut out)?;
            continue;
        }
        if text.starts_with(' ') || text.starts_with('\t') {
            continue; // continuation lines: only Description uses them
        }
        let Some((key, value)) = text.split_once(':') else { continue };
        let value = value.trim();
        match key {
            "Package" => s.name = value.to_string(),
            "Version" => s.version = value.to_string(),
            "Filename" => s.filename = value.to_string(),
            "Size" => s.size = value.parse().ok(),
            "SHA256" => s.sha256 = Some(value.to_string()),
            "SHA512" => s.sha512 = Some(value.to_string()),
            "Depends" => s.depends = value.to_string(),
            _ => {}
        }
    }
    finish(&mut s, &mut out)?;
    Ok(out)
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

/// What a crawl keeps of a Packages file: the stanzas bundles are made of
/// (Ubuntu's `linux-*` packages are ten times more: images, modules, tools).
fn is_headers_package(name: &str) -> bool {
    name.starts_with("linux-headers-") || is_bundle_dependency(name)
}

/// A dependency that belongs in the bundle: other headers packages and kbuild.
fn is_bundle_dependency(name: &str) -> bool {
    name.starts_with("linux-kbuild-") || (name.starts_with("linux-") && name.contains("-headers-"))
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
    let base = format!("{}/dists/{suite}", src.base_for(suite));
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
    let slot = format!("apt {} {suite}", src.base_for(suite));
    super::freshness::check_release(src, &fetch.state_path(&slot), &text, crate::util::now_secs() as i64)
        .with_context(|| format!("{suite}/Release"))?;
    for f in &kept {
        fetch.keep(f)?;
    }
    Ok(text)
}

/// The most bytes a Packages file may decompress to (Ubuntu's largest,
/// universe, is about 80 MB).
const MAX_PACKAGES_BYTES: u64 = 4 << 30;

/// The `linux-*` stanzas of a (compressed) Packages file, parsed as it is
/// decompressed.
fn parse_index(path: &str, data: &[u8]) -> Result<Vec<Stanza>> {
    let reader: Box<dyn Read + '_> = if path.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new_multi_decoder(data))
    } else if path.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(data))
    } else {
        Box::new(data)
    };
    let bounded = std::io::BufReader::with_capacity(1 << 16, reader.take(MAX_PACKAGES_BYTES));
    parse_packages_from(bounded, is_headers_package).with_context(|| format!("reading {path}"))
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
        let base = src.base_for(suite).to_string();
        let memo_slot = format!("apt-v4 {base} {suite} {:?} {:?}", src.components, src.architectures);
        let memo_key = crate::util::sha256_hex(release.as_bytes());
        if let Some(cached) = fetch
            .memo_get(&memo_slot, &memo_key)
            .and_then(|b| serde_json::from_slice::<BTreeMap<String, Vec<Stanza>>>(&b).ok())
        {
            for (arch, stanzas) in cached {
                by_arch
                    .entry(arch)
                    .or_default()
                    .extend(stanzas.into_iter().map(|s| Stanza { base: base.clone(), ..s }));
            }
            continue;
        }
        let mut suite_stanzas: BTreeMap<String, Vec<Stanza>> = BTreeMap::new();
        let checksums = release_checksums(&release);
        for component in &src.components {
            for arch in &src.architectures {
                let stem = format!("{component}/binary-{arch}/Packages");
                let Some((path, (sum, size))) =
                    [".xz", ".gz", ""].iter().find_map(|ext| checksums.get_key_value(&format!("{stem}{ext}")))
                else {
                    bail!("{suite}: Release lists no {stem} with a SHA256 or SHA512");
                };
                progress(format!("{suite}: {path}"));
                let url = format!("{}/dists/{suite}/{path}", src.base_for(suite));
                let data = fetch.get_verified(&url, sum, Some(*size)).await.with_context(|| suite.to_string())?;
                let path = path.clone();
                let parsed = tokio::task::spawn_blocking(move || parse_index(&path, &data))
                    .await
                    .map_err(|e| anyhow!("parsing task failed: {e}"))??;
                suite_stanzas.entry(arch.clone()).or_default().extend(parsed);
            }
        }
        fetch.memo_put(&memo_slot, &memo_key, &serde_json::to_vec(&suite_stanzas)?)?;
        for (arch, stanzas) in suite_stanzas {
            by_arch.entry(arch).or_default().extend(stanzas.into_iter().map(|s| Stanza { base: base.clone(), ..s }));
        }
    }
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
                        url: format!("{}/{}", s.base, s.filename),
                        also: Vec::new(),
                        sha512: if s.sha256.is_none() { s.sha512 } else { None },
                        sha256: s.sha256,
                        size: s.size,
                    })
                    .collect(),
            );
        }
    }
    Ok(Found { bundles, ..Found::default() })
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
    fn release_checksums_prefer_sha256_and_fall_back_to_sha512() {
        let release = "Origin: Debian\nMD5Sum:\n 0123 10 main/binary-amd64/Packages.xz\nSHA256:\n abcd 8790396 main/binary-amd64/Packages.xz\nSHA512:\n ef01 8790396 main/binary-amd64/Packages.xz\n";
        let sums = release_checksums(release);
        assert_eq!(sums["main/binary-amd64/Packages.xz"], (Checksum::Sha256("abcd".to_string()), 8790396));
        assert_eq!(sums.len(), 1);
        let only512 = "Origin: Ubuntu\nSHA512:\n ef01 10 main/binary-amd64/Packages.xz\n";
        let sums = release_checksums(only512);
        assert_eq!(sums["main/binary-amd64/Packages.xz"], (Checksum::Sha512("ef01".to_string()), 10));
        assert!(
            release_checksums("Origin: x\nMD5Sum:\n 0123 10 main/binary-amd64/Packages.xz\n").is_empty(),
            "md5 is never trusted"
        );
    }

    #[test]
    fn packages_stream_keeps_sha512_and_refuses_overlong_lines() {
        let text = "Package: linux-headers-7.3.0-9-generic\nVersion: 7.3.0-9.9\nFilename: pool/x.deb\nSHA512: abc\n\nPackage: other\nFilename: pool/o.deb\n";
        let kept = parse_packages_from(text.as_bytes(), |n| n.starts_with("linux-")).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].sha512.as_deref(), Some("abc"));
        assert!(kept[0].sha256.is_none());
        let long = format!("Package: linux-x\nDescription: {}\n", "a".repeat(MAX_LINE_BYTES + 10));
        let err = parse_packages_from(long.as_bytes(), |_| true).unwrap_err();
        assert!(format!("{err}").contains("longer than"), "{err}");
    }
}
