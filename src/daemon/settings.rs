//! Every setting of the daemon and the fetcher, its default, and the one
//! parser that reads it from a flag (`--cache-size 20G`), a mount option
//! (`-o cache_size=20G`) or the configuration file (`cache_size: 20G`).
//! Flags override mount options, which override the file.

use crate::fetch::{FetchConfig, MirrorMap, RetryPolicy};
use crate::util::{parse_duration, parse_size, FreeFloor};
use anyhow::{anyhow, bail, Result};
use std::path::PathBuf;
use std::time::Duration;

/// The defaults, in one place (docs/operations.md lists them).
#[derive(Debug, Clone)]
pub struct Defaults {
    pub cache_size: u64,
    pub min_free: FreeFloor,
    pub evict_grace: Duration,
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    pub max_bundle_size: u64,
    pub crawl_interval: Option<Duration>,
    pub connect_timeout: Duration,
    pub stall_timeout: Duration,
    pub min_rate: u64,
    pub rate_grace: Duration,
    pub download_deadline: Duration,
    pub retries: u32,
    pub max_package_bytes: u64,
}

impl Defaults {
    pub fn get() -> Defaults {
        Defaults {
            cache_size: 10 << 30,
            min_free: FreeFloor::Percent(5.0),
            evict_grace: Duration::from_secs(60),
            retry_backoff: Duration::from_secs(2),
            retry_backoff_max: Duration::from_secs(300),
            max_bundle_size: 2 << 30,
            crawl_interval: Some(Duration::from_secs(6 * 3600)),
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            // A header package is 2–30 MB: 20 KiB/s is ten times slower
            // than any mirror worth using, and still finishes in 25 min.
            min_rate: 20 << 10,
            rate_grace: Duration::from_secs(30),
            download_deadline: Duration::from_secs(30 * 60),
            retries: 3,
            max_package_bytes: 1 << 30,
        }
    }
}

/// What a mount (and `bundle`, `crawl`) runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub cache_dir: PathBuf,
    pub cache_size: u64,
    pub min_free: FreeFloor,
    pub evict_grace: Duration,
    pub retry_backoff: Duration,
    pub max_bundle_size: u64,
    /// FUSE worker threads (default: one per core).
    pub threads: usize,
    /// None: no background crawl.
    pub crawl_interval: Option<Duration>,
    pub sources: Option<PathBuf>,
    pub manifest: Option<PathBuf>,
    pub lists_dir: Option<PathBuf>,
    /// Use the host's apt Debian and Ubuntu mirrors for those archives' URLs.
    pub apt_mirrors: bool,
    /// Where apt's configuration is read (sources.list, sources.list.d).
    pub apt_dir: PathBuf,
    pub fetch: FetchConfig,
    /// The shared bundle tier (s3://, gs://, az://, file://, http(s)://).
    pub remote: Option<String>,
    /// Read the tier, never write it.
    pub remote_read_only: bool,
    /// Serve Prometheus metrics over HTTP here (GET /metrics).
    pub metrics: Option<std::net::SocketAddr>,
}

