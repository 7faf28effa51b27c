//! Whether the process behind a FUSE request has a given .tgz open.
//!
//! Without OPEN requests (see `Filesystem::open`), `stat` and `fstat` of a
//! file look the same to us. They differ for a never-built .tgz: `ls -l`
//! must not build it, while rsync and Python's shutil.copy open it, then
//! fstat it, then read exactly that many bytes. Linux lists the inode number
//! of every open file in /proc/<pid>/fdinfo/<fd> (`ino:`, since 5.14).
//!
//! `ls -l` of a type directory asks this once per `.tgz` name, so the common
//! answer (no) must be cheap: one directory fd on /proc/<pid>/fd, a
//! `readlinkat` relative to it per open fd to keep the few whose path ends in
//! `.tgz`, and only those fdinfo files read. Opening and formatting every
//! fdinfo file by absolute path cost ~55 µs per request (docs/performance.md).

use rustix::fs::{openat, readlinkat, Dir, Mode, OFlags, CWD};

/// A process with more open files than this is answered "not open" past
/// them: the probe runs on a FUSE thread and must stay bounded.
const MAX_FDS_PROBED: usize = 4096;

/// Whether task `pid` (a thread id, as FUSE reports it) has inode `ino`
/// open through a path ending in `suffix`.
pub fn process_has_open(pid: u32, ino: u64, suffix: &[u8]) -> bool {
    if pid == 0 {
        return false; // not visible in our pid namespace
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let Ok(fds) = openat(CWD, format!("/proc/{pid}/fd"), flags, Mode::empty()) else { return false };
    let Ok(entries) = Dir::read_from(&fds) else { return false };
    let needle = format!("\nino:\t{ino}\n");
    let mut link = Vec::with_capacity(256);
    for entry in entries.take(MAX_FDS_PROBED + 2).flatten() {
        let fd = entry.file_name();
        if fd.to_bytes().starts_with(b".") {
            continue;
        }
        // The link names the open file's path; readlink never enters a
        // filesystem (d_path), so it cannot call back into this mount.
        let Ok(target) = readlinkat(&fds, fd, std::mem::take(&mut link)) else { continue };
        let matches = target.as_bytes().ends_with(suffix);
        link = target.into_bytes();
        if !matches {
            continue;
        }
        let info = format!("/proc/{pid}/fdinfo/{}", fd.to_string_lossy());
        if std::fs::read_to_string(info).is_ok_and(|text| format!("\n{text}").contains(&needle)) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sees_our_own_open_file_through_its_suffix_only() {
        let file = tempfile::Builder::new().suffix(".tgz").tempfile().unwrap();
        let ino = file.as_file().metadata().unwrap().ino();
        assert!(process_has_open(std::process::id(), ino, b".tgz"));
        assert!(!process_has_open(std::process::id(), ino ^ 0xdead_beef, b".tgz"));
        assert!(!process_has_open(std::process::id(), ino, b".deb"), "the suffix picks the fds read");
        assert!(!process_has_open(0, ino, b".tgz"));
    }
}
