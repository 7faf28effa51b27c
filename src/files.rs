//! Writing files safely where other users may have been first.
//!
//! - New files are created exclusively (`O_CREAT|O_EXCL`, which also refuses
//!   a symlink planted at the name) under random names, so nothing is ever
//!   written through a link kpackfs did not create.
//! - Outputs appear atomically: written beside the destination, synced,
//!   renamed ([`AtomicFile`]); a failure leaves the old file or nothing.
//! - Temporary directories are made exclusively with mode 0700
//!   ([`private_temp_dir`]).
//! - Directories kpackfs keeps state in must belong to the user running it
//!   and not be writable by others ([`create_owned_dir_all`]).

use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The directory holding `path` ("." for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn random_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut seed = [0u8; 8];
    let _ = File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed));
    format!("{}.{:016x}", N.fetch_add(1, Ordering::Relaxed), u64::from_le_bytes(seed))
}

/// Create a new file exclusively (never through an existing name or link).
pub fn create_new(path: &Path, mode: u32) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(mode).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Open a file of kpackfs's own for writing, never following a symlink at
/// its name: created if missing, appended to or truncated.
pub fn open_private_output(path: &Path, append: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .append(append)
        .truncate(!append)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// A file being written beside its destination; [`AtomicFile::commit`]
/// syncs and renames it into place, dropping it uncommitted removes it.
pub struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Start writing `dest` (mode 0644, before the umask).
    pub fn create(dest: &Path) -> Result<AtomicFile> {
        Self::create_in(dest, parent_dir(dest))
    }

    /// Start writing `dest`, with the temporary file in `dir` (which must be
    /// on the same filesystem).
    pub fn create_in(dest: &Path, dir: &Path) -> Result<AtomicFile> {
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp.{}", random_suffix()));
        let file = create_new(&tmp, 0o644).map_err(|e| describe_create_error(e, &tmp, dest))?;
        Ok(AtomicFile { tmp, dest: dest.to_path_buf(), file: Some(file) })
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("file present until commit")
    }

    /// Where the file goes on commit.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Sync, rename into place, and sync the directory (the rename is durable).
    pub fn commit(mut self) -> Result<()> {
        let file = self.file.take().expect("file present until commit");
        file.sync_all().with_context(|| format!("syncing {}", self.dest.display()))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.dest).with_context(|| format!("renaming into {}", self.dest.display()))?;
        sync_dir(parent_dir(&self.dest));
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file().flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A creation error that names what the user gave, not our temporary name.
fn describe_create_error(e: std::io::Error, tmp: &Path, dest: &Path) -> anyhow::Error {
    let dir = parent_dir(dest);
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow::anyhow!("cannot write {}: directory {} does not exist", dest.display(), dir.display())
        }
        std::io::ErrorKind::PermissionDenied => {
            anyhow::anyhow!("cannot write {}: no permission to create files in {}", dest.display(), dir.display())
        }
        _ => anyhow::anyhow!("cannot write {} (creating {}): {e}", dest.display(), tmp.display()),
    }
}

/// Write `data` to `path` atomically.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let mut out = AtomicFile::create(path)?;
    out.write_all(data).with_context(|| format!("writing {}", path.display()))?;
    out.commit()
}

/// Make a rename durable.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

pub fn remove_file_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// A new directory of our own for temporary files: random name, made
/// exclusively, mode 0700, removed on drop.
pub fn private_temp_dir(base: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(base)
        .with_context(|| format!("creating a temporary directory in {}", base.display()))
}

/// Create `dir` (and its parents) if needed, then make sure it is a
/// directory that belongs to us and that no other user can write into:
/// kpackfs runs as root and trusts what it finds there.
pub fn create_owned_dir_all(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    check_owned_dir(dir)
}

