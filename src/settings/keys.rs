//! The one table of settings: each key's name, its help, and how its text
//! (a mount option, a line of the configuration file) sets the typed
//! value. Flags set the same fields, parsed by the same functions.

use super::parse;
use super::Settings;
use crate::fetch::RetryPolicy;

pub struct Key {
    pub name: &'static str,
    pub help: &'static str,
    set: fn(&mut Settings, &str) -> Result<(), String>,
}

impl Key {
    pub fn apply(&self, settings: &mut Settings, value: &str) -> Result<(), String> {
        (self.set)(settings, value)
    }
}

/// Every setting.
pub const KEYS: &[Key] = &[
    Key {
        name: "cache_dir",
        help: "cache directory (packages, bundles, index)",
        set: |s, v| {
            s.cache_dir = parse::path(v)?;
            Ok(())
        },
    },
    Key {
        name: "cache_size",
        help: "byte budget of the cache, e.g. 10G",
        set: |s, v| {
            s.cache_size = parse::size(v)?;
            Ok(())
        },
    },
    Key {
        name: "min_free",
        help: "keep this much of the cache's filesystem free: a size or a percentage",
        set: |s, v| {
            s.min_free = parse::free_floor(v)?;
            Ok(())
        },
    },
    Key {
        name: "source_timeout",
        help: "deadline of one sandboxed source build (kernels without header packages)",
        set: |s, v| {
            s.source_timeout = parse::duration(v)?;
            Ok(())
        },
    },
    Key {
        name: "source_memory",
        help: "address space per process of a sandboxed source build, e.g. 4G",
        set: |s, v| {
            s.source_memory = parse::size(v)?;
            Ok(())
        },
    },
    Key {
        name: "source_scratch",
        help: "the tmpfs a sandboxed source build works in (its source, toolchain and tree), e.g. 4G",
        set: |s, v| {
            s.source_scratch = parse::size(v)?;
            Ok(())
        },
    },
    Key {
        name: "image_max_size",
        help: "largest decompressed disk image of a coreos bundle (a scratch file in the cache's tmp/), e.g. 16G",
        set: |s, v| {
            s.image_max_size = parse::size(v)?;
            Ok(())
        },
    },
    Key {
        name: "evict_grace",
        help: "a bundle used this recently is not evicted",
        set: |s, v| {
            s.evict_grace = parse::duration(v)?;
            Ok(())
        },
    },
    Key {
        name: "retry_backoff",
        help: "after a failed build, refuse for this long (doubling per failure, at most 5 min)",
        set: |s, v| {
            s.retry_backoff = parse::duration(v)?;
            Ok(())
        },
    },
    Key {
        name: "max_bundle_size",
        help: "largest uncompressed size of one bundle's contents",
        set: |s, v| {
            s.max_bundle_size = parse::size(v)?;
            Ok(())
        },
    },
    Key {
        name: "threads",
        help: "FUSE worker threads",
        set: |s, v| {
            s.threads = parse::threads(v)?;
            Ok(())
        },
    },
    Key {
        name: "crawl_interval",
        help: "crawl the sources this often while mounted, or off",
        set: |s, v| {
            s.crawl_interval = parse::interval(v)?.0;
            Ok(())
        },
    },
    Key {
        name: "sources",
        help: "the sources file for crawling",
        set: |s, v| {
            s.sources = Some(parse::path(v)?);
            Ok(())
        },
    },
    Key {
        name: "manifest",
        help: "the manifest to serve instead of the shipped one",
        set: |s, v| {
            s.manifest = Some(parse::path(v)?);
            Ok(())
        },
    },
    Key {
        name: "lists_dir",
        help: "kernel-packer package lists for a manifest of simplified names",
        set: |s, v| {
            s.lists_dir = Some(parse::path(v)?);
            Ok(())
        },
    },
    Key {
        name: "mirror",
        help: "CANONICAL=LOCAL: fetch URLs under CANONICAL from LOCAL (repeatable)",
        set: |s, v| {
            let (canonical, local) = parse::mirror(v)?;
            s.fetch.mirrors.add(&canonical, &local);
            Ok(())
        },
    },
    Key {
        name: "apt_mirrors",
        help: "use the host's apt Debian and Ubuntu mirrors for those archives' URLs (true/false)",
        set: |s, v| {
            s.apt_mirrors = parse::boolean(v)?;
            Ok(())
        },
    },
    Key {
        name: "apt_dir",
        help: "where the host's apt configuration is read for its mirrors (default /etc/apt)",
        set: |s, v| {
            s.apt_dir = parse::path(v)?;
            Ok(())
        },
    },
    Key {
        name: "auth_file",
        help: "credentials in apt's auth.conf format (plus token, query, cert, key, ca): root's or ours, mode 0600 (repeatable)",
        set: |s, v| {
            let path = parse::path(v)?;
            let found = crate::fetch::auth::netrc::read_file(&path).map_err(|e| format!("{e:#}"))?;
            s.fetch.credentials.extend(found).map_err(|e| format!("{e:#}"))
        },
    },
    Key {
        name: "host_credentials",
        help: "use the host's credentials: apt's auth.conf and auth.conf.d, yum's .repo files (true/false)",
        set: |s, v| {
            s.host_credentials = parse::boolean(v)?;
            Ok(())
        },
    },
    Key {
        name: "yum_repos_dir",
        help: "where yum/dnf .repo files are read for credentials (default /etc/yum.repos.d)",
        set: |s, v| {
            s.yum_repos_dir = parse::path(v)?;
            Ok(())
        },
    },
    Key {
        name: "archives",
        help: "look for packages their own locations lost in the canonical archive, archives and snapshot archives (true/false)",
        set: |s, v| {
            s.fetch.archives.enabled = parse::boolean(v)?;
            Ok(())
        },
    },
    Key {
        name: "archive",
        help: "CANONICAL=ARCHIVE: where packages under CANONICAL go when they leave it (repeatable)",
        set: |s, v| {
            let (canonical, archive) = parse::mirror(v)?;
            s.fetch.archives.add_prefix(&canonical, &archive);
            Ok(())
        },
    },
    Key {
        name: "snapshot",
        help: "CANONICAL=BASE: a snapshot archive (Debian's snapshot API) for packages under CANONICAL (repeatable)",
        set: |s, v| {
            let (canonical, base) = parse::mirror(v)?;
            s.fetch.archives.add_snapshot(&canonical, &base);
            Ok(())
        },
    },
    Key {
        name: "package_tier",
        help: "share verified packages through the remote tier by sha256, so a fleet downloads each once (true/false)",
        set: |s, v| {
            s.package_tier = parse::boolean(v)?;
            Ok(())
        },
    },
    Key {
        name: "remote",
        help: "the shared bundle tier: s3://bucket/prefix, gs://…, az://…, file:///path or read-only http(s)://…",
        set: |s, v| {
            s.remote = Some(parse::url(v)?);
            Ok(())
        },
    },
    Key {
        name: "remote_read_only",
        help: "read the remote tier but never write to it (true/false)",
        set: |s, v| {
            s.remote_read_only = parse::boolean(v)?;
            Ok(())
        },
    },
    Key {
        name: "metrics",
        help: "serve Prometheus metrics over HTTP at ADDR:PORT/metrics (e.g. 127.0.0.1:9101), or off",
        set: |s, v| {
            s.metrics = parse::listen(v)?.0;
            Ok(())
        },
    },
    Key {
        name: "stall_timeout",
        help: "give up on a transfer that sends nothing for this long",
        set: |s, v| {
            s.fetch.stall_timeout = parse::timeout(v)?;
            Ok(())
        },
    },
    Key {
        name: "min_rate",
        help: "give up on a transfer slower than this per second on average (after rate_grace)",
        set: |s, v| {
            s.fetch.min_rate = parse::size(v)?;
            Ok(())
        },
    },
    Key {
        name: "rate_grace",
        help: "how long a transfer may run before min_rate applies (default 30s)",
        set: |s, v| {
            s.fetch.rate_grace = parse::duration(v)?;
            Ok(())
        },
    },
    Key {
        name: "download_deadline",
        help: "give up on a package after this long, all attempts included",
        set: |s, v| {
            s.fetch.deadline = parse::timeout(v)?;
            Ok(())
        },
    },
    Key {
        name: "retries",
        help: "attempts after the first on transient HTTP failures",
        set: |s, v| {
            s.fetch.retry = RetryPolicy { retries: parse::count(v)?, ..s.fetch.retry };
            Ok(())
        },
    },
];

/// The key named `name` (`-` and `_` alike, as fstab writes either).
pub fn find(name: &str) -> Option<&'static Key> {
    let name = name.replace('-', "_");
    KEYS.iter().find(|k| k.name == name)
}
