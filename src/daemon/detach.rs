//! Starting the daemon in the background and knowing it is ready.
//!
//! `kpackfs mount` takes the cache directory's lock, then re-executes itself
//! with `--foreground`, detached (new session, output appended to
//! `<cache-dir>/kpackfs.log`), handing over the lock and a pipe. The daemon
//! writes `ready <pid>` on the pipe once the filesystem answers; if it dies
//! first, the caller shows what it logged. A second mount of the same cache
//! is refused before anything is written to the running daemon's log.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;

const READY_FD_ENV: &str = "KPACKFS_READY_FD";
const LOCK_FD_ENV: &str = "KPACKFS_LOCK_FD";
/// The daemon's log is moved to `kpackfs.log.1` past this size at mount.
const LOG_ROTATE_BYTES: u64 = 8 << 20;

/// The cache directory's lock, held for the daemon's life.
pub struct CacheLock(#[allow(dead_code)] std::fs::File);

/// Take the cache directory's lock: inherited from `kpackfs mount` when it
/// started us, else taken here.
pub fn lock_cache_dir(dir: &Path) -> Result<CacheLock> {
    if let Some(fd) = std::env::var(LOCK_FD_ENV).ok().and_then(|v| v.parse::<i32>().ok()) {
        close_on_exec(fd);
        if let Some(ready) = std::env::var(READY_FD_ENV).ok().and_then(|v| v.parse::<i32>().ok()) {
            close_on_exec(ready);
        }
        // SAFETY: our parent handed us this descriptor, locked, and nothing else owns it.
        return Ok(CacheLock(unsafe { std::fs::File::from_raw_fd(fd) }));
    }
    crate::files::create_owned_dir_all(dir)?;
    let file = crate::files::open_private_output(&dir.join("lock"), true)
        .with_context(|| format!("opening {}", dir.join("lock").display()))?;
    // SAFETY: flock on a valid descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!(
            "cache directory {} is in use by another kpackfs (kpackfs status, or umount its mount point first)",
            dir.display()
        );
    }
    Ok(CacheLock(file))
}

/// dup2 handed us the lock and the ready pipe without close-on-exec; set
/// it again, or every program the daemon runs (a build sandbox, gpgv)
/// would hold the cache's lock past a daemon killed with -9 and a new
/// mount of the cache would be refused until it exits.
fn close_on_exec(fd: i32) {
    // SAFETY: fcntl on a descriptor our parent handed us; it fails harmlessly if closed.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

fn rotate_log(path: &Path) {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let old = path.with_extension("log.1");
        if let Err(e) = std::fs::rename(path, &old) {
            log::warn!("rotating {}: {e}", path.display());
        }
    }
}

/// Start the daemon detached with `args` (ours, plus `--foreground`) and
/// wait until it reports readiness (or dies). Returns the daemon's pid.
pub fn detach_and_wait(cache_dir: &Path, args: Vec<std::ffi::OsString>) -> Result<u32> {
    let lock = lock_cache_dir(cache_dir)?;
    let log_path = cache_dir.join("kpackfs.log");
    rotate_log(&log_path);
    let mut log = crate::files::open_private_output(&log_path, true)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let start = log.seek(std::io::SeekFrom::End(0)).unwrap_or(0);
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these descriptors; each is owned once.
    let (read_end, write_end) = unsafe { (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1])) };
    let (write_fd, lock_fd) = (write_end.as_raw_fd(), lock.0.as_raw_fd());
    let exe = std::env::current_exe().context("finding the kpackfs executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(args).arg("--foreground").env(READY_FD_ENV, "3").env(LOCK_FD_ENV, "4").env("KPACKFS_DAEMON", "1");
    cmd.stdin(std::process::Stdio::null()).stdout(log.try_clone()?).stderr(log.try_clone()?);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Move both out of the way first: either may already be fd 3 or 4.
            let (pipe, lock) = (libc::fcntl(write_fd, libc::F_DUPFD, 10), libc::fcntl(lock_fd, libc::F_DUPFD, 10));
            if pipe < 0 || lock < 0 || libc::dup2(pipe, 3) < 0 || libc::dup2(lock, 4) < 0 || libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(pipe);
            libc::close(lock);
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the kpackfs daemon")?;
    drop(write_end);
    // The child holds the lock now (same open file description).
    let _ = lock.0.into_raw_fd();
    let mut line = String::new();
    BufReader::new(read_end).read_line(&mut line).ok();
    if let Some(pid) = line.trim().strip_prefix("ready ").and_then(|p| p.parse().ok()) {
        return Ok(pid);
    }
    let status = child.wait().ok();
    let text = std::fs::read(&log_path).unwrap_or_default();
    let ours = String::from_utf8_lossy(text.get(start as usize..).unwrap_or(&[])).into_owned();
    // The daemon's error, whole (a parse error spans several lines).
    let cause = match ours.rfind("kpackfs: error: ") {
        Some(at) => ours[at + "kpackfs: error: ".len()..].trim_end().to_string(),
        None => ours.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output").to_string(),
    };
    let _ = log.flush();
    bail!("the daemon did not start ({}): {cause}", status.map_or("unknown status".into(), |s| s.to_string()))
}

/// Tell the waiting parent (if any) that the mount is ready.
pub fn signal_ready() {
    let Some(fd) = std::env::var(READY_FD_ENV).ok().and_then(|v| v.parse::<i32>().ok()) else { return };
    close_on_exec(fd);
    // SAFETY: the parent handed us this descriptor; we own it from here.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
    let _ = writeln!(pipe, "ready {}", std::process::id());
}
