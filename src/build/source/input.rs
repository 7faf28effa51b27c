//! The inputs of a source build, read as hostile data: the kernel's config
//! (a `.config` or defconfig, or one inside a headers package or tarball,
//! with the `Module.symvers` beside it), and the source tarball streamed
//! through the trim into the tar the sandbox extracts.

use super::kconfig::MAX_CONFIG_BYTES;
use super::trim;
use crate::package::{self, Budget, Item, Limits};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

/// A kernel config and what came with it.
pub struct ConfigFiles {
    pub text: String,
    pub symvers: Option<Vec<u8>>,
    /// Where the config was found, for messages.
    pub origin: String,
}

/// Bounds on a package that holds a config (COS's headers tarball is ~30 MB).
fn holder_limits() -> Limits {
    Limits { max_file_bytes: 256 << 20, max_total_bytes: 1 << 30, max_entries: 200_000 }
}

/// Read the config from `path`: a package or tarball holding a `.config`
/// (in `linux-headers-*` or at its root), else the file itself as text.
pub fn config_from(path: &Path) -> Result<ConfigFiles> {
    let mut file = BufReader::new(std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?);
    let head = file.fill_buf().context("reading the config")?.to_vec();
    if package::sniff(&head).is_none() {
        let mut text = String::new();
        file.take(MAX_CONFIG_BYTES as u64 + 1).read_to_string(&mut text).context("the config is not text")?;
        if text.len() > MAX_CONFIG_BYTES {
            bail!("the config is over {MAX_CONFIG_BYTES} bytes");
        }
        return Ok(ConfigFiles { text, symvers: None, origin: display(path) });
    }
    let members = package::read_from(file, &Budget::new(holder_limits()))?;
    let config = members
        .iter()
        .filter(|m| m.path == ".config" || m.path.ends_with("/.config"))
        .filter(|m| matches!(&m.item, Item::File(blob) if blob.len() <= MAX_CONFIG_BYTES))
        .min_by_key(|m| (!m.path.contains("linux-headers"), m.path.len()))
        .with_context(|| format!("{} holds no .config", display(path)))?;
    let dir = config.path.strip_suffix(".config").unwrap_or("");
    let text = match &config.item {
        Item::File(blob) => String::from_utf8(blob.to_vec()).context("the .config is not UTF-8")?,
        _ => unreachable!("filtered to files"),
    };
    let symvers = members.iter().find(|m| m.path == format!("{dir}Module.symvers")).and_then(|m| match &m.item {
        Item::File(blob) => Some(blob.to_vec()),
        _ => None,
    });
    Ok(ConfigFiles { text, symvers, origin: format!("{} ({})", display(path), config.path) })
}

fn display(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Bounds on what the trimmed source may expand to.
#[derive(Debug, Clone, Copy)]
pub struct SourceLimits {
    pub max_bytes: u64,
    pub max_entries: usize,
}

/// Stream the source at `path` (a tarball, or a package holding one) into
/// `out` as a plain tar of what preparing `srcarch` needs, its top
/// directory removed, with `extra` files (the config) added at its root.
/// Links stay inside the tree; device nodes and escaping paths are dropped
/// or refused.
pub fn stream_source(
    path: &Path,
    srcarch: &str,
    limits: SourceLimits,
    extra: &[(&str, &[u8])],
    out: &mut dyn Write,
) -> Result<u64> {
    let file = BufReader::with_capacity(
        1 << 20,
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
    );
    let mut builder = tar::Builder::new(out);
    let written = match inner_tarball(path)? {
        Some(blob) => {
            copy_trimmed(package::decompressed(std::io::Cursor::new(blob.as_slice()))?, srcarch, limits, &mut builder)?
        }
        None => copy_trimmed(package::decompressed(file)?, srcarch, limits, &mut builder)?,
    };
    for (name, bytes) in extra {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, *bytes).context("writing to the sandbox")?;
    }
    builder.finish().context("writing to the sandbox")?;
    Ok(written)
}

