//! What COS publishes beside a build's `kernel-src.tar.gz` and
//! `kernel-headers.tgz` in `cos-tools/<build>/`: an `.md5` of every file,
//! and the toolchain the kernel was built with: `toolchain_env` (the `CC`
//! and `CXX` it names) and the tarball's location, in
//! `toolchain.tar.xz.gcs` (`bucket:` and `path:` lines), else
//! `toolchain_path` (a path in the SDK buckets), else `toolchain.tar.xz`
//! in the build's own directory. The layout is the one COS's own
//! kernel-devenv reads.
//!
//! An `.md5` proves integrity against a bad mirror or a cut transfer, not
//! authorship: it comes over the same HTTPS as the file.

use crate::error::{BuildError, ErrorClass};
use crate::fetch::Fetcher;
use crate::manifest::Package;
use md5::{Digest, Md5};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The SDK buckets a `toolchain_path` is looked up in, in COS's order.
const SDK_BUCKETS: [&str; 2] = ["cos-sdk", "chromiumos-sdk"];

/// The toolchain a COS kernel was built with, downloaded and checked.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// The tarball, in the package store.
    pub tarball: PathBuf,
    pub url: String,
    /// The compilers `toolchain_env` names (command names on the
    /// toolchain's PATH).
    pub cc: String,
    pub cxx: Option<String>,
}

/// Bounds on the small text files beside a build.
const MAX_NOTE_BYTES: u64 = 64 << 10;

fn read_note(path: &Path) -> Result<String, BuildError> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_NOTE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| BuildError::new(ErrorClass::Hostile, format!("{}: {e}", path.display())))?;
    if text.len() as u64 > MAX_NOTE_BYTES {
        return Err(BuildError::new(ErrorClass::Hostile, format!("{} is over {MAX_NOTE_BYTES} bytes", path.display())));
    }
    Ok(text)
}

/// The file beside `url` (same directory) named `name`.
fn beside(url: &str, name: &str) -> Option<String> {
    let (dir, _) = url.rsplit_once('/')?;
    Some(format!("{dir}/{name}"))
}

