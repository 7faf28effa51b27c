//! The optional configuration file (`--config FILE`, `$KPACKFS_CONFIG`, or
//! `/etc/kpackfs/config.yml`): the same settings as the mount's flags and
//! `-o` options (`daemon::settings::KEYS`), which override it.
//!
//! ```yaml
//! cache_dir: /var/cache/kpackfs
//! cache_size: 10G
//! apt_mirrors: true            # use the host's apt Debian mirror for Debian URLs
//! mirrors:                     # canonical prefix: mirror prefix
//!   http://archive.ubuntu.com/ubuntu: http://mirror.internal/ubuntu
//! ```

use crate::daemon::settings::Settings;
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const SYSTEM_CONFIG: &str = "/etc/kpackfs/config.yml";

/// A value in the file: a scalar, a list (repeatable settings), or a map
/// (`mirrors`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Value {
    Bool(bool),
    Int(u64),
    Text(String),
    List(Vec<String>),
    Map(BTreeMap<String, String>),
}

/// The file's settings as `(key, value)` pairs, in file order per key.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub pairs: Vec<(String, String)>,
    pub path: Option<PathBuf>,
}

impl Config {
    /// Load the explicit file, else `$KPACKFS_CONFIG`, else the system file if present.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => match std::env::var_os("KPACKFS_CONFIG") {
                Some(p) => Some(PathBuf::from(p)),
                None => Some(PathBuf::from(SYSTEM_CONFIG)).filter(|p| p.exists()),
            },
        };
        let Some(path) = path else { return Ok(Config::default()) };
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading config {}", path.display()))?;
        let mut config = Config::parse(&text).map_err(|e| anyhow!("malformed config {}: {e:#}", path.display()))?;
        config.path = Some(path);
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let map: BTreeMap<String, Value> = serde_saphyr::from_str(text).map_err(|e| anyhow!("{e}"))?;
        let mut pairs = Vec::new();
        for (key, value) in map {
            let key = match key.as_str() {
                "mirrors" => "mirror".to_string(),
                k => k.replace('-', "_"),
            };
            match value {
                Value::Bool(b) => pairs.push((key, b.to_string())),
                Value::Int(n) => pairs.push((key, n.to_string())),
                Value::Text(s) => pairs.push((key, s)),
                Value::List(items) => pairs.extend(items.into_iter().map(|v| (key.clone(), v))),
                Value::Map(m) if key == "mirror" => {
                    pairs.extend(m.into_iter().map(|(c, l)| (key.clone(), format!("{c}={l}"))))
                }
                Value::Map(_) => bail!("{key}: expected a single value"),
            }
        }
        // Unknown keys are refused here, with the key's name.
        let mut probe = Settings::defaults();
        for (k, v) in &pairs {
            probe.set(k, v)?;
        }
        Ok(Config { pairs, path: None })
    }

    /// The value of a single-valued key, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The default cache directory: `/var/cache/kpackfs` for root, else
/// `$XDG_CACHE_HOME/kpackfs` or `~/.cache/kpackfs`.
pub fn default_cache_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/cache/kpackfs");
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("kpackfs");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache/kpackfs"),
        None => PathBuf::from("/tmp/kpackfs-cache"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_the_file() {
        let c = Config::parse(
            "cache_dir: /x\ncache_size: 2G\napt_mirrors: false\nretries: 4\nmirrors:\n  http://a/u: http://b/u\n",
        )
        .unwrap();
        assert_eq!(c.get("cache_dir"), Some("/x"));
        assert_eq!(c.get("retries"), Some("4"));
        assert_eq!(c.get("mirror"), Some("http://a/u=http://b/u"));
        let err = Config::parse("cache_sise: 1G\n").unwrap_err().to_string();
        assert!(err.contains("unknown setting \"cache_sise\""), "{err}");
    }
}
