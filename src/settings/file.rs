//! The optional configuration file (`--config FILE`, `$KPACKFS_CONFIG`, or
//! `/etc/kpackfs/config.yml`): the same settings as the mount's flags and
//! `-o` options ([`super::KEYS`]), which override it.
//!
//! ```yaml
//! cache_dir: /var/cache/kpackfs
//! cache_size: 10G
//! apt_mirrors: true            # use the host's apt Debian mirror for Debian URLs
//! mirrors:                     # canonical prefix: mirror prefix
//!   http://archive.ubuntu.com/ubuntu: http://mirror.internal/ubuntu
//! ```

use super::Settings;
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const SYSTEM_CONFIG: &str = "/etc/kpackfs/config.yml";

/// The file is a few lines; anything this large is not one.
const MAX_BYTES: u64 = 1 << 20;

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

/// The settings of the explicit file, else `$KPACKFS_CONFIG`, else the
/// system file if present, on top of the defaults; and which file it was.
pub fn load(explicit: Option<&Path>) -> Result<(Settings, Option<PathBuf>)> {
    let path = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => match std::env::var_os("KPACKFS_CONFIG") {
            Some(p) => Some(PathBuf::from(p)),
            None => Some(PathBuf::from(SYSTEM_CONFIG)).filter(|p| p.exists()),
        },
    };
    let Some(path) = path else { return Ok((Settings::defaults(), None)) };
    let text =
        crate::files::read_bounded(&path, MAX_BYTES).with_context(|| format!("reading config {}", path.display()))?;
    let settings = parse(&text).map_err(|e| anyhow!("malformed config {}: {e:#}", path.display()))?;
    Ok((settings, Some(path)))
}

/// The defaults with the file's settings applied, each parsed once.
pub fn parse(text: &str) -> Result<Settings> {
    let mut settings = Settings::defaults();
    if text.trim().is_empty() {
        return Ok(settings);
    }
    let map: BTreeMap<String, Value> = serde_saphyr::from_str(text).map_err(|e| anyhow!("{e}"))?;
    for (key, value) in map {
        let key = match key.as_str() {
            "mirrors" => "mirror".to_string(),
            k => k.replace('-', "_"),
        };
        let values: Vec<String> = match value {
            Value::Bool(b) => vec![b.to_string()],
            Value::Int(n) => vec![n.to_string()],
            Value::Text(s) => vec![s],
            Value::List(items) => items,
            Value::Map(m) if key == "mirror" => m.into_iter().map(|(c, l)| format!("{c}={l}")).collect(),
            Value::Map(_) => bail!("{key}: expected a single value"),
        };
        for v in values {
            // Unknown keys are refused here, with the key's name.
            settings.set(&key, &v)?;
        }
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_the_file() {
        let s = parse(
            "cache_dir: /x\ncache_size: 2G\napt_mirrors: false\nretries: 4\nmirrors:\n  http://a/u: http://b/u\n",
        )
        .unwrap();
        assert_eq!(s.cache_dir, PathBuf::from("/x"));
        assert_eq!(s.cache_size, 2 << 30);
        assert!(!s.apt_mirrors);
        assert_eq!(s.fetch.retry.retries, 4);
        assert_eq!(s.fetch.mirrors.rewrite("http://a/u/p.deb"), "http://b/u/p.deb");
        let err = parse("cache_sise: 1G\n").unwrap_err().to_string();
        assert!(err.contains("unknown setting \"cache_sise\""), "{err}");
    }
}
