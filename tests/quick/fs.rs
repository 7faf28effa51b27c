//! The filesystem core's answers: namespace, negative entries, attributes,
//! the size-0 .tgz rule, readdir offsets, ESTALE, status, refreshes.

use super::harness::{Harness, Options, ME};
use super::synthetic::{manifest, Kernel};
use kpackfs::fs::ino::Ino;
use kpackfs::fs::types::{FOREVER, NOW};
use kpackfs::fs::{Errno, FileKind, Lookup};
use std::time::Duration;

#[test]
fn the_namespace_lists_every_bundle_and_downloads_nothing() {
    let h = Harness::new(&["9.1.0-1-amd64", "9.1.0-2-amd64"], 100, Options::default());
    assert_eq!(h.list("/").unwrap(), ["debian", "bundles", "by-uname", ".kpackfs"]);
    assert_eq!(h.list("debian").unwrap(), ["9.1.0-1-amd64", "9.1.0-1-amd64.tgz", "9.1.0-2-amd64", "9.1.0-2-amd64.tgz"]);
    assert_eq!(h.list("bundles").unwrap(), ["bundle-9.1.0-1-amd64.tgz", "bundle-9.1.0-2-amd64.tgz"]);
    let dir = h.resolve("debian/9.1.0-1-amd64").unwrap();
    assert_eq!((dir.attr.kind, dir.attr.perm, dir.ttl), (FileKind::Dir, 0o755, FOREVER));
    let tgz = h.resolve("bundles/bundle-9.1.0-2-amd64.tgz").unwrap();
    assert_eq!(tgz.attr.ino, h.resolve("debian/9.1.0-2-amd64.tgz").unwrap().attr.ino, "one inode, two names");
    assert!(h.source.calls().is_empty(), "listing and stat never download: {:?}", h.source.calls());
    assert_eq!(h.cache.usage().bundles, 0);
}

#[test]
fn owner_modes_and_mtime_are_fixed() {
    let h = Harness::new(&["9.1.0-1-amd64"], 100, Options::default());
    let root = h.getattr(1, false).unwrap().attr;
    assert_eq!(root.perm, 0o555);
    let epoch_2000 = std::time::UNIX_EPOCH + Duration::from_secs(946_684_800);
    for path in [
        "debian",
        "debian/9.1.0-1-amd64",
        "debian/9.1.0-1-amd64/BUNDLE_UNAME",
        "debian/9.1.0-1-amd64/usr/src/linux-headers-9.1.0-1-amd64/Makefile",
        "debian/9.1.0-1-amd64/usr/lib/linux-kbuild-9/scripts/basic.sh",
        "debian/9.1.0-1-amd64/usr/src",
    ] {
        let a = h.resolve(path).unwrap().attr;
        assert_eq!(a.mtime, epoch_2000, "{path}");
        let expected = match (a.kind, path) {
            (FileKind::Dir, "debian") => 0o555,
            (FileKind::Dir, _) => 0o755,
            (FileKind::File, _) => 0o644,
            (FileKind::Symlink, _) => 0o777,
        };
        assert_eq!(a.perm, expected, "{path}");
    }
    // Owner root:root is fixed in the adapter's FileAttr (uid 0, gid 0), and
    // the .tgz is read-only for everyone.
    assert_eq!(h.resolve("debian/9.1.0-1-amd64.tgz").unwrap().attr.perm, 0o444);
}

#[test]
fn contents_and_bundle_files_are_served() {
    let h = Harness::new(&["9.1.0-1-amd64"], 100, Options::default());
    let b = "debian/9.1.0-1-amd64";
    assert_eq!(h.read_file(&format!("{b}/BUNDLE_UNAME")).unwrap(), b"9.1.0-1-amd64");
    assert_eq!(h.read_file(&format!("{b}/BUNDLE_BUILD_DIR")).unwrap(), b"./usr/src/linux-headers-9.1.0-1-amd64");
    assert_eq!(h.read_file(&format!("{b}/BUNDLE_CHECKSUM")).unwrap(), h.ids[0].as_bytes());
    let h_file = format!("{b}/usr/src/linux-headers-9.1.0-1-amd64/include/linux/kpack.h");
    assert_eq!(h.read_file(&h_file).unwrap(), b"#define KPACK \"9.1.0-1-amd64\"\n");
    // The absolute link into /usr/src became relative and resolves inside the bundle.
    let link = h.resolve(&format!("{b}/lib/modules/9.1.0-1-amd64/build")).unwrap();
    assert_eq!(link.attr.kind, FileKind::Symlink);
    let core = h.core.clone();
    let target = h.call(move |done| core.readlink(link.attr.ino, ME, done)).unwrap();
    assert_eq!(target, b"../../../usr/src/linux-headers-9.1.0-1-amd64");
}

