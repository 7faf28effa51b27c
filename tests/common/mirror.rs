//! A loopback mirror serving the real Debian packages of the current
//! bookworm kernel and synthetic Ubuntu, RHEL and SUSE packages, with a
//! manifest that names them by canonical URLs, and the mount under test.

use super::http::Server;
use super::pkgs::{self, real_debian, with_lock, RealDebian};
use super::{kpackfs, tempdir};
use kpackfs::manifest::{BundleSpec, Manifest, Package};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Canonical prefix → path on the loopback mirror.
pub const CANONICAL: &[(&str, &str)] = &[
    ("http://security.debian.org/debian-security", "/debian-security"),
    ("http://ftp.debian.org/debian", "/debian"),
    ("http://archive.ubuntu.com/ubuntu", "/ubuntu"),
    ("https://mirror.stream.centos.org/9-stream", "/centos"),
    ("https://download.opensuse.org/update/leap/15.6/oss", "/suse"),
];

#[derive(Debug, Clone)]
pub struct Bundle {
    pub kind: String,
    pub name: String,
    pub uname: String,
    pub id: String,
    /// (file path on disk, URL path on the mirror)
    pub files: Vec<(PathBuf, String)>,
}

/// A package file, its path on the mirror, and its (sha256, size) if known.
type SourceFile = (PathBuf, String, Option<(String, u64)>);

pub struct Fixture {
    pub server: Server,
    pub dir: tempfile::TempDir,
    pub manifest: PathBuf,
    pub bundles: Vec<Bundle>,
}

/// Synthetic packages, made once per test cache (rpmbuild stamps build
/// times, so reusing them keeps checksums stable across tests).
fn synthetic_packages() -> Vec<(&'static str, Vec<PathBuf>)> {
    let dir = pkgs::test_cache().join("synthetic-v2");
    with_lock(&pkgs::test_cache().join("synthetic.lock"), || {
        let done = dir.join(".done");
        if !done.exists() {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let sets = [
                ("ubuntu", pkgs::synthetic_ubuntu(&dir, "xz").files),
                ("redhat", pkgs::synthetic_rhel(&dir, "redhat", "w19.zstdio").files),
                ("suse", pkgs::synthetic_suse(&dir, "w9.xzdio").files),
            ];
            let list: String = sets
                .iter()
                .map(|(k, fs)| {
                    format!("{k} {}\n", fs.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" "))
                })
                .collect();
            std::fs::write(dir.join("list"), list).unwrap();
            std::fs::write(&done, "").unwrap();
        }
        std::fs::read_to_string(dir.join("list"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut it = l.split_whitespace();
                let kind: &'static str = match it.next().unwrap() {
                    "ubuntu" => "ubuntu",
                    "redhat" => "redhat",
                    _ => "suse",
                };
                (kind, it.map(PathBuf::from).collect())
            })
            .collect()
    })
}

fn mirror_path(kind: &str, file: &Path) -> String {
    let name = file.file_name().unwrap().to_str().unwrap();
    match kind {
        "ubuntu" => format!("/ubuntu/pool/main/l/linux/{name}"),
        "redhat" => format!("/centos/AppStream/x86_64/os/Packages/{name}"),
        _ => {
            let arch = if name.ends_with(".noarch.rpm") { "noarch" } else { "x86_64" };
            format!("/suse/{arch}/{name}")
        }
    }
}

fn canonical(mirror_path: &str) -> String {
    let (prefix, path) = CANONICAL.iter().find(|(_, p)| mirror_path.starts_with(&format!("{p}/"))).unwrap();
    format!("{prefix}{}", &mirror_path[path.len()..])
}