/// Fetch a small file; `None` when every location says it does not exist.
async fn fetch_optional(fetcher: &Fetcher, url: &str) -> Result<Option<PathBuf>, BuildError> {
    match fetcher.fetch(&Package::new(url)).await {
        Ok(path) => Ok(Some(path)),
        Err(e) if e.class == ErrorClass::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The hex MD5 of a file.
pub fn md5_of(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The digest an `.md5` file states: its first word, 32 hex digits
/// (`md5sum`'s `<hex>  <name>` or the bare digest COS writes).
pub fn stated_md5(text: &str) -> Option<String> {
    let word = text.split_whitespace().next()?;
    (word.len() == 32 && word.bytes().all(|b| b.is_ascii_hexdigit())).then(|| word.to_ascii_lowercase())
}

/// Compare `file` (downloaded from `url`) with the `.md5` published beside
/// it. A missing `.md5` is accepted (the transport's integrity stands);
/// one that differs is refused.
pub async fn check_md5(fetcher: &Fetcher, url: &str, file: &Path) -> Result<bool, BuildError> {
    let name = crate::manifest::file_name_of(url);
    let Some(note) = fetch_optional(fetcher, &format!("{url}.md5")).await? else { return Ok(false) };
    let stated = stated_md5(&read_note(&note)?)
        .ok_or_else(|| BuildError::new(ErrorClass::Hostile, format!("{name}.md5 holds no MD5 digest")))?;
    let (file, want) = (file.to_path_buf(), stated.clone());
    let actual = crate::cpu::run(1, move |_| md5_of(&file))
        .await
        .map_err(|e| BuildError::new(ErrorClass::Internal, format!("hashing {name}: {e}")))?;
    if actual != want {
        return Err(BuildError::new(
            ErrorClass::Refused,
            format!("package {name}: its published .md5 says {stated}, the file's MD5 is {actual}"),
        ));
    }
    Ok(true)
}

/// A command name from `toolchain_env`: no paths, no shell.
fn command_name(value: &str) -> Option<String> {
    let value = value.trim().trim_matches('"');
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
        && !value.starts_with(['-', '.']);
    ok.then(|| value.to_string())
}

/// `CC` and `CXX` from a `toolchain_env` (`NAME=value` lines).
pub fn parse_env(text: &str) -> Result<(String, Option<String>), String> {
    let (mut cc, mut cxx) = (None, None);
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else { continue };
        let slot = match key.trim().trim_start_matches("export ").trim() {
            "CC" => &mut cc,
            "CXX" => &mut cxx,
            _ => continue,
        };
        *slot = Some(command_name(value).ok_or_else(|| format!("toolchain_env names {key} {value:?}"))?);
    }
    Ok((cc.ok_or("toolchain_env names no CC")?, cxx))
}

/// A bucket or object path from a `.gcs` note or `toolchain_path`.
fn object_path(path: &str) -> Option<&str> {
    let path = path.trim().trim_start_matches('/');
    let ok = !path.is_empty()
        && path.len() <= 512
        && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-/".contains(&b))
        && path.split('/').all(|part| !part.is_empty() && part != "." && part != "..");
    ok.then_some(path)
}

/// The storage origin and bucket of a URL: `https://host/bucket/...` →
/// (`https://host`, `bucket`).
fn origin_of(url: &str) -> Option<(String, String)> {
    let parsed = url::Url::parse(url).ok()?;
    let bucket = parsed.path_segments()?.next()?.to_string();
    let origin = parsed.origin().ascii_serialization();
    Some((origin, bucket))
}

/// Where the toolchain tarball is, as COS says beside the build: the
/// locations to try in order.
async fn toolchain_locations(fetcher: &Fetcher, src_url: &str) -> Result<Vec<String>, BuildError> {
    let hostile = |m: String| BuildError::new(ErrorClass::Hostile, m);
    let (origin, _) = origin_of(src_url).ok_or_else(|| hostile(format!("{src_url} is not a storage URL")))?;
    let at = |name: &str| beside(src_url, name).ok_or_else(|| hostile(format!("{src_url} has no directory")));
    if let Some(note) = fetch_optional(fetcher, &at("toolchain.tar.xz.gcs")?).await? {
        let text = read_note(&note)?;
        let field =
            |name: &str| text.lines().find_map(|l| l.trim().strip_prefix(name).map(str::trim)).and_then(object_path);
        let (Some(bucket), Some(path)) = (field("bucket:"), field("path:")) else {
            return Err(hostile("toolchain.tar.xz.gcs names no bucket and path".into()));
        };
        if bucket.contains('/') {
            return Err(hostile(format!("toolchain.tar.xz.gcs names bucket {bucket:?}")));
        }
        return Ok(vec![format!("{origin}/{bucket}/{path}")]);
    }
    if let Some(note) = fetch_optional(fetcher, &at("toolchain_path")?).await? {
        let text = read_note(&note)?;
        let path = object_path(text.lines().next().unwrap_or(""))
            .ok_or_else(|| hostile("toolchain_path names no object path".into()))?;
        return Ok(SDK_BUCKETS.iter().map(|b| format!("{origin}/{b}/{path}")).collect());
    }
    Ok(vec![at("toolchain.tar.xz")?])
}

/// The toolchain published beside the build of `src_url`: `None` when
/// the build names none (no `toolchain_env`).
pub async fn toolchain(fetcher: &Fetcher, src_url: &str) -> Result<Option<Toolchain>, BuildError> {
    let env_url = beside(src_url, "toolchain_env")
        .ok_or_else(|| BuildError::new(ErrorClass::Hostile, format!("{src_url} has no directory")))?;
    let Some(env) = fetch_optional(fetcher, &env_url).await? else { return Ok(None) };
    let (cc, cxx) = parse_env(&read_note(&env)?).map_err(|m| BuildError::new(ErrorClass::Hostile, m))?;
    let mut locations = toolchain_locations(fetcher, src_url).await?;
    let mut package = Package::new(locations.remove(0));
    package.also = locations;
    let tarball = fetcher.fetch(&package).await.map_err(|e| e.context("the toolchain published beside the kernel"))?;
    let mut url = package.url.clone();
    for location in package.locations() {
        // The .md5 of the location that answered (the fetcher tried them in order).
        if check_md5(fetcher, location, &tarball).await? {
            url = location.to_string();
            break;
        }
    }
    Ok(Some(Toolchain { tarball, url, cc, cxx }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toolchain_env_gives_command_names_only() {
        assert_eq!(
            parse_env("CC=x86_64-cros-linux-gnu-clang\nCXX=x86_64-cros-linux-gnu-clang++\n").unwrap(),
            ("x86_64-cros-linux-gnu-clang".into(), Some("x86_64-cros-linux-gnu-clang++".into()))
        );
        assert!(parse_env("CC=/tmp/evil\n").is_err());
        assert!(parse_env("CC=$(reboot)\n").is_err());
        assert!(parse_env("CXX=g++\n").is_err(), "no CC");
    }

    #[test]
    fn object_paths_stay_inside_their_bucket() {
        assert_eq!(
            object_path("2021/06/x86_64-cros-linux-gnu-2021.06.26.tar.xz\n"),
            Some("2021/06/x86_64-cros-linux-gnu-2021.06.26.tar.xz")
        );
        assert_eq!(object_path("../cos-tools/x"), None);
        assert_eq!(object_path("a//b"), None);
        assert_eq!(object_path("a b"), None);
    }

    #[test]
    fn md5_notes_are_read_as_md5sum_writes_them() {
        assert_eq!(
            stated_md5("D41D8CD98F00B204E9800998ECF8427E  kernel-src.tar.gz\n").as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(stated_md5("not a digest"), None);
    }

    #[test]
    fn the_storage_origin_and_bucket_come_from_the_kernels_url() {
        assert_eq!(
            origin_of("https://storage.example/cos-tools/16919.235.36/kernel-src.tar.gz"),
            Some(("https://storage.example".into(), "cos-tools".into()))
        );
    }
}