#[test]
fn missing_names_are_negative_entries_everywhere() {
    let h = Harness::new(&["9.1.0-1-amd64"], 100, Options::default());
    assert_eq!(h.lookup(1, "nope").unwrap(), Lookup::Negative);
    let debian = h.resolve("debian").unwrap().attr.ino;
    assert_eq!(h.lookup(debian, "9.9.9-nope").unwrap(), Lookup::Negative);
    let inc = h.resolve("debian/9.1.0-1-amd64/usr/src/linux-headers-9.1.0-1-amd64/include").unwrap().attr.ino;
    assert_eq!(h.lookup(inc, "asm-probe.h").unwrap(), Lookup::Negative);
    // Walking into a file is ENOTDIR; an unknown inode ENOENT.
    let status = h.resolve(".kpackfs/status").unwrap().attr.ino;
    assert_eq!(h.lookup(status, "x"), Err(Errno::ENOTDIR));
    assert_eq!(h.getattr(12, false), Err(Errno::ENOENT));
}

#[test]
fn an_unbuilt_tgz_is_size_0_until_a_reader_has_it_open() {
    let h = Harness::new(&["9.1.0-1-amd64"], 50_000, Options::default());
    let tgz = h.resolve("debian/9.1.0-1-amd64.tgz").unwrap();
    assert_eq!((tgz.attr.size, tgz.ttl), (0, NOW), "stat never builds: size 0, not cached");
    assert!(h.source.calls().is_empty());
    // fstat by a process that has it open (rsync, shutil.copy) builds it.
    h.callers.open.lock().unwrap().insert((ME.pid, tgz.attr.ino));
    let built = h.getattr(tgz.attr.ino, false).unwrap();
    assert!(built.attr.size > 1000, "{built:?}");
    assert_eq!(built.ttl, FOREVER);
    // From then on stat is exact for everyone, and the bytes match the size.
    h.callers.open.lock().unwrap().clear();
    assert_eq!(h.getattr(tgz.attr.ino, false).unwrap().attr.size, built.attr.size);
    let bytes = h.read_file("debian/9.1.0-1-amd64.tgz").unwrap();
    assert_eq!(bytes.len() as u64, built.attr.size);
    assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
}

#[test]
fn reading_past_the_cached_size_builds_the_tgz() {
    let h = Harness::new(&["9.1.0-1-amd64"], 1000, Options::default());
    let ino = h.resolve("debian/9.1.0-1-amd64.tgz").unwrap().attr.ino;
    // cp and tar read past the size the kernel has (0): the kernel asks for
    // the attributes with a file handle first.
    let exact = h.getattr(ino, true).unwrap();
    assert!(exact.attr.size > 0);
    assert_eq!(h.read(ino, 0, 4).unwrap(), [0x1f, 0x8b, 8, 0]);
}

#[test]
fn readdir_resumes_at_every_offset_without_gaps_or_repeats() {
    let unames: Vec<String> = (0..3500).map(|i| format!("9.1.0-{i}-amd64")).collect();
    let refs: Vec<&str> = unames.iter().map(String::as_str).collect();
    let h = Harness::new(&refs, 10, Options::default());
    let debian = h.resolve("debian").unwrap().attr;
    // glibc sizes its getdents buffer by st_blksize: 1 MiB, the kernel's
    // largest READDIRPLUS, so a big directory lists in a few requests.
    assert_eq!(debian.blksize, 1 << 20);
    let debian = debian.ino;
    let first = h.readdir_page(debian, 0, false).unwrap();
    assert!(first.len() < 7000, "a page is bounded: {}", first.len());
    assert!(first.len() >= 5000, "a page fills a 1 MiB buffer: {}", first.len());
    let all = h.list("debian").unwrap();
    assert_eq!(all.len(), 7000);
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, all, "sorted, no repeats");
    // Resuming from an arbitrary offset gives exactly the rest.
    let from = h.readdir_page(debian, 5001, true).unwrap();
    assert_eq!(String::from_utf8(from[0].name.clone()).unwrap(), all[5001]);
    assert_eq!(from.len(), 1999);
    assert!(from.iter().all(|i| i.attr.is_some()), "readdirplus carries attributes");
    assert!(h.readdir_page(debian, 7000, false).unwrap().is_empty());
    assert!(h.readdir_page(debian, u64::MAX, false).unwrap().is_empty());
    // Bundle directories page the same way.
    let usr = h.resolve("debian/9.1.0-5-amd64/usr").unwrap().attr.ino;
    let page = h.readdir_page(usr, 0, false).unwrap();
    let names: Vec<String> = page.iter().map(|i| String::from_utf8(i.name.clone()).unwrap()).collect();
    assert_eq!(names, ["lib", "src"]);
    assert_eq!(h.readdir_page(usr, page[0].next, false).unwrap().len(), 1);
}