impl Fixture {
    /// The mirror and a manifest: the real Debian kernel, plus the synthetic
    /// bundles if `synthetic`.
    pub fn new(synthetic: bool) -> Fixture {
        let dir = tempdir();
        let server = Server::start();
        let root = dir.path().join("mirror");
        for (_, path) in CANONICAL {
            server.mount(path, &root.join(path.trim_start_matches('/')));
        }
        let deb = real_debian();
        let mut sets: Vec<(String, Vec<SourceFile>)> = vec![(
            "debian".into(),
            deb.packages
                .iter()
                .map(|p| {
                    let url = RealDebian::canonical_url(p);
                    let path =
                        CANONICAL.iter().find_map(|(c, m)| url.strip_prefix(c).map(|r| format!("{m}{r}"))).unwrap();
                    (p.path.clone(), path, Some((p.sha256.clone(), p.size)))
                })
                .collect(),
        )];
        if synthetic {
            for (kind, files) in synthetic_packages() {
                sets.push((kind.into(), files.iter().map(|f| (f.clone(), mirror_path(kind, f), None)).collect()));
            }
        }
        let mut manifest = Manifest::default();
        let mut bundles = Vec::new();
        for (kind, files) in sets {
            let mut packages = Vec::new();
            for (file, path, checksum) in &files {
                let dest = root.join(path.trim_start_matches('/'));
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::copy(file, &dest).unwrap();
                let (sha256, size) = checksum
                    .clone()
                    .unwrap_or_else(|| (super::sha256_file(file), std::fs::metadata(file).unwrap().len()));
                packages.push(Package {
                    url: canonical(path),
                    also: Vec::new(),
                    sha256: Some(sha256),
                    sha512: None,
                    size: Some(size),
                });
            }
            let id =
                manifest.insert(BundleSpec { kind: kind.clone(), name: None, uname: None, signed_by: None, packages });
            let e = &manifest.entries[&id];
            bundles.push(Bundle {
                kind,
                name: e.name.clone().unwrap(),
                uname: e.uname.clone().unwrap(),
                id,
                files: files.into_iter().map(|(f, p, _)| (f, p)).collect(),
            });
        }
        let manifest_path = dir.path().join("manifest.yml");
        manifest.save(&manifest_path).unwrap();
        Fixture { server, dir, manifest: manifest_path, bundles }
    }

    pub fn bundle(&self, kind: &str) -> &Bundle {
        self.bundles.iter().find(|b| b.kind == kind).unwrap()
    }

    /// `--mirror` flags pointing every canonical prefix at the loopback mirror.
    pub fn mirror_args(&self) -> Vec<String> {
        // The fixtures' packages are made here: the real archives behind
        // the canonical URLs do not have them.
        let mut args = vec!["--no-apt-mirrors".to_string(), "--no-archives".to_string()];
        for (canonical, path) in CANONICAL {
            args.push("--mirror".into());
            args.push(format!("{canonical}={}", self.server.url(path)));
        }
        args
    }

    /// The mirror's copy of a package (to damage or remove it).
    pub fn mirror_file(&self, url_path: &str) -> PathBuf {
        self.dir.path().join("mirror").join(url_path.trim_start_matches('/'))
    }
}

/// A running mount; unmounted (and its daemon reaped) on drop, pass or fail.
pub struct Mounted {
    pub mnt: PathBuf,
    pub cache: PathBuf,
    pub pid: u32,
    /// What `kpackfs mount` itself printed on stderr.
    pub mount_stderr: String,
    _dir: tempfile::TempDir,
}

impl Mounted {
    pub fn start(manifest: &Path, cache: Option<&Path>, extra: &[String]) -> Mounted {
        Self::start_at(None, manifest, cache, extra)
    }

    /// Mount at `mnt` (reused across mounts), or at a new directory.
    pub fn start_at(mnt: Option<&Path>, manifest: &Path, cache: Option<&Path>, extra: &[String]) -> Mounted {
        Self::launch(mnt, Some(manifest), cache, extra)
    }

    /// Mount without `--manifest`: the shipped manifest and the last crawl result.
    pub fn start_default(cache: &Path, extra: &[String]) -> Mounted {
        Self::launch(None, None, Some(cache), extra)
    }

