//! Optional configuration file (`--config FILE`, `$KPACKFS_CONFIG`, or
//! `/etc/kpackfs/config.yml`). Command-line flags override it.
//!
//! ```yaml
//! cache_dir: /var/cache/kpackfs
//! cache_size: 10G
//! apt_mirrors: true            # use the host's apt Debian mirror for Debian URLs
//! mirrors:                     # canonical prefix: mirror prefix
//!   http://archive.ubuntu.com/ubuntu: http://mirror.internal/ubuntu
//! ```

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const SYSTEM_CONFIG: &str = "/etc/kpackfs/config.yml";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    #[serde(default)]
    pub cache_size: Option<String>,
    #[serde(default)]
    pub apt_mirrors: Option<bool>,
    #[serde(default)]
    pub mirrors: BTreeMap<String, String>,
    #[serde(default)]
    pub sources: Option<PathBuf>,
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
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_saphyr::from_str(&text).map_err(|e| anyhow!("malformed config {}: {e}", path.display()))
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