#[test]
fn inodes_past_a_bundle_are_estale_and_files_are_not_directories() {
    let h = Harness::new(&["9.1.0-1-amd64"], 100, Options::default());
    let dir = h.resolve("debian/9.1.0-1-amd64").unwrap().attr.ino;
    let Some(Ino::Node { slot, .. }) = Ino::decode(dir) else { panic!() };
    let beyond = Ino::Node { slot, index: 1_000_000 }.encode();
    assert_eq!(h.getattr(beyond, false), Err(Errno::ESTALE));
    assert_eq!(h.read(beyond, 0, 10), Err(Errno::ESTALE));
    let file = h.resolve("debian/9.1.0-1-amd64/BUNDLE_UNAME").unwrap().attr.ino;
    assert_eq!(h.readdir_page(file, 0, false), Err(Errno::ENOTDIR));
    assert_eq!(h.read(dir, 0, 10), Err(Errno::EISDIR));
    // An inode of a slot the namespace never had.
    assert_eq!(h.getattr(Ino::Node { slot: 999, index: 1 }.encode(), false), Err(Errno::ENOENT));
}

#[test]
fn status_names_the_failed_bundle_its_cause_and_the_retry_time() {
    let h = Harness::new(&["9.1.0-1-amd64"], 100, Options { backoff: Duration::from_secs(60), ..Options::default() });
    h.source.add("linux-headers", kpackfs::fetch::source::Fault::Status(503), 0, None);
    assert_eq!(h.resolve("debian/9.1.0-1-amd64/usr"), Err(Errno::EIO));
    let status = String::from_utf8(h.read_file(".kpackfs/status").unwrap()).unwrap();
    let line = status.lines().find(|l| l.contains("debian/9.1.0-1-amd64")).unwrap_or_else(|| panic!("{status}"));
    assert!(line.trim_start().starts_with("failed"), "{line}");
    assert!(line.contains("debian/9.1.0-1-amd64") && line.contains("HTTP 503"), "{line}");
    assert!(line.contains("retry allowed in 5") || line.contains("retry allowed in 6"), "{line}");
    let json: serde_json::Value = serde_json::from_slice(&h.read_file(".kpackfs/status.json").unwrap()).unwrap();
    let b = &json["bundles"][0];
    assert_eq!(b["state"], "failed");
    assert!(b["retry_in_secs"].as_u64().unwrap() > 50);
}

/// A reader's view of a status file stays one rendering: the open (a path
/// walk) renders, and the refreshes the kernel sends while that reader reads
/// (getattr from the open file) keep the same bytes even when the state
/// has changed meanwhile; a new open sees the new state.
#[test]
fn a_status_reader_sees_one_rendering_from_open_to_end() {
    let h = Harness::new(&["9.1.0-1-amd64", "9.1.0-2-amd64"], 100, Options::default());
    let meta = h.resolve(".kpackfs").unwrap().attr.ino;
    let opened = match h.lookup(meta, "status.json").unwrap() {
        kpackfs::fs::Lookup::Found(t) => t.attr,
        other => panic!("{other:?}"),
    };
    let first = h.read(opened.ino, 0, 1 << 20).unwrap();
    // The state changes (a bundle is built).
    h.read_file("debian/9.1.0-1-amd64/BUNDLE_UNAME").unwrap();
    let refreshed = h.getattr(opened.ino, true).unwrap().attr;
    assert_eq!(
        (refreshed.size, refreshed.mtime),
        (opened.size, opened.mtime),
        "the reader's refresh keeps its rendering"
    );
    let again = h.read(opened.ino, 0, 1 << 20).unwrap();
    assert_eq!(again, first);
    assert_eq!(again.len() as u64, opened.size);
    serde_json::from_slice::<serde_json::Value>(&again).expect("one whole document");
    // A new open sees the build.
    let reopened = match h.lookup(meta, "status.json").unwrap() {
        kpackfs::fs::Lookup::Found(t) => t.attr,
        other => panic!("{other:?}"),
    };
    assert_ne!(reopened.mtime, opened.mtime);
    let now: serde_json::Value = serde_json::from_slice(&h.read(reopened.ino, 0, 1 << 20).unwrap()).unwrap();
    assert!(now["bundles"].as_array().unwrap().iter().any(|b| b["state"] == "ready"), "{now}");
}

