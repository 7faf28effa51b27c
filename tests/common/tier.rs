//! Two flavours of one synthetic Debian kernel (they share their
//! `-common` package) on a loopback mirror, and a file:// tier: the
//! fixture of the package-tier and pack-object tests.

use super::http::Server;
use super::mirror::Mounted;
use super::pkgs::{self, Synthetic};
use super::{sha256_file, tempdir};
use kpackfs::manifest::{BundleSpec, Manifest, Package};
use std::path::{Path, PathBuf};

const CANONICAL: &str = "http://ftp.debian.org/debian";
const POOL: &str = "/debian/pool/main/l/linux";

pub struct Kernels {
    pub work: tempfile::TempDir,
    pub server: Server,
    pub manifest: PathBuf,
    pub tier: PathBuf,
    pub flavours: Vec<Synthetic>,
}

impl Kernels {
    /// Two flavours of one ABI on the mirror, and an empty tier directory.
    pub fn new() -> Kernels {
        let work = tempdir();
        let amd64 = pkgs::synthetic_debian_arch(work.path(), "9.9.0-1", "amd64", ["xz", "xz", "xz"]);
        let arm_dir = work.path().join("arm64");
        std::fs::create_dir_all(&arm_dir).unwrap();
        let mut arm64 = pkgs::synthetic_debian_arch(&arm_dir, "9.9.0-1", "arm64", ["xz", "xz", "xz"]);
        // One `_all.deb` for both, as in the archive (dpkg-deb stamps
        // times, so the second one made may differ).
        arm64.files[1] = amd64.files[1].clone();
        let pool = work.path().join("www").join(POOL.trim_start_matches('/'));
        std::fs::create_dir_all(&pool).unwrap();
        let mut manifest = Manifest::default();
        for k in [&amd64, &arm64] {
            let packages = k
                .files
                .iter()
                .map(|f| {
                    let name = f.file_name().unwrap().to_str().unwrap();
                    std::fs::copy(f, pool.join(name)).unwrap();
                    Package {
                        url: format!("{CANONICAL}/pool/main/l/linux/{name}"),
                        also: Vec::new(),
                        sha256: Some(sha256_file(f)),
                        sha512: None,
                        size: Some(std::fs::metadata(f).unwrap().len()),
                    }
                })
                .collect();
            manifest.insert(BundleSpec { kind: "debian".into(), name: None, uname: None, signed_by: None, packages });
        }
        let path = work.path().join("manifest.yml");
        manifest.save(&path).unwrap();
        let server = Server::start();
        server.mount("/debian", &work.path().join("www/debian"));
        let tier = work.path().join("tier");
        std::fs::create_dir_all(&tier).unwrap();
        Kernels { server, manifest: path, tier, flavours: vec![amd64, arm64], work }
    }

    /// The loopback mirror for the canonical archive, and nothing else.
    pub fn mirror_args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["--no-apt-mirrors", "--no-archives", "--mirror"].map(String::from).into();
        args.push(format!("{CANONICAL}={}", self.server.url("/debian")));
        args
    }

    pub fn tier_url(&self) -> String {
        format!("file://{}", self.tier.display())
    }

    pub fn args(&self, more: &[&str]) -> Vec<String> {
        let mut args = self.mirror_args();
        args.extend(["--remote".to_string(), self.tier_url()]);
        args.extend(more.iter().map(|s| s.to_string()));
        args
    }

    pub fn mount(&self, more: &[&str]) -> Mounted {
        Mounted::start(&self.manifest, None, &self.args(more))
    }

    /// The shared `-common` package (the same `_all.deb` for both).
    pub fn common(&self) -> &Path {
        &self.flavours[0].files[1]
    }

    pub fn mirror_path(file: &Path) -> String {
        format!("{POOL}/{}", file.file_name().unwrap().to_str().unwrap())
    }

    pub fn package_object(&self, file: &Path) -> PathBuf {
        self.tier.join("packages/sha256").join(sha256_file(file))
    }

    /// Every file of both flavours, once each (the common one is shared).
    pub fn all_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.flavours.iter().flat_map(|k| k.files.clone()).collect();
        files.sort_by_key(|f| f.file_name().unwrap().to_owned());
        files.dedup_by_key(|f| f.file_name().unwrap().to_owned());
        files
    }
}

pub fn uname(m: &Mounted, k: &Synthetic) -> String {
    let path = m.path(&format!("debian/{}/BUNDLE_UNAME", k.name));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}\n{}", path.display(), m.log()))
}

/// Objects under the tier directory, relative, sorted.
pub fn objects(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}
