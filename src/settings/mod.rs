//! Every setting of the daemon and the commands, typed: parsed once from a
//! flag (`--cache-size 20G`), a mount option (`-o cache_size=20G`) or the
//! configuration file (`cache_size: 20G`) by the same functions
//! ([`parse`]), through one table of keys ([`keys`]). Flags override mount
//! options, which override the file, which overrides the defaults
//! (`defaults.rs`). Runtime objects (the fetcher, the remote tier) are made
//! from settings elsewhere (`daemon`, `cli`), never here.

pub mod file;
pub mod keys;
pub mod parse;

pub use keys::KEYS;

use crate::defaults::Defaults;
use crate::fetch::{FetchConfig, MirrorMap};
use crate::util::FreeFloor;
use anyhow::{anyhow, Result};
use std::path::PathBuf;
use std::time::Duration;

/// What a mount (and `bundle`, `crawl`, `publish`, `serve`) runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub cache_dir: PathBuf,
    pub cache_size: u64,
    pub min_free: FreeFloor,
    pub evict_grace: Duration,
    pub retry_backoff: Duration,
    pub max_bundle_size: u64,
    pub source_timeout: Duration,
    pub source_memory: u64,
    pub source_scratch: u64,
    pub image_max_size: u64,
    /// FUSE worker threads (default: one per core).
    pub threads: usize,
    /// None: no background crawl.
    pub crawl_interval: Option<Duration>,
    pub sources: Option<PathBuf>,
    pub manifest: Option<PathBuf>,
    pub lists_dir: Option<PathBuf>,
    /// Use the host's apt Debian and Ubuntu mirrors for those archives' URLs.
    pub apt_mirrors: bool,
    /// Where apt's configuration is read (sources.list, sources.list.d,
    /// auth.conf, auth.conf.d).
    pub apt_dir: PathBuf,
    /// Read the host's credentials: apt's auth.conf(.d), yum's .repo files.
    pub host_credentials: bool,
    /// Where yum/dnf repository files are read for their credentials.
    pub yum_repos_dir: PathBuf,
    pub fetch: FetchConfig,
    /// The shared bundle tier (s3://, gs://, az://, file://, http(s)://).
    pub remote: Option<String>,
    /// Read the tier, never write it.
    pub remote_read_only: bool,
    /// Share packages through the tier too (by sha256), not only bundles.
    pub package_tier: bool,
    /// Serve Prometheus metrics over HTTP here (GET /metrics).
    pub metrics: Option<std::net::SocketAddr>,
}

impl Settings {
    pub fn defaults() -> Settings {
        let d = Defaults::get();
        Settings {
            cache_dir: crate::defaults::cache_dir(),
            cache_size: d.cache_size,
            min_free: d.min_free,
            evict_grace: d.evict_grace,
            retry_backoff: d.retry_backoff,
            max_bundle_size: d.max_bundle_size,
            source_timeout: d.source_timeout,
            source_memory: d.source_memory,
            source_scratch: d.source_scratch,
            image_max_size: d.image_max_size,
            threads: crate::cpu::cores(),
            crawl_interval: d.crawl_interval,
            sources: None,
            manifest: None,
            lists_dir: None,
            apt_mirrors: true,
            apt_dir: PathBuf::from(d.apt_dir),
            host_credentials: true,
            yum_repos_dir: PathBuf::from(d.yum_repos_dir),
            fetch: FetchConfig::default(),
            remote: None,
            remote_read_only: false,
            package_tier: true,
            metrics: None,
        }
    }