#[test]
fn a_refresh_adds_bundles_and_invalidates_only_what_changed() {
    let h = Harness::new(&["9.1.0-1-amd64"], 100, Options::default());
    let before = h.resolve("debian/9.1.0-1-amd64").unwrap().attr.ino;
    let more = Kernel::write(&h.dir.path().join("mirror"), "9.1.0-7-amd64", 100);
    let (mut m, _) = manifest(&h.kernels, true);
    m.merge(&manifest(&[more], true).0);
    assert_eq!(h.core.update_manifest(&m), 1);
    assert_eq!(h.resolve("debian/9.1.0-1-amd64").unwrap().attr.ino, before, "inode numbers stay");
    assert!(h.resolve("debian/9.1.0-7-amd64").is_ok());
    let debian = h.resolve("debian").unwrap().attr.ino;
    let inval = h.invalidations.0.lock().unwrap().clone();
    assert!(inval.contains(&format!("entry {debian} 9.1.0-7-amd64")), "{inval:?}");
    assert!(inval.contains(&format!("inode {debian}")), "{inval:?}");
    assert!(!inval.iter().any(|i| i.contains("9.1.0-1-amd64")), "unchanged names stay cached: {inval:?}");
}

/// The .tgz is a pure function of the packages: pinned here against a
/// digest computed once, so a change of bytes (tar headers, gzip, order,
/// layout) cannot pass unnoticed. Update it only for an intended format
/// change, and say so in the commit.
#[test]
fn the_tgz_of_known_packages_has_a_known_digest() {
    const MOUNTED: &str = "29876e32fe70ab337becae6fd6481aced0f3f720e21d868d7f69f0bb983eafa8";
    const COMMAND_LINE: &str = "8ce55cfe377275c5a1d9236a503db66d5380e940d0aad0ee2ef943271753f2e1";
    let h = Harness::new(&["9.1.0-1-amd64"], 10_000, Options::default());
    let bytes = h.read_file("debian/9.1.0-1-amd64.tgz").unwrap();
    let digest = kpackfs::util::sha256_hex(&bytes);
    // The same bytes from the command line, with a different thread count.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b.tgz");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_kpackfs"))
        .args(["bundle", "--type", "debian", "-o"])
        .arg(&out)
        .arg(&h.kernels[0].headers)
        .arg(&h.kernels[0].kbuild)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    // The command line names the bundle by file names and the mount by URLs:
    // the same tree with another BUNDLE_CHECKSUM, so each has its own pin.
    assert_eq!(digest, MOUNTED, "the mounted .tgz changed");
    assert_eq!(kpackfs::util::sha256_hex(&std::fs::read(&out).unwrap()), COMMAND_LINE, "the bundle's .tgz changed");
}

/// Issue 11 item 4: `/by-uname/<release>` links to the bundle serving
/// that release; listing and reading the links builds nothing.
#[test]
fn by_uname_lists_without_builds_and_links_to_the_bundle() {
    let h = Harness::new(&["9.1.0-1-amd64", "9.2.0-1-amd64"], 100, Options::default());
    assert!(h.list("").unwrap().contains(&"by-uname".to_string()));
    assert_eq!(h.list("by-uname").unwrap(), ["9.1.0-1-amd64", "9.2.0-1-amd64"]);
    let by_uname = h.resolve("by-uname").unwrap().attr.ino;
    assert_eq!(h.lookup(by_uname, "9.9.9-nope").unwrap(), Lookup::Negative);
    for release in ["9.1.0-1-amd64", "9.2.0-1-amd64"] {
        let link = h.resolve(&format!("by-uname/{release}")).unwrap();
        assert_eq!(link.attr.kind, FileKind::Symlink);
        let core = h.core.clone();
        let target = h.call(move |done| core.readlink(link.attr.ino, ME, done)).unwrap();
        assert_eq!(String::from_utf8(target.clone()).unwrap(), format!("../debian/{release}"));
        assert_eq!(link.attr.size, target.len() as u64);
    }
    assert!(h.source.calls().is_empty(), "nothing was downloaded: {:?}", h.source.calls());
    // The link's target, resolved as the kernel would, is that release's tree.
    assert_eq!(h.read_file("debian/9.2.0-1-amd64/BUNDLE_UNAME").unwrap(), b"9.2.0-1-amd64");
}