/// The effective uid kpackfs runs as.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Refuse a directory owned by another user or writable by group or
/// others, or one that another user could swap: every directory above it
/// must belong to root or to us, and be writable by no one else unless it
/// is sticky (as /tmp: others cannot rename what is ours in it).
pub fn check_owned_dir(dir: &Path) -> Result<()> {
    check_ancestors(dir)?;
    let meta = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let me = euid();
    if meta.uid() != me {
        bail!(
            "{} belongs to uid {}, not to the user running kpackfs (uid {me}); refusing to trust it",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        bail!(
            "{} is writable by other users (mode {:o}); refusing to trust it (chmod go-w {})",
            dir.display(),
            meta.mode() & 0o7777,
            dir.display()
        );
    }
    Ok(())
}

fn check_ancestors(dir: &Path) -> Result<()> {
    let absolute = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let me = euid();
    let mut at = absolute.parent();
    while let Some(ancestor) = at {
        // Through links, as path resolution goes: what is checked is what is used.
        let meta = std::fs::metadata(ancestor).with_context(|| format!("reading {}", ancestor.display()))?;
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.uid() != 0 && meta.uid() != me {
            bail!(
                "{} lies under {}, which belongs to uid {}: another user could move it; refusing to trust it",
                dir.display(),
                ancestor.display(),
                meta.uid()
            );
        }
        if meta.mode() & 0o022 != 0 && !sticky {
            bail!(
                "{} lies under {}, which other users can write (mode {:o}): they could swap it; refusing to trust it",
                dir.display(),
                ancestor.display(),
                meta.mode() & 0o7777
            );
        }
        at = ancestor.parent();
    }
    Ok(())
}

/// Create a directory that only kpackfs uses (mode 0755), no ownership check.
pub fn create_private_dir_all(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// A read-only shared mapping of a whole file. Cached files are never
/// modified after their rename into place (eviction unlinks them, which
/// leaves the mapping valid), so the mapped bytes cannot change under us.
#[derive(Debug)]
pub struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and immutable for its whole life.
unsafe impl Send for Mapping {}
// SAFETY: as above; concurrent reads of immutable memory are fine.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub fn new(file: &File, len: u64) -> Option<Mapping> {
        if len == 0 {
            return None;
        }
        let len = usize::try_from(len).ok()?;
        // SAFETY: mapping a file we hold open, read-only and shared.
        let ptr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        (ptr != libc::MAP_FAILED).then_some(Mapping { ptr, len })
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: ptr/len come from a successful mmap that lives as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }

    /// Drop the pages read so far from this process's memory (a pass over
    /// a whole index otherwise keeps all of it resident): they stay in the
    /// page cache, and a later read faults them back in, unchanged, since
    /// the file is immutable.
    pub fn release_pages(&self) {
        // SAFETY: MADV_DONTNEED on a read-only shared file mapping only
        // drops resident pages; the bytes read afterwards are the file's.
        unsafe { libc::madvise(self.ptr, self.len, libc::MADV_DONTNEED) };
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what mmap returned.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// Where `-o` output goes.
pub enum Output {
    /// A regular file (or a new path): written beside it, then renamed.
    File(PathBuf),
    /// A device, FIFO or socket (e.g. `/dev/null`, `/dev/stdout`): written
    /// in place, as a stream; never replaced.
    Stream(PathBuf),
    /// `-`: standard output.
    Stdout,
}

impl Output {
    /// Decide how to write `path`. A symlink is followed to a regular file
    /// (the file is replaced, the link stays) or a special file (streamed),
    /// only when it is ours (or root's): a link another user planted (in
    /// /tmp, say) is refused, whatever fs.protected_symlinks says; a
    /// dangling link is refused.
    pub fn resolve(path: &Path) -> Result<Output> {
        if path.as_os_str() == "-" {
            return Ok(Output::Stdout);
        }
        let link = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = parent_dir(path);
                if !dir.is_dir() {
                    bail!("cannot write {}: directory {} does not exist", path.display(), dir.display());
                }
                return Ok(Output::File(path.to_path_buf()));
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let meta = if link.file_type().is_symlink() {
            if link.uid() != euid() && link.uid() != 0 {
                bail!(
                    "{} is a symlink that belongs to uid {}, not to the user running kpackfs: refusing to write through it",
                    path.display(),
                    link.uid()
                );
            }
            std::fs::metadata(path).with_context(|| format!("{} is a symlink to nothing", path.display()))?
        } else {
            link
        };
        if meta.is_file() {
            let real = path.canonicalize().with_context(|| format!("resolving {}", path.display()))?;
            Ok(Output::File(real))
        } else if meta.is_dir() {
            bail!("{} is a directory; give a file name", path.display())
        } else {
            Ok(Output::Stream(path.to_path_buf()))
        }
    }
}

/// A text file of at most `limit` bytes (a longer one is an error, not cut).
pub fn read_bounded(path: &Path, limit: u64) -> Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > limit {
        anyhow::bail!("{} is over {limit} bytes", path.display());
    }
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))
}

