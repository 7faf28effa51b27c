//! The mount(8) helper forms, so kpackfs can live in /etc/fstab:
//! - `mount.kpackfs SOURCE DIR [-sfnv] [-o OPTS] [-t TYPE]` (what mount(8)
//!   runs for `-t kpackfs`; `mount.fuse.kpackfs` for `-t fuse.kpackfs`),
//! - `kpackfs SOURCE DIR -o OPTS` with SOURCE `kpackfs` (what mount.fuse3
//!   runs for `-t fuse.kpackfs` when no `mount.fuse.kpackfs` exists).
//!
//! Both become `kpackfs mount DIR -o OPTS` with the options mount(8) and
//! systemd keep for themselves removed, as the conventions require.

use std::ffi::{OsStr, OsString};
use std::path::Path;

/// The conventional fstab source field.
pub const SOURCE: &str = "kpackfs";

/// What the helper asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Helper {
    /// Run this command line instead.
    Mount(Vec<OsString>),
    /// `-f`: pretend (mount(8)'s fake mode); nothing to do.
    Fake,
}

/// Options that belong to mount(8), fstab or systemd, never to us. `ro`
/// is ours already (the mount is always read-only).
pub(crate) fn ignored(option: &str) -> bool {
    const FLAGS: &[&str] = &[
        "defaults",
        "auto",
        "noauto",
        "user",
        "nouser",
        "users",
        "owner",
        "group",
        "rw",
        "ro",
        "nofail",
        "_netdev",
        "dev",
        "nodev",
        "suid",
        "nosuid",
        "exec",
        "noexec",
        "atime",
        "noatime",
        "relatime",
        "strictatime",
        "diratime",
        "nodiratime",
        "async",
        "sync",
        "loud",
        "silent",
    ];
    let key = option.split_once('=').map_or(option, |(k, _)| k);
    FLAGS.contains(&key) || key.starts_with("x-") || key == "comment"
}

/// The helper form's command line, translated, or `None` for the normal CLI.
pub fn translate(argv: &[OsString]) -> Option<Helper> {
    let program = Path::new(argv.first()?).file_name()?.to_string_lossy().into_owned();
    let as_helper = program.starts_with("mount.");
    let fuse_form = argv.get(1).is_some_and(|a| a == SOURCE) && argv.len() >= 3;
    if !as_helper && !fuse_form {
        return None;
    }
    let mut positional: Vec<&OsStr> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    let mut verbose = false;
    let mut fake = false;
    let mut rest = argv[1..].iter();
    while let Some(arg) = rest.next() {
        let text = arg.to_string_lossy();
        match text.as_ref() {
            "-o" => options.extend(rest.next().map(|o| o.to_string_lossy().into_owned())),
            "-t" => {
                rest.next();
            }
            s if s.starts_with("-o") => options.push(s[2..].to_string()),
            s if s.starts_with('-') && s.len() > 1 && !s.starts_with("--") => {
                // mount(8)'s flags: -s sloppy, -f fake, -n no mtab, -v verbose.
                fake |= s.contains('f');
                verbose |= s.contains('v');
            }
            _ => positional.push(arg),
        }
    }
    if fake {
        return Some(Helper::Fake);
    }
    // SOURCE DIR; a lone DIR is accepted too (`mount.kpackfs DIR`).
    let mountpoint = *positional.last()?;
    let kept: Vec<String> = options
        .iter()
        .flat_map(|group| group.split(','))
        .filter(|o| !o.is_empty() && !ignored(o))
        .map(str::to_string)
        .collect();
    let mut out: Vec<OsString> = vec!["kpackfs".into()];
    if verbose {
        out.push("-v".into());
    }
    out.extend(["mount".into(), mountpoint.to_os_string()]);
    if !kept.is_empty() {
        out.extend(["-o".into(), kept.join(",").into()]);
    }
    Some(Helper::Mount(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn mount_helper_form_drops_what_is_not_ours() {
        let got = translate(&args(&[
            "/sbin/mount.kpackfs",
            "kpackfs",
            "/kernels",
            "-o",
            "rw,nofail,_netdev,x-systemd.automount,cache_dir=/var/cache/k,cache_size=20G,noatime",
        ]));
        assert_eq!(
            got,
            Some(Helper::Mount(args(&["kpackfs", "mount", "/kernels", "-o", "cache_dir=/var/cache/k,cache_size=20G"])))
        );
    }

    #[test]
    fn fuse3_form_and_fake_and_plain_cli() {
        let got = translate(&args(&["kpackfs", "kpackfs", "/k", "-o", "nonempty,dev,suid"]));
        assert_eq!(got, Some(Helper::Mount(args(&["kpackfs", "mount", "/k", "-o", "nonempty"]))));
        assert_eq!(translate(&args(&["mount.fuse.kpackfs", "kpackfs", "/k", "-f", "-o", "x"])), Some(Helper::Fake));
        assert_eq!(
            translate(&args(&["mount.kpackfs", "kpackfs", "/k", "-sv", "-t", "fuse.kpackfs"])),
            Some(Helper::Mount(args(&["kpackfs", "-v", "mount", "/k"])))
        );
        assert_eq!(translate(&args(&["kpackfs", "mount", "/k"])), None);
        assert_eq!(translate(&args(&["kpackfs", "list"])), None);
    }
}