    /// `kpackfs mount MNT --cache-dir CACHE` and nothing else: every
    /// default as shipped, the background crawl included.
    pub fn start_as_shipped(cache: &Path) -> Mounted {
        Self::launch_with(None, None, Some(cache), &[], false, &[])
    }

    /// As [`Mounted::start`], with these environment variables (AWS_* for a tier).
    pub fn start_env(manifest: &Path, cache: Option<&Path>, extra: &[String], env: &[(String, String)]) -> Mounted {
        Self::launch_with(None, Some(manifest), cache, extra, true, env)
    }

    fn launch(mnt: Option<&Path>, manifest: Option<&Path>, cache: Option<&Path>, extra: &[String]) -> Mounted {
        Self::launch_with(mnt, manifest, cache, extra, true, &[])
    }

    fn launch_with(
        mnt: Option<&Path>,
        manifest: Option<&Path>,
        cache: Option<&Path>,
        extra: &[String],
        test_defaults: bool,
        env: &[(String, String)],
    ) -> Mounted {
        let dir = tempdir();
        let mnt = mnt.map(Path::to_path_buf).unwrap_or_else(|| dir.path().join("mnt"));
        std::fs::create_dir_all(&mnt).unwrap();
        let cache = cache.map(Path::to_path_buf).unwrap_or_else(|| dir.path().join("cache"));
        let mut cmd = kpackfs();
        cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.arg("mount").arg(&mnt);
        if let Some(manifest) = manifest {
            cmd.arg("--manifest").arg(manifest);
        }
        let defaults = if test_defaults { Self::defaults(extra) } else { Vec::new() };
        let output = cmd.arg("--cache-dir").arg(&cache).args(defaults).args(extra).output().unwrap();
        let mount_stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{cmd:?} failed ({}): {mount_stderr}", output.status);
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        let pid = out
            .split("(pid ")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|s| s.parse().ok())
            .expect("pid in mount output");
        Mounted { mnt, cache, pid, mount_stderr, _dir: dir }
    }

    /// Short timeouts and backoff for tests, unless `extra` sets them; no
    /// free-space floor (5% of the host's disk would make results depend on
    /// how full the CI machine is; the floor has its own test on a small disk).
    fn defaults(extra: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for (flag, value) in [
            ("--retry-backoff", "300ms"),
            ("--stall-timeout", "2s"),
            ("--retries", "1"),
            ("--crawl-interval", "off"),
            ("--min-free", "0"),
        ] {
            if !extra.iter().any(|a| a == flag) {
                out.extend([flag.to_string(), value.to_string()]);
            }
        }
        out
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn status(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path(".kpackfs/status.json")).expect("status.json");
        serde_json::from_str(&text).expect("status.json parses")
    }

    pub fn bundle_state(&self, label: &str) -> String {
        let status = self.status();
        status["bundles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["label"] == label)
            .map_or("absent".to_string(), |b| b["state"].as_str().unwrap().to_string())
    }

    pub fn alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists()
            && !std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default().contains(") Z ")
    }

    pub fn kill9(&self) {
        // SAFETY: plain kill(2) on our own child daemon.
        unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // The leader shows as a zombie before its other threads have exited
        // and closed the files they share: wait until the cache lock is free,
        // which is what the next mount of this cache needs.
        use std::os::fd::AsRawFd;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let Ok(lock) = std::fs::File::open(self.cache.join("lock")) else { return };
            // SAFETY: flock on a descriptor we own; closed (unlocked) at the end of the iteration.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.cache.join("kpackfs.log")).unwrap_or_default()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = kpackfs().arg("umount").arg("--lazy").arg(&self.mnt).output();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.alive() {
            self.kill9();
        }
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).output();
    }
}

/// errno of a failed filesystem call.
pub fn errno_of<T>(r: std::io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}