/// A file holding a secret (a password, a token, a private key): at most
/// `limit` bytes, opened without following a link, and refused unless it
/// belongs to root or to the user running kpackfs and grants no access to
/// group or others (apt's auth.conf advice, made a rule).
pub fn read_secret(path: &Path, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("opening {} (a link is not followed)", path.display()))?;
    let meta = file.metadata().with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let me = euid();
    if meta.uid() != 0 && meta.uid() != me {
        bail!(
            "{} holds secrets but belongs to uid {}, not to root or the user running kpackfs (uid {me}); refusing it",
            path.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        bail!(
            "{} holds secrets but its mode {:04o} lets group or others read it; refusing it (chmod 600 {})",
            path.display(),
            meta.mode() & 0o7777,
            path.display()
        );
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > limit {
        bail!("{} is over {limit} bytes", path.display());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident KiB of the mapping that starts at `ptr`, from /proc/self/smaps.
    fn resident_kib(ptr: *mut libc::c_void) -> u64 {
        let start = format!("{:x}-", ptr as usize);
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&start)).skip(1);
        let rss = lines.find(|l| l.starts_with("Rss:")).expect("the mapping is listed");
        rss.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn released_pages_leave_the_process_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let bytes: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let m = Mapping::new(&file, bytes.len() as u64).unwrap();
        let sum = |m: &Mapping| m.bytes().iter().step_by(4096).map(|b| *b as u64).sum::<u64>();
        let first = sum(&m);
        assert!(resident_kib(m.ptr) >= 8 << 10, "every page read is resident: {} KiB", resident_kib(m.ptr));
        m.release_pages();
        assert!(resident_kib(m.ptr) < 1 << 10, "released: {} KiB left", resident_kib(m.ptr));
        assert_eq!(sum(&m), first, "read again, the same bytes");
    }

    #[test]
    fn atomic_writes_never_follow_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        std::fs::write(&target, "keep").unwrap();
        let planted = dir.path().join("planted");
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        assert!(create_new(&planted, 0o644).is_err());
        assert!(open_private_output(&planted, false).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        write_atomic(&dir.path().join("out"), b"new").unwrap();
        assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 3, "no temporary file left: {names:?}");
    }

    #[test]
    fn temp_dirs_are_private_and_new() {
        let base = tempfile::tempdir().unwrap();
        let t = private_temp_dir(base.path(), "kpackfs-x.").unwrap();
        let meta = std::fs::metadata(t.path()).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        let u = private_temp_dir(base.path(), "kpackfs-x.").unwrap();
        assert_ne!(t.path(), u.path());
    }

    #[test]
    fn outputs_resolve_by_file_type() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(Output::resolve(Path::new("-")).unwrap(), Output::Stdout));
        assert!(matches!(Output::resolve(Path::new("/dev/null")).unwrap(), Output::Stream(_)));
        let new = dir.path().join("new.tgz");
        assert!(matches!(Output::resolve(&new).unwrap(), Output::File(p) if p == new));
        let err = Output::resolve(&dir.path().join("nodir/x.tgz")).err().unwrap().to_string();
        assert!(err.contains("does not exist"), "{err}");
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("dangling")).unwrap();
        assert!(Output::resolve(&dir.path().join("dangling")).is_err());
    }

    #[test]
    fn untrusted_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_owned_dir(&open).unwrap_err().to_string();
        assert!(err.contains("writable by other users"), "{err}");
        create_owned_dir_all(&dir.path().join("mine/cache")).unwrap();
    }
}
