//! `/lib/modules/<release>/build` pointing into a mount, for DKMS and the
//! drivers that look there. Made and removed safely: never replacing a real
//! directory or file or someone else's link, idempotent, atomic (a link
//! made beside it and renamed over), and never following a link kpackfs
//! did not make.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    AlreadyThere,
    /// It pointed into a kpackfs mount elsewhere; now it points here.
    Replaced(PathBuf),
    Removed,
    NothingToRemove,
}

/// A marker kpackfs leaves in a modules directory it had to create, so
/// that `unlink` removes the directory again once nothing else is in it.
const CREATED_MARKER: &str = ".kpackfs-created";

/// A link kpackfs would have made: absolute, without `.` or `..` (a target
/// `<mount>/../../usr/src/x` starts with the mount's path but lies outside).
fn is_clean(target: &Path) -> bool {
    use std::path::Component;
    target.is_absolute() && target.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

fn check_release(release: &str) -> Result<()> {
    if release.is_empty() || release == "." || release == ".." || release.contains('/') || release.contains('\0') {
        bail!("{release:?} is not a kernel release");
    }
    Ok(())
}

/// `<modules>/<release>`, made if missing; refused if it is a link.
fn release_dir(modules: &Path, release: &str, create: bool) -> Result<Option<PathBuf>> {
    check_release(release)?;
    let dir = modules.join(release);
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.file_type().is_symlink() => {
            bail!("{} is a symbolic link; kpackfs does not follow it", dir.display())
        }
        Ok(m) if !m.is_dir() => bail!("{} is not a directory", dir.display()),
        Ok(_) => Ok(Some(dir)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            if !modules.exists() {
                std::fs::create_dir_all(modules).with_context(|| format!("creating {}", modules.display()))?;
                crate::files::write_atomic(&modules.join(CREATED_MARKER), b"made by kpackfs which --link\n")?;
            }
            std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok(Some(dir))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

/// Make `<modules>/<release>/build` a link to `target`. `ours` tells links
/// into a kpackfs mount (which may be replaced) from anyone else's.
pub fn link(modules: &Path, release: &str, target: &Path, ours: impl Fn(&Path) -> bool) -> Result<Outcome> {
    let target = &std::path::absolute(target).with_context(|| format!("resolving {}", target.display()))?;
    let Some(dir) = release_dir(modules, release, true)? else { unreachable!("created above") };
    let build = dir.join("build");
    let outcome = match std::fs::symlink_metadata(&build) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Created,
        Err(e) => return Err(e).with_context(|| format!("reading {}", build.display())),
        Ok(m) if m.file_type().is_symlink() => {
            let old = std::fs::read_link(&build).with_context(|| format!("reading {}", build.display()))?;
            if old == *target {
                return Ok(Outcome::AlreadyThere);
            }
            if !is_clean(&old) || !ours(&old) {
                bail!(
                    "{} links to {}, not into a kpackfs mount; remove it yourself if it should go",
                    build.display(),
                    old.display()
                );
            }
            Outcome::Replaced(old)
        }
        Ok(m) if m.is_dir() => {
            bail!("{} is a real directory (installed headers?); kpackfs never replaces it", build.display())
        }
        Ok(_) => bail!("{} is a file; kpackfs never replaces it", build.display()),
    };
    // Made beside it under a name of our own, then renamed over: a reader
    // sees the old link or the new one. rename(2) refuses to put a link
    // over a directory that appeared meanwhile.
    let temp = dir.join(format!(".build.kpackfs-{}", std::process::id()));
    if std::fs::symlink_metadata(&temp).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(&temp).with_context(|| format!("removing {}", temp.display()))?;
    }
    std::os::unix::fs::symlink(target, &temp).with_context(|| format!("creating {}", temp.display()))?;
    if let Err(e) = std::fs::rename(&temp, &build) {
        let _ = std::fs::remove_file(&temp);
        return Err(e).with_context(|| format!("putting the link at {}", build.display()));
    }
    Ok(outcome)
}

/// Remove `<modules>/<release>/build` if it is a link into a kpackfs mount
/// (and the release directory, if that leaves it empty).
pub fn unlink(modules: &Path, release: &str, ours: impl Fn(&Path) -> bool) -> Result<Outcome> {
    let Some(dir) = release_dir(modules, release, false)? else { return Ok(Outcome::NothingToRemove) };
    let build = dir.join("build");
    match std::fs::symlink_metadata(&build) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Outcome::NothingToRemove),
        Err(e) => Err(e).with_context(|| format!("reading {}", build.display())),
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::read_link(&build).with_context(|| format!("reading {}", build.display()))?;
            if !is_clean(&target) || !ours(&target) {
                bail!("{} links to {}, not into a kpackfs mount; left as it is", build.display(), target.display());
            }
            std::fs::remove_file(&build).with_context(|| format!("removing {}", build.display()))?;
            let _ = std::fs::remove_dir(&dir); // only if now empty
                                               // The modules directory too, if kpackfs made it and nothing else is in it.
            let only_marker = std::fs::read_dir(modules)
                .map(|d| d.filter_map(|e| e.ok()).all(|e| e.file_name() == CREATED_MARKER))
                .unwrap_or(false);
            if only_marker && modules.join(CREATED_MARKER).is_file() {
                let _ = std::fs::remove_file(modules.join(CREATED_MARKER));
                let _ = std::fs::remove_dir(modules);
            }
            Ok(Outcome::Removed)
        }
        Ok(_) => bail!("{} is not a link kpackfs made; left as it is", build.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_made_kept_replaced_and_removed_but_never_over_real_things() {
        let d = tempfile::tempdir().unwrap();
        let modules = d.path().join("modules");
        let mnt = Path::new("/kernels");
        let ours = |p: &Path| p.starts_with(mnt);
        let target = Path::new("/kernels/debian/6.1.0-56-amd64/usr/src/linux-headers-6.1.0-56-amd64");
        assert_eq!(link(&modules, "6.1.0-56-amd64", target, ours).unwrap(), Outcome::Created);
        let build = modules.join("6.1.0-56-amd64/build");
        assert_eq!(std::fs::read_link(&build).unwrap(), target);
        assert_eq!(link(&modules, "6.1.0-56-amd64", target, ours).unwrap(), Outcome::AlreadyThere);
        let moved = Path::new("/kernels/debian/6.1.0-56-amd64/x");
        assert_eq!(link(&modules, "6.1.0-56-amd64", moved, ours).unwrap(), Outcome::Replaced(target.to_path_buf()));
        assert_eq!(unlink(&modules, "6.1.0-56-amd64", ours).unwrap(), Outcome::Removed);
        assert!(!modules.join("6.1.0-56-amd64").exists(), "the empty release directory goes too");
        assert_eq!(unlink(&modules, "6.1.0-56-amd64", ours).unwrap(), Outcome::NothingToRemove);

        // A real directory, somebody else's link, a file: refused, untouched.
        std::fs::create_dir_all(modules.join("r/build/include")).unwrap();
        assert!(link(&modules, "r", target, ours).unwrap_err().to_string().contains("real directory"));
        assert!(modules.join("r/build/include").is_dir());
        std::fs::create_dir_all(modules.join("o")).unwrap();
        std::os::unix::fs::symlink("/usr/src/linux-headers-o", modules.join("o/build")).unwrap();
        assert!(link(&modules, "o", target, ours).is_err());
        assert!(unlink(&modules, "o", ours).is_err());
        assert_eq!(std::fs::read_link(modules.join("o/build")).unwrap(), Path::new("/usr/src/linux-headers-o"));
        // A release directory that is a link is not followed.
        std::os::unix::fs::symlink(d.path(), modules.join("l")).unwrap();
        assert!(link(&modules, "l", target, ours).unwrap_err().to_string().contains("symbolic link"));
        assert!(link(&modules, "../x", target, ours).is_err());
    }

    #[test]
    fn a_link_that_climbs_out_of_the_mount_is_not_ours_to_remove() {
        let d = tempfile::tempdir().unwrap();
        let modules = d.path().join("modules");
        let ours = |p: &Path| p.starts_with("/kernels");
        std::fs::create_dir_all(modules.join("x")).unwrap();
        let climbing = Path::new("/kernels/../../../usr/src/x");
        std::os::unix::fs::symlink(climbing, modules.join("x/build")).unwrap();
        let err = unlink(&modules, "x", ours).unwrap_err().to_string();
        assert!(err.contains("not into a kpackfs mount"), "{err}");
        assert_eq!(std::fs::read_link(modules.join("x/build")).unwrap(), climbing);
        assert!(link(&modules, "x", Path::new("/kernels/debian/a"), ours).is_err(), "nor replaced");
    }

    #[test]
    fn unlink_removes_the_modules_directory_link_created_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let ours = |p: &Path| p.starts_with("/kernels");
        let target = Path::new("/kernels/debian/a/usr/src/linux-headers-a");
        let made = d.path().join("made/modules");
        link(&made, "a", target, ours).unwrap();
        assert_eq!(unlink(&made, "a", ours).unwrap(), Outcome::Removed);
        assert!(!made.exists(), "link created it, unlink removed it");
        let theirs = d.path().join("theirs/modules");
        std::fs::create_dir_all(&theirs).unwrap();
        link(&theirs, "a", target, ours).unwrap();
        unlink(&theirs, "a", ours).unwrap();
        assert!(theirs.is_dir(), "a modules directory that was there stays");
    }
}