/// (key, help) of every setting, for `-o` and the configuration file.
pub const KEYS: &[(&str, &str)] = &[
    ("cache_dir", "cache directory (packages, bundles, index)"),
    ("cache_size", "byte budget of the cache, e.g. 10G"),
    ("min_free", "keep this much of the cache's filesystem free: a size or a percentage"),
    ("evict_grace", "a bundle used this recently is not evicted"),
    ("retry_backoff", "after a failed build, refuse for this long (doubling per failure, at most 5 min)"),
    ("max_bundle_size", "largest uncompressed size of one bundle's contents"),
    ("threads", "FUSE worker threads"),
    ("crawl_interval", "crawl the sources this often while mounted, or off"),
    ("sources", "the sources file for crawling"),
    ("manifest", "the manifest to serve instead of the shipped one"),
    ("lists_dir", "kernel-packer package lists for a manifest of simplified names"),
    ("mirror", "CANONICAL=LOCAL: fetch URLs under CANONICAL from LOCAL (repeatable)"),
    ("apt_mirrors", "use the host's apt Debian and Ubuntu mirrors for those archives' URLs (true/false)"),
    ("apt_dir", "where the host's apt configuration is read for its mirrors (default /etc/apt)"),
    ("remote", "the shared bundle tier: s3://bucket/prefix, gs://…, az://…, file:///path or read-only http(s)://…"),
    ("remote_read_only", "read the remote tier but never write to it (true/false)"),
    ("metrics", "serve Prometheus metrics over HTTP at ADDR:PORT/metrics (e.g. 127.0.0.1:9101), or off"),
    ("stall_timeout", "give up on a transfer that sends nothing for this long"),
    ("min_rate", "give up on a transfer slower than this per second on average (after rate_grace)"),
    ("rate_grace", "how long a transfer may run before min_rate applies (default 30s)"),
    ("download_deadline", "give up on a package after this long, all attempts included"),
    ("retries", "attempts after the first on transient HTTP failures"),
];

/// A timeout of zero would fail every transfer at once: refused.
fn positive(key: &str, d: Duration) -> Result<Duration> {
    if d.is_zero() {
        bail!("{key}: must be more than 0 (a zero timeout fails every download)");
    }
    Ok(d)
}

fn parse_bool(v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => bail!("expected true or false, got {v:?}"),
    }
}

impl Settings {
    pub fn defaults() -> Settings {
        let d = Defaults::get();
        Settings {
            cache_dir: crate::config::default_cache_dir(),
            cache_size: d.cache_size,
            min_free: d.min_free,
            evict_grace: d.evict_grace,
            retry_backoff: d.retry_backoff,
            max_bundle_size: d.max_bundle_size,
            threads: crate::cpu::cores(),
            crawl_interval: d.crawl_interval,
            sources: None,
            manifest: None,
            lists_dir: None,
            apt_mirrors: true,
            apt_dir: PathBuf::from("/etc/apt"),
            fetch: FetchConfig::default(),
            remote: None,
            remote_read_only: false,
            metrics: None,
        }
    }

