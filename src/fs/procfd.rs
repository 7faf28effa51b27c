//! Whether the process behind a FUSE request has a given file open.
//!
//! Without OPEN requests (see `Filesystem::open`), `stat` and `fstat` of a
//! file look the same to us. They differ for a never-built .tgz: `ls -l`
//! must not build it, while rsync and Python's shutil.copy open it, then
//! fstat it, then read exactly that many bytes. Linux lists the inode number
//! of every open file in /proc/<pid>/fdinfo/<fd> (`ino:`, since 5.14).

/// Whether task `pid` (a thread id, as FUSE reports it) has inode `ino` open.
pub fn process_has_open(pid: u32, ino: u64) -> bool {
    if pid == 0 {
        return false; // not visible in our pid namespace
    }
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return false };
    let needle = format!("\nino:\t{ino}\n");
    dir.flatten().any(|e| std::fs::read_to_string(e.path()).is_ok_and(|text| format!("\n{text}").contains(&needle)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sees_our_own_open_file() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let ino = file.as_file().metadata().unwrap().ino();
        assert!(process_has_open(std::process::id(), ino));
        assert!(!process_has_open(std::process::id(), ino ^ 0xdead_beef));
        assert!(!process_has_open(0, ino));
    }
}