    /// Set one setting from its text form.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let Some(k) = keys::find(key) else {
            let known: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
            return Err(anyhow!("unknown setting {key:?} (known: {})", known.join(", ")));
        };
        k.apply(self, value).map_err(|e| anyhow!("{}: {e}", k.name))
    }

    /// Add the host's apt mirrors (unless turned off), under explicit
    /// rules; the sources' client certificates and archives; the host's
    /// credentials (after `--auth-file`s, which so take precedence). Once,
    /// after every source of settings. A host file that fails its checks
    /// is skipped with a warning; a broken sources file is the crawl's to
    /// report.
    pub fn finish(mut self) -> Settings {
        if self.apt_mirrors {
            let canonical = crate::crawl::sources::canonical_bases();
            self.fetch.mirrors.add_defaults(&MirrorMap::from_apt(&self.apt_dir, &canonical));
        }
        if let Ok(sources) = crate::crawl::sources::load(self.sources.as_deref()) {
            let fetch = &mut self.fetch;
            if let Err(e) = crate::crawl::sources::fetch_extras(&sources, &mut fetch.credentials, &mut fetch.archives) {
                log::warn!("credentials: {e:#}");
            }
        }
        if self.host_credentials {
            use crate::fetch::auth::{netrc, yum};
            for (found, problems) in [netrc::read_apt(&self.apt_dir), yum::read_dir(&self.yum_repos_dir)] {
                for p in problems {
                    log::warn!("credentials: {p}");
                }
                if let Err(e) = self.fetch.credentials.extend(found) {
                    log::warn!("credentials: {e:#}");
                }
            }
        }
        self
    }

    /// What one bundle may expand to.
    pub fn limits(&self) -> crate::package::Limits {
        crate::package::Limits { max_total_bytes: self.max_bundle_size, ..Default::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_parser_for_every_setting() {
        let mut s = Settings::defaults();
        s.set("cache_size", "20G").unwrap();
        s.set("crawl_interval", "off").unwrap();
        s.set("min_rate", "10K").unwrap();
        s.set("mirror", "http://a.test/x=http://127.0.0.1:1/y").unwrap();
        s.set("retries", "5").unwrap();
        s.set("evict-grace", "5s").unwrap();
        assert_eq!(s.cache_size, 20 << 30);
        assert_eq!(s.crawl_interval, None);
        assert_eq!(s.fetch.min_rate, 10 << 10);
        assert_eq!(s.fetch.retry.retries, 5);
        assert_eq!(s.evict_grace, Duration::from_secs(5));
        assert_eq!(s.fetch.mirrors.rewrite("http://a.test/x/p.deb"), "http://127.0.0.1:1/y/p.deb");
        let err = s.set("cache_sise", "1G").unwrap_err().to_string();
        assert!(err.contains("unknown setting") && err.contains("cache_size"), "{err}");
        assert!(s.set("threads", "0").is_err());
        for key in ["stall_timeout", "download_deadline"] {
            let err = s.set(key, "0s").unwrap_err().to_string();
            assert!(err.contains("must be more than 0"), "{key}: {err}");
        }
        let auth_dir = tempfile::tempdir().unwrap();
        let auth = auth_dir.path().join("auth.conf");
        std::fs::write(&auth, "machine h.test token t\n").unwrap();
        std::fs::set_permissions(&auth, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let auth = auth.display().to_string();
        for key in KEYS {
            let mut fresh = Settings::defaults();
            let sample = match key.name {
                "mirror" | "archive" | "snapshot" => "http://a/=http://b/",
                "apt_mirrors" | "remote_read_only" | "host_credentials" | "archives" | "package_tier" => "false",
                "auth_file" => auth.as_str(),
                "remote" => "file:///tmp/x",
                "metrics" => "127.0.0.1:9101",
                "threads" | "retries" => "2",
                "min_free" => "5%",
                k if k.ends_with("size")
                    || k == "min_rate"
                    || k == "source_memory"
                    || k == "source_scratch"
                    || k == "image_max_size" =>
                {
                    "1M"
                }
                k if k.contains("dir") || k == "sources" || k == "manifest" => "/tmp/x",
                _ => "30s",
            };
            fresh.set(key.name, sample).unwrap_or_else(|e| panic!("{}: {e}", key.name));
        }
    }
}
