//! Private scratch directories in the system's temporary directory, for
//! the commands that have no cache of their own (`publish`, `bundle`, the
//! crawl's `gpgv`), and the sweep of the ones a killed run left behind.
//!
//! A run holds an flock on a lock file inside each of its directories for
//! as long as it lives; the kernel drops it when the process dies, however
//! it dies. The first scratch directory a process makes sweeps its
//! siblings: a directory of ours (owner, mode 0700, our name) whose lock
//! is free belonged to a run that is gone, and is removed. One whose lock
//! is held, or that has no lock (an older kpackfs, or another program), is
//! left alone.
//!
//! The lock file is locked before it gets the name the sweep looks for,
//! so a directory being made is never taken for a stale one.

use anyhow::{Context, Result};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Every scratch directory's name starts with this.
pub const PREFIX: &str = "kpackfs-";
/// The lock a live run holds, inside its directory.
const LOCK: &str = ".kpackfs-lock";
/// The lock before it is held.
const LOCK_NEW: &str = ".kpackfs-lock.new";
/// The sweep reads at most this many names of the temporary directory.
const MAX_NAMES_SWEPT: usize = 100_000;

/// A private directory, removed on drop (or by a later run's sweep if
/// this one is killed).
pub struct Scratch {
    // Field order: the directory goes before its lock is released.
    dir: tempfile::TempDir,
    _lock: File,
}

impl Scratch {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A new scratch directory in the system's temporary directory, named
/// `kpackfs-<what>XXXXXX` (`what` as "publish.").
pub fn system(what: &str) -> Result<Scratch> {
    in_dir(&std::env::temp_dir(), what)
}

/// A new scratch directory in `base`, after sweeping `base` once per
/// process.
pub fn in_dir(base: &Path, what: &str) -> Result<Scratch> {
    sweep_once(base);
    let dir = crate::files::private_temp_dir(base, &format!("{PREFIX}{what}"))?;
    let lock = hold_lock(dir.path())?;
    Ok(Scratch { dir, _lock: lock })
}

fn hold_lock(dir: &Path) -> Result<File> {
    let new = dir.join(LOCK_NEW);
    let file = crate::files::create_new(&new, 0o600).with_context(|| format!("creating {}", new.display()))?;
    flock(&file, libc::LOCK_EX).with_context(|| format!("locking {}", new.display()))?;
    let named = dir.join(LOCK);
    std::fs::rename(&new, &named).with_context(|| format!("naming {}", named.display()))?;
    Ok(file)
}

fn flock(file: &File, how: libc::c_int) -> std::io::Result<()> {
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), how) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn sweep_once(base: &Path) {
    static SWEPT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let mut swept = SWEPT.lock().unwrap_or_else(|e| e.into_inner());
    if swept.iter().any(|b| b == base) {
        return;
    }
    swept.push(base.to_path_buf());
    drop(swept);
    let removed = sweep(base);
    if !removed.is_empty() {
        log::info!("removed {} scratch directories killed runs left in {}", removed.len(), base.display());
    }
}

/// Remove the scratch directories in `base` whose run is gone; returns them.
pub fn sweep(base: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(base) else { return Vec::new() };
    let euid = crate::files::euid();
    let mut removed = Vec::new();
    for entry in entries.take(MAX_NAMES_SWEPT).flatten() {
        if !entry.file_name().to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let dir = entry.path();
        // lstat: a link named like ours is not followed.
        let ours =
            std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid() == euid && m.mode() & 0o7777 == 0o700);
        if ours && run_is_gone(&dir, euid) && std::fs::remove_dir_all(&dir).is_ok() {
            removed.push(dir);
        }
    }
    removed
}

/// The directory's lock exists, is ours, and nobody holds it.
fn run_is_gone(dir: &Path, euid: u32) -> bool {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(dir.join(LOCK));
    let Ok(lock) = opened else { return false };
    let regular_and_ours = lock.metadata().is_ok_and(|m| m.is_file() && m.uid() == euid);
    regular_and_ours && flock(&lock, libc::LOCK_EX | libc::LOCK_NB).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A run killed while holding `scratch`: its lock released, its
    /// directory left.
    fn killed(scratch: Scratch) -> PathBuf {
        let Scratch { dir, _lock } = scratch;
        drop(_lock);
        dir.keep()
    }

    #[test]
    fn the_sweep_removes_what_killed_runs_left_and_nothing_else() {
        let base = tempfile::tempdir().unwrap();
        let left = killed(in_dir(base.path(), "publish.").unwrap());
        std::fs::write(left.join("half.tgz"), b"partial").unwrap();
        let live = in_dir(base.path(), "publish.").unwrap();
        // No lock (an older kpackfs, or not ours), and not private: kept.
        let unlocked = base.path().join("kpackfs-pack.old");
        std::fs::create_dir(&unlocked).unwrap();
        std::fs::set_permissions(&unlocked, std::fs::Permissions::from_mode(0o700)).unwrap();
        let open = killed(in_dir(base.path(), "gpgv.").unwrap());
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A link named like ours, to a directory a killed run left: not followed.
        let elsewhere = tempfile::tempdir().unwrap();
        let target = killed(in_dir(elsewhere.path(), "x.").unwrap());
        std::os::unix::fs::symlink(&target, base.path().join("kpackfs-link")).unwrap();
        // Another name: not ours to remove.
        let other = base.path().join("other.abc");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join(LOCK), b"").unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o700)).unwrap();

        assert_eq!(sweep(base.path()), vec![left.clone()]);
        assert!(!left.exists());
        assert!(live.path().join(LOCK).exists(), "a live run's directory stays");
        for kept in [&unlocked, &open, &target, &other] {
            assert!(kept.exists(), "{} kept", kept.display());
        }
        drop(live);
        assert_eq!(sweep(base.path()), Vec::<PathBuf>::new(), "a run that ended removed its own");
    }

    #[test]
    fn a_new_scratch_directory_is_private_and_locked_under_its_final_name() {
        let base = tempfile::tempdir().unwrap();
        let scratch = in_dir(base.path(), "bundle.").unwrap();
        let name = scratch.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("kpackfs-bundle."), "{name}");
        let mode = std::fs::metadata(scratch.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(!scratch.path().join(LOCK_NEW).exists());
        assert!(!run_is_gone(scratch.path(), crate::files::euid()), "held while the run lives");
        let path = scratch.path().to_path_buf();
        drop(scratch);
        assert!(!path.exists(), "removed on drop");
    }
}
