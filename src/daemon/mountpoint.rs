//! The mount point: stale mounts, kpackfs mounts, unmounting, read-ahead.

use anyhow::{anyhow, bail, Result};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| anyhow!("{} contains a NUL byte", path.display()))
}

/// Whether `path` is a mount whose daemon is gone. `stat` may still answer
/// from the kernel's cache (our TTLs are long), so the probe is `statfs`,
/// which always asks the daemon.
pub fn is_stale(path: &Path) -> Result<bool> {
    let c = c_path(path)?;
    // SAFETY: statfs into a zeroed struct from a valid C string.
    let dead = unsafe {
        let mut buf: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut buf) != 0
            && matches!(errno().raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED))
    };
    Ok(dead)
}

/// Detach a stale mount (its daemon is gone). Returns whether there was one.
pub fn clean_stale_mount(path: &Path) -> Result<bool> {
    if !is_stale(path)? {
        return Ok(false);
    }
    let c = c_path(path)?;
    // SAFETY: valid C string; umount2 has no other preconditions.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        bail!("{} is a stale mount and detaching it failed: {}", path.display(), errno());
    }
    log::warn!("cleaned up a stale mount at {} (its daemon was gone)", path.display());
    Ok(true)
}

/// The mount table line for `path`, if it is a mount point: (fstype, source).
pub fn mount_at(path: &Path) -> Option<(String, String)> {
    let canonical = path.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        let point = f.get(4)?.replace("\\040", " ");
        if Path::new(&point) != canonical {
            return None;
        }
        Some((f.get(sep + 1)?.to_string(), f.get(sep + 2)?.to_string()))
    })
}

/// Every kpackfs mount point in this mount namespace, oldest first.
pub fn kpackfs_mounts() -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let (fstype, source) = (*f.get(sep + 1)?, *f.get(sep + 2)?);
            let ours = fstype.starts_with("fuse") && (fstype.ends_with("kpackfs") || source == "kpackfs");
            let point = f.get(4)?.replace("\\040", " ");
            ours.then(|| PathBuf::from(point))
        })
        .collect()
}

/// Whether `path` is a mount point of a kpackfs filesystem.
pub fn is_kpackfs_mount(path: &Path) -> bool {
    mount_at(path).is_some_and(|(fstype, source)| {
        fstype.starts_with("fuse") && (fstype.ends_with("kpackfs") || source == "kpackfs")
    })
}

/// Unmount; when busy, detach lazily if `lazy`.
pub fn unmount(path: &Path, lazy: bool) -> Result<()> {
    let c = c_path(path)?;
    // SAFETY: valid C string.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let err = errno();
    match err.raw_os_error() {
        Some(libc::EBUSY) if lazy => {
            log::warn!("{} is busy; detaching it lazily", path.display());
            // SAFETY: as above.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                bail!("detaching {}: {}", path.display(), errno());
            }
            Ok(())
        }
        Some(libc::EBUSY) => bail!("{} is busy (files open under it); close them or use --lazy", path.display()),
        Some(libc::EINVAL) => bail!("{} is not mounted", path.display()),
        _ => bail!("unmounting {}: {err}", path.display()),
    }
}

/// Reads of a .tgz go through the daemon; larger FUSE read-ahead means
/// fewer, larger requests (docs/performance.md). Best effort: needs root.
pub fn raise_readahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(mountpoint) else { return };
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let knob = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    if let Err(e) = std::fs::write(&knob, "1024") {
        log::debug!("could not raise read-ahead ({knob}): {e}");
    }
}

/// Say what to do when /dev/fuse cannot be used, before anything else
/// fails with a bare "Permission denied" (checked before detaching).
pub fn check_fuse_access() -> Result<()> {
    open_fuse_device(Path::new("/dev/fuse")).map(drop)
}

fn open_fuse_device(device: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_CLOEXEC).open(device) {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} does not exist: load the fuse module (modprobe fuse), or in a container pass --device /dev/fuse",
            device.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "cannot open {} ({e}): kpackfs mounts as root; run it as root (sudo kpackfs mount …) \
             or through /etc/fstab (docs/operations.md)",
            device.display()
        ),
        Err(e) => bail!("cannot open {}: {e}", device.display()),
    }
}

/// Mount a FUSE filesystem of type `fuse.kpackfs` from source `kpackfs`
/// (what findmnt, fstab and `mount -t` expect) and return its /dev/fuse
/// descriptor for `fuser::Session::from_fd`. fuser's own mount passes the
/// bare type `fuse`, which loses the subtype. Read-only, nodev, nosuid,
/// noatime, permissions checked by the kernel; `allow_other` for root.
pub fn mount_fuse(mountpoint: &Path, allow_other: bool) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let fuse = open_fuse_device(Path::new("/dev/fuse"))?;
    let mode = std::fs::metadata(mountpoint).map_err(|e| anyhow!("{}: {e}", mountpoint.display()))?.mode();
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let data = format!(
        "fd={},rootmode={:o},user_id={uid},group_id={gid},default_permissions{}",
        fuse.as_raw_fd(),
        mode & libc::S_IFMT,
        if allow_other { ",allow_other" } else { "" }
    );
    let (target, data) = (c_path(mountpoint)?, CString::new(data)?);
    let flags = libc::MS_RDONLY | libc::MS_NODEV | libc::MS_NOSUID | libc::MS_NOATIME;
    // SAFETY: valid C strings; the data string outlives the call.
    let rc = unsafe {
        libc::mount(c"kpackfs".as_ptr(), target.as_ptr(), c"fuse.kpackfs".as_ptr(), flags, data.as_ptr().cast())
    };
    if rc != 0 {
        let err = errno();
        if err.raw_os_error() == Some(libc::EPERM) {
            bail!("mounting {} needs root (mount(2): {err}); run kpackfs as root", mountpoint.display());
        }
        bail!("mounting {}: {err}", mountpoint.display());
    }
    Ok(fuse.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_says_what_to_do() {
        let err = open_fuse_device(Path::new("/nonexistent/fuse")).unwrap_err().to_string();
        assert!(err.contains("modprobe fuse") && err.contains("--device /dev/fuse"), "{err}");
    }
}
