//! Each setting's text form, parsed once into its type: the same functions
//! read a flag (clap calls them), a mount option and the configuration file.

use crate::util::FreeFloor;
use std::time::Duration;

pub fn size(v: &str) -> Result<u64, String> {
    crate::util::parse_size(v.trim())
}

pub fn duration(v: &str) -> Result<Duration, String> {
    crate::util::parse_duration(v.trim())
}

/// A timeout of zero would fail every transfer at once: refused.
pub fn timeout(v: &str) -> Result<Duration, String> {
    let d = duration(v)?;
    if d.is_zero() {
        return Err("must be more than 0 (a zero timeout fails every download)".into());
    }
    Ok(d)
}

pub fn boolean(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("expected true or false, got {v:?}")),
    }
}

pub fn threads(v: &str) -> Result<usize, String> {
    let v = v.trim();
    v.parse::<usize>()
        .ok()
        .filter(|n| (1..=256).contains(n))
        .ok_or_else(|| format!("expected a number of threads from 1 to 256, got {v:?}"))
}

pub fn count(v: &str) -> Result<u32, String> {
    let v = v.trim();
    v.parse().map_err(|_| format!("expected a number, got {v:?}"))
}

pub fn free_floor(v: &str) -> Result<FreeFloor, String> {
    FreeFloor::parse(v.trim())
}

/// How often to crawl in the background: a duration, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(pub Option<Duration>);

pub fn interval(v: &str) -> Result<Interval, String> {
    match v.trim() {
        "off" | "never" | "0" => Ok(Interval(None)),
        v => Ok(Interval(Some(duration(v)?).filter(|d| !d.is_zero()))),
    }
}

/// Where to listen: an address, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<std::net::SocketAddr>);

pub fn listen(v: &str) -> Result<Listen, String> {
    match v.trim() {
        "off" | "" => Ok(Listen(None)),
        addr => addr.parse().map(|a| Listen(Some(a))).map_err(|e| format!("{addr:?} is not ADDR:PORT: {e}")),
    }
}

pub fn url(v: &str) -> Result<String, String> {
    let v = v.trim();
    url::Url::parse(v).map_err(|e| format!("{v:?} is not a URL: {e}"))?;
    Ok(v.to_string())
}

/// `CANONICAL=LOCAL`.
pub fn mirror(v: &str) -> Result<(String, String), String> {
    crate::fetch::MirrorMap::parse_rule(v.trim())
}

pub fn path(v: &str) -> Result<std::path::PathBuf, String> {
    Ok(std::path::PathBuf::from(v.trim()))
}