/// The kernel tarball inside a package (Debian's `linux-source-X.Y`
/// holds `usr/src/linux-source-X.Y.tar.xz`); None for a plain tarball.
fn inner_tarball(path: &Path) -> Result<Option<std::sync::Arc<Vec<u8>>>> {
    let mut file = BufReader::new(std::fs::File::open(path)?);
    let head = file.fill_buf()?.to_vec();
    if package::sniff(&head) != Some(package::Format::Deb) && package::sniff(&head) != Some(package::Format::Rpm) {
        return Ok(None);
    }
    let limits = Limits { max_file_bytes: 1 << 30, max_total_bytes: 1 << 30, max_entries: 10_000 };
    let keep = |p: &str| p.contains("linux-source") && p.contains(".tar");
    let members = package::read_tarball_where(file, &Budget::new(limits), &keep).ok();
    let members = match members {
        Some(m) if !m.is_empty() => m,
        _ => {
            let file = BufReader::new(std::fs::File::open(path)?);
            package::read_from(file, &Budget::new(limits))?
        }
    };
    members
        .into_iter()
        .find_map(|m| match m.item {
            Item::File(blob) if keep(&m.path) => Some(blob),
            _ => None,
        })
        .map(Some)
        .with_context(|| format!("{} holds no linux-source tarball", display(path)))
}

fn copy_trimmed<W: Write>(
    reader: Box<dyn Read + '_>,
    srcarch: &str,
    limits: SourceLimits,
    builder: &mut tar::Builder<W>,
) -> Result<u64> {
    let mut archive = tar::Archive::new(reader);
    let mut prefix: Option<Option<String>> = None;
    let (mut bytes, mut entries) = (0u64, 0usize);
    for entry in archive.entries().context("reading the source tarball")? {
        let mut entry = entry.context("reading the source tarball")?;
        let raw = entry.path_bytes().into_owned();
        let Some(path) = package::normalize_entry_path(&raw)? else { continue };
        // A `linux-x.y.z/` prefix is the first entry's top directory unless
        // that is a kernel tree's own (COS's tarballs are flat).
        let strip = prefix.get_or_insert_with(|| {
            let top = path.split('/').next().unwrap_or("");
            (!trim::TOP_LEVEL.contains(&top) && !top.starts_with('.')).then(|| top.to_string())
        });
        let relative = match strip {
            Some(top) if path == *top => continue,
            Some(top) => match path.strip_prefix(top.as_str()).and_then(|p| p.strip_prefix('/')) {
                Some(rest) => rest.to_string(),
                None => bail!("source entry {path} is outside the tree's directory {top}"),
            },
            None => path.clone(),
        };
        if !trim::wanted_input(&relative, srcarch) || relative == ".config" {
            continue;
        }
        entries += 1;
        if entries > limits.max_entries {
            bail!("the source has more than {} entries kpackfs reads", limits.max_entries);
        }
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o755;
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode | 0o600);
        header.set_mtime(0);
        match kind {
            tar::EntryType::Directory => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, &relative, std::io::empty())?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                bytes += size;
                if bytes > limits.max_bytes {
                    bail!("the source expands past {} bytes of what kpackfs reads", limits.max_bytes);
                }
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(size);
                builder.append_data(&mut header, &relative, (&mut entry).take(size))?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                let target =
                    String::from_utf8(target).with_context(|| format!("link {relative} has a non-UTF-8 target"))?;
                let link_target = if kind == tar::EntryType::Link {
                    // Hard links name an archive path, with its prefix.
                    let Some(t) = package::normalize_entry_path(target.as_bytes())? else { continue };
                    match strip.as_deref().and_then(|top| t.strip_prefix(top)).and_then(|p| p.strip_prefix('/')) {
                        Some(rest) => rest.to_string(),
                        None if strip.is_none() => t,
                        None => continue,
                    }
                } else {
                    if !stays_inside(&relative, &target) {
                        log::warn!("source link {relative} → {target} leaves the tree; dropped");
                        continue;
                    }
                    target
                };
                header.set_entry_type(kind);
                header.set_size(0);
                builder.append_link(&mut header, &relative, &link_target)?;
            }
            _ => {} // device nodes, FIFOs: never
        }
    }
    if prefix.is_none() {
        bail!("the source tarball is empty");
    }
    Ok(bytes)
}

/// Whether a relative symlink at `path` resolves inside the tree.
fn stays_inside(path: &str, target: &str) -> bool {
    if target.starts_with('/') || target.is_empty() {
        return false;
    }
    let mut depth: i64 = path.matches('/').count() as i64;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_that_leave_the_tree_are_told_apart() {
        assert!(stays_inside("scripts/dtc/include-prefixes/arm", "../../../arch/arm/boot/dts"));
        assert!(!stays_inside("a/b", "../../../etc/passwd"));
        assert!(!stays_inside("a", "/etc/passwd"));
        assert!(stays_inside("a/b", "c"));
    }
}