    /// Set one setting from its text form.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let v = value.trim();
        let wrap = |e: String| anyhow!("{key}: {e}");
        match key {
            "cache_dir" => self.cache_dir = PathBuf::from(v),
            "cache_size" => self.cache_size = parse_size(v).map_err(wrap)?,
            "min_free" => self.min_free = FreeFloor::parse(v).map_err(wrap)?,
            "evict_grace" => self.evict_grace = parse_duration(v).map_err(wrap)?,
            "retry_backoff" => self.retry_backoff = parse_duration(v).map_err(wrap)?,
            "max_bundle_size" => self.max_bundle_size = parse_size(v).map_err(wrap)?,
            "threads" => {
                self.threads = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=256).contains(n))
                    .ok_or_else(|| anyhow!("{key}: expected a number of threads from 1 to 256, got {v:?}"))?
            }
            "crawl_interval" => {
                self.crawl_interval = match v {
                    "off" | "never" | "0" => None,
                    _ => Some(parse_duration(v).map_err(wrap)?).filter(|d| !d.is_zero()),
                }
            }
            "sources" => self.sources = Some(PathBuf::from(v)),
            "manifest" => self.manifest = Some(PathBuf::from(v)),
            "lists_dir" => self.lists_dir = Some(PathBuf::from(v)),
            "mirror" => self.fetch.mirrors.add_rule(v).map_err(|e| anyhow!("{key}: {e:#}"))?,
            "apt_mirrors" => self.apt_mirrors = parse_bool(v).map_err(|e| anyhow!("{key}: {e:#}"))?,
            "apt_dir" => self.apt_dir = PathBuf::from(v),
            "remote" => {
                url::Url::parse(v).map_err(|e| anyhow!("{key}: {v:?} is not a URL: {e}"))?;
                self.remote = Some(v.to_string())
            }
            "remote_read_only" => self.remote_read_only = parse_bool(v).map_err(|e| anyhow!("{key}: {e:#}"))?,
            "metrics" => {
                self.metrics = match v {
                    "off" | "" => None,
                    addr => Some(addr.parse().map_err(|e| anyhow!("metrics: {addr:?} is not ADDR:PORT: {e}"))?),
                }
            }
            "stall_timeout" => self.fetch.stall_timeout = positive(key, parse_duration(v).map_err(wrap)?)?,
            "min_rate" => self.fetch.min_rate = parse_size(v).map_err(wrap)?,
            "rate_grace" => self.fetch.rate_grace = parse_duration(v).map_err(wrap)?,
            "download_deadline" => self.fetch.deadline = positive(key, parse_duration(v).map_err(wrap)?)?,
            "retries" => {
                self.fetch.retry = RetryPolicy {
                    retries: v.parse().map_err(|_| anyhow!("{key}: expected a number, got {v:?}"))?,
                    ..self.fetch.retry
                }
            }
            other => {
                let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
                bail!("unknown setting {other:?} (known: {})", known.join(", "))
            }
        }
        Ok(())
    }

    /// Apply `KEY=VALUE` pairs (a mount's `-o` list, split on commas).
    pub fn set_pairs<'a>(&mut self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<()> {
        for (k, v) in pairs {
            self.set(k, v)?;
        }
        Ok(())
    }

    /// Add the host's apt mirrors (unless turned off), under explicit rules.
    pub fn finish(&mut self) {
        if self.apt_mirrors {
            let canonical = crate::crawl::sources::canonical_bases();
            self.fetch.mirrors.add_defaults(&MirrorMap::from_apt(&self.apt_dir, &canonical));
        }
    }

    pub fn backoff(&self) -> crate::cache::Backoff {
        crate::cache::Backoff { base: self.retry_backoff, max: Defaults::get().retry_backoff_max }
    }

    /// The remote tier, opened (None without `remote`).
    pub fn open_remote(&self) -> Result<Option<std::sync::Arc<crate::remote::Remote>>> {
        let Some(url) = &self.remote else { return Ok(None) };
        let opts = crate::remote::options_from(&self.fetch, self.remote_read_only);
        Ok(Some(std::sync::Arc::new(crate::remote::Remote::open(url, opts)?)))
    }

    pub fn cache_settings(&self) -> Result<crate::cache::Settings> {
        Ok(crate::cache::Settings {
            dir: self.cache_dir.clone(),
            budget: self.cache_size,
            limits: crate::package::Limits { max_total_bytes: self.max_bundle_size, ..Default::default() },
            backoff: self.backoff(),
            grace: self.evict_grace,
            min_free: self.min_free,
            remote: self.open_remote()?,
        })
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
        assert_eq!(s.cache_size, 20 << 30);
        assert_eq!(s.crawl_interval, None);
        assert_eq!(s.fetch.min_rate, 10 << 10);
        assert_eq!(s.fetch.retry.retries, 5);
        assert_eq!(s.fetch.mirrors.rewrite("http://a.test/x/p.deb"), "http://127.0.0.1:1/y/p.deb");
        let err = s.set("cache_sise", "1G").unwrap_err().to_string();
        assert!(err.contains("unknown setting") && err.contains("cache_size"), "{err}");
        assert!(s.set("threads", "0").is_err());
        for key in ["stall_timeout", "download_deadline"] {
            let err = s.set(key, "0s").unwrap_err().to_string();
            assert!(err.contains("must be more than 0"), "{key}: {err}");
        }
        for (key, _) in KEYS {
            let mut fresh = Settings::defaults();
            let sample = match *key {
                "mirror" => "http://a/=http://b/",
                "apt_mirrors" | "remote_read_only" => "false",
                "remote" => "file:///tmp/x",
                "metrics" => "127.0.0.1:9101",
                "threads" | "retries" => "2",
                "min_free" => "5%",
                k if k.ends_with("size") || k == "min_rate" => "1M",
                k if k.contains("dir") || k == "sources" || k == "manifest" => "/tmp/x",
                _ => "30s",
            };
            fresh.set(key, sample).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }
}
