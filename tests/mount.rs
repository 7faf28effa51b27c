//! The mount, for real: listing, the consumer's module build, tree/tgz
//! agreement, single flight, the .tgz files, restart, writes.

mod common;

use common::mirror::{errno_of, Fixture, Mounted};
use common::{gnu_tar_extract, kpackfs, read, run_ok, sha256_file, snapshot, tempdir};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn mount(fx: &Fixture, extra: &[&str]) -> Mounted {
    let mut args = fx.mirror_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    Mounted::start(&fx.manifest, None, &args)
}

#[test]
fn listing_downloads_nothing() {
    let fx = Fixture::new(true);
    let m = mount(&fx, &[]);
    let out = run_ok(Command::new("sh").arg("-c").arg(format!("ls -l {}/*/", m.mnt.display())));
    for b in &fx.bundles {
        assert!(out.contains(&b.name), "{} missing from:\n{out}", b.name);
        assert!(out.contains(&format!("{}.tgz", b.name)));
        assert!(out.contains(&format!("bundle-{}.tgz", b.name)));
    }
    assert_eq!(fx.server.total_requests(), 0, "ls -l must not download: {:?}", fx.server.log());
    let status = m.status();
    assert_eq!(status["misses"], 0);
    assert_eq!(status["bundles_total"], fx.bundles.len());
}

#[test]
fn kernel_packer_manifest_lists_without_downloads() {
    let fixtures = common::kernel_packer_fixtures();
    // One CoreOS image's host is mapped to a closed loopback port: reading
    // that bundle fails at once, whatever the machine's network.
    let image = url::Url::parse(&common::listed_url("coreos-eol.txt", "/1185.3.0/")).unwrap();
    let image_dir = format!("{}://{}/amd64-usr/1185.3.0", image.scheme(), image.host_str().unwrap());
    let args = ["--no-apt-mirrors".to_string(), "--mirror".into(), format!("{image_dir}=http://127.0.0.1:9/closed")];
    let m = Mounted::start(&fixtures.join("manifest.yml"), None, &args);
    let out = run_ok(Command::new("sh").arg("-c").arg(format!("ls -l {}/*/ | grep -c '^d'", m.mnt.display())));
    let dirs: usize = out.trim().parse().unwrap();
    let status = m.status();
    let shown = status["bundles_total"].as_u64().unwrap() as usize;
    let named = 6473 - status["bundles_unnamed"].as_u64().unwrap() as usize;
    // The same kernel reached through two mirrors is one name: shown once.
    assert_eq!(shown, named - status["bundles_shadowed"].as_u64().unwrap() as usize, "{status}");
    assert!(shown > 4000, "{status}");
    assert_eq!(dirs, shown, "one directory per shown bundle");
    assert_eq!(status["misses"], 0);
    assert_eq!(status["cache_used"], 0, "nothing downloaded or built");
    assert!(m.path("ubuntu/4.15.0-1129-azure~16.04.tgz").symlink_metadata().is_ok());
    assert!(m.path("bundles/bundle-5.14.21-150400.24.84-default.tgz").symlink_metadata().is_ok());

    // Issue 11 item 5: every entry has a path. Depth 2, per type; the only
    // entries without their own directory are shadowed by a same-named one.
    let mut per_type = BTreeMap::new();
    for t in std::fs::read_dir(&m.mnt).unwrap() {
        let t = t.unwrap();
        let kind = t.file_name().to_string_lossy().into_owned();
        if kind.starts_with('.') || kind == "bundles" || kind == "by-uname" {
            continue;
        }
        let n =
            std::fs::read_dir(t.path()).unwrap().filter(|e| e.as_ref().unwrap().file_type().unwrap().is_dir()).count();
        per_type.insert(kind, n);
    }
    for (kind, n) in &per_type {
        println!("{kind:<10} {n:>6} directories");
    }
    let total: usize = per_type.values().sum();
    let shadowed = status["bundles_shadowed"].as_u64().unwrap() as usize;
    println!("total      {total:>6} + {shadowed} shadowed = {}", total + shadowed);
    assert_eq!(status["bundles_unnamed"], 0, "{status}");
    assert_eq!(total + shadowed, 6473, "every entry has a path, or is shadowed by its twin");
    for kind in ["cos", "coreos", "minikube", "linuxkit"] {
        assert!(per_type.get(kind).is_some_and(|n| *n > 0), "{kind}: {per_type:?}");
    }
    assert!(m.path("cos/12739.68.0").is_dir() && m.path("minikube/v1.29.0").is_dir());
    // A bundle whose image cannot be reached: EIO, one log line with the
    // cause and its class, nothing downloaded.
    assert_eq!(errno_of(std::fs::read(m.path("coreos/coreos-1185.3.0/BUNDLE_UNAME"))), Some(libc::EIO));
    let log = m.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("bundle coreos/coreos-1185.3.0")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("(unreachable)"), "{}", lines[0]);
    assert_eq!(m.status()["cache_used"], 0, "nothing downloaded");
}

#[test]
fn hello_module_builds_through_the_mount_nested_too() {
    let fx = Fixture::new(false);
    let deb = fx.bundle("debian");
    let m = mount(&fx, &[]);
    let root = m.path(&format!("debian/{}", deb.name));
    let work = tempdir();
    let vermagic = common::build_hello(&root, &work.path().join("plain"));
    assert!(vermagic.starts_with(&deb.uname), "{vermagic}");
    // A warm build (a fresh module against the same tree) sends the daemon
    // no request: entries, attributes, listings, pages and misses are all
    // cached. Reading status.json itself costs requests (its attributes are
    // never cached, and every read() refreshes them): measured first, by
    // two reads with nothing between them.
    let requests = || m.status()["requests"].clone();
    let moved =
        |a: &serde_json::Value, b: &serde_json::Value, op: &str| b[op].as_u64().unwrap() - a[op].as_u64().unwrap();
    let (r0, r1) = (requests(), requests());
    let ops = ["lookup", "getattr", "read", "opendir", "readdir", "readlink", "open", "statfs"];
    // Entries, attributes, listings and links: exactly none. Pages: the
    // fresh-clone CI runs saw a warm build re-read 1 and 4 pages (of the
    // ~450 the cold build read), the same number in a retry, with memory
    // free; standalone runs re-read none. The cause is not found yet (the
    // kernel's readahead under load is the suspect), so a few pages are
    // let through: a mount that does not keep its pages re-reads them all.
    let cold_reads = r0["read"].as_u64().unwrap();
    let page_slack = cold_reads / 32;
    // One retry, for a page the kernel reclaimed between two builds.
    let mut sent = Vec::new();
    for attempt in ["warm", "warm-again"] {
        let before = requests();
        let warm = common::build_hello(&root, &work.path().join(attempt));
        assert_eq!(warm, vermagic);
        let after = requests();
        let extra: Vec<String> = ops
            .iter()
            .filter(|op| {
                let (got, alone) = (moved(&before, &after, op), moved(&r0, &r1, op));
                let slack = if **op == "read" { page_slack } else { 0 };
                got > alone + slack || got < alone
            })
            .map(|op| format!("{op}: {before} -> {after}"))
            .collect();
        if extra.is_empty() {
            sent.clear();
            break;
        }
        sent.push(format!("{attempt}: {}", extra.join("; ")));
    }
    assert!(sent.is_empty(), "a warm build sent requests (a status read alone: {r0} -> {r1}): {sent:#?}");
    // A module whose own Makefile runs make -C into the kernel tree, through
    // lib/modules/<uname>/build, as configure steps and DKMS do.
    let nested = work.path().join("nested");
    common::hello_module(&nested);
    std::fs::write(
        nested.join("Makefile"),
        "ifneq ($(KERNELRELEASE),)\nobj-m := hello.o\nelse\nall:\n\t$(MAKE) -C $(KDIR) M=$(CURDIR) modules\nendif\n",
    )
    .unwrap();
    let kdir = root.join(format!("lib/modules/{}/build", deb.uname));
    run_ok(Command::new("make").arg("-s").arg("-C").arg(&nested).arg(format!("KDIR={}", kdir.display())));
    let vermagic = run_ok(Command::new("modinfo").args(["-F", "vermagic"]).arg(nested.join("hello.ko")));
    assert!(vermagic.starts_with(&deb.uname), "{vermagic}");
    assert_eq!(m.bundle_state(&format!("debian/{}", deb.name)), "ready");
}

#[test]
fn every_tree_matches_its_tgz_and_the_cli_bundle() {
    let fx = Fixture::new(true);
    let m = mount(&fx, &[]);
    for b in &fx.bundles {
        let tree = m.path(&format!("{}/{}", b.kind, b.name));
        let work = tempdir();
        let copied = work.path().join("copied.tgz");
        std::fs::copy(m.path(&format!("{}/{}.tgz", b.kind, b.name)), &copied).unwrap();
        let extracted = work.path().join("x");
        gnu_tar_extract(&copied, &extracted);
        assert_eq!(
            snapshot(&tree),
            snapshot(&extracted),
            "{}/{}: the mounted tree differs from its .tgz",
            b.kind,
            b.name
        );
        assert_eq!(read(&tree.join("BUNDLE_UNAME")), b.uname);
        assert_eq!(read(&tree.join("BUNDLE_CHECKSUM")), b.id);
        // The same bytes as `kpackfs bundle NAME --manifest`.
        let cli = work.path().join("cli.tgz");
        run_ok(
            kpackfs()
                .args(["bundle", &format!("{}/{}", b.kind, b.name), "--manifest"])
                .arg(&fx.manifest)
                .arg("--cache-dir")
                .arg(work.path().join("cli-cache"))
                .args(fx.mirror_args())
                .arg("-o")
                .arg(&cli),
        );
        assert_eq!(sha256_file(&copied), sha256_file(&cli), "{}/{}", b.kind, b.name);
        assert_eq!(sha256_file(&m.path(&format!("bundles/bundle-{}.tgz", b.name))), sha256_file(&cli));
    }
}

#[test]
fn sixteen_cold_readers_cause_one_download_per_package() {
    let fx = Fixture::new(false);
    let deb = fx.bundle("debian").clone();
    let m = mount(&fx, &[]);
    // Sixteen readers of sixteen different paths: the kernel cannot merge
    // them into one request, so the daemon queues sixteen answers on one build.
    let root = m.path(&format!("debian/{}/usr/src/linux-headers-{}", deb.name, deb.uname));
    let names = [
        "Makefile",
        ".config",
        "Module.symvers",
        "include",
        "arch",
        "scripts",
        "tools",
        "BUNDLE_MISSING",
        "a",
        "b",
        "c",
        "d",
        "e",
        "f",
        "g",
        "h",
    ];
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(16));
    let readers: Vec<_> = names
        .iter()
        .map(|name| {
            let (path, barrier) = (root.join(name), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                std::fs::symlink_metadata(&path).map(|_| ())
            })
        })
        .collect();
    let results: Vec<Option<i32>> = readers.into_iter().map(|r| errno_of(r.join().unwrap())).collect();
    assert!(results[..3].iter().all(Option::is_none), "{results:?}");
    assert_eq!(results[15], Some(libc::ENOENT));
    for (_, url_path) in &deb.files {
        assert_eq!(fx.server.count(url_path), 1, "{url_path} downloaded more than once: {:?}", fx.server.log());
    }
    let status = m.status();
    assert_eq!(status["builds"], 1);
    assert_eq!(status["misses"], 1);
    assert!(status["requests"]["lookup"].as_u64().unwrap() >= 16, "sixteen requests reached the daemon: {status}");
    assert_eq!(status["waiting"], 0, "nothing left queued");
    assert_eq!(
        read(&root.join("Makefile")).lines().next().map(|l| l.starts_with("include ../linux-headers-")),
        Some(true)
    );
}

#[test]
fn tgz_reads_exact_bytes_whether_built_or_not() {
    let fx = Fixture::new(true);
    let m = mount(&fx, &[]);
    let work = tempdir();
    let ubuntu = fx.bundle("ubuntu");
    let expected = {
        let out = work.path().join("expected.tgz");
        run_ok(
            kpackfs()
                .args(["bundle", &ubuntu.name, "--manifest"])
                .arg(&fx.manifest)
                .arg("--cache-dir")
                .arg(work.path().join("c"))
                .args(fx.mirror_args())
                .arg("-o")
                .arg(&out),
        );
        fx.server.reset_counts();
        sha256_file(&out)
    };
    let tgz = m.path(&format!("ubuntu/{}.tgz", ubuntu.name));
    // ls -l never builds; the size is unknown (0) until the first build.
    run_ok(Command::new("ls").arg("-l").arg(&tgz));
    assert_eq!(std::fs::metadata(&tgz).unwrap().len(), 0);
    assert_eq!(fx.server.total_requests(), 0);
    assert_eq!(m.bundle_state(&format!("ubuntu/{}", ubuntu.name)), "absent");
    // Each reader, on a cold .tgz: a fresh mount per tool.
    type Copy<'a> = &'a dyn Fn(&Path, &Path);
    let tools: [(&str, Copy); 5] = [
        ("cp", &|src, dst| {
            run_ok(Command::new("cp").arg(src).arg(dst));
        }),
        ("rsync", &|src, dst| {
            run_ok(Command::new("rsync").arg(src).arg(dst));
        }),
        ("python", &|src, dst| {
            run_ok(
                Command::new("python3")
                    .args(["-c", "import shutil,sys; shutil.copy(sys.argv[1], sys.argv[2])"])
                    .arg(src)
                    .arg(dst),
            );
        }),
        ("sha256sum", &|src, dst| {
            let sum = run_ok(Command::new("sha256sum").arg(src));
            std::fs::write(dst, sum.split_whitespace().next().unwrap()).unwrap();
        }),
        ("tar", &|src, dst| {
            std::fs::create_dir_all(dst).unwrap();
            run_ok(Command::new("tar").arg("-xzf").arg(src).arg("-C").arg(dst));
        }),
    ];
    for (tool, copy) in tools {
        let cold = mount(&fx, &[]); // a new cache: the .tgz was never built there
                                    // Listed with attributes first, as a user would: what the listing
                                    // leaves in the kernel's caches must not stand for the real size.
        run_ok(Command::new("ls").arg("-l").arg(cold.path("ubuntu")));
        let src = cold.path(&format!("ubuntu/{}.tgz", ubuntu.name));
        let dst = work.path().join(format!("out-{tool}"));
        copy(&src, &dst);
        match tool {
            "sha256sum" => assert_eq!(read(&dst), expected, "{tool}"),
            "tar" => assert_eq!(read(&dst.join("BUNDLE_UNAME")), ubuntu.uname, "{tool}"),
            _ => assert_eq!(sha256_file(&dst), expected, "{tool} read different bytes"),
        }
    }
    // Once built, stat gives the exact size.
    run_ok(Command::new("cat").arg(&tgz).stdout(std::process::Stdio::null()));
    let size = std::fs::metadata(work.path().join("out-cp")).unwrap().len();
    assert_eq!(std::fs::metadata(&tgz).unwrap().len(), size);
    drop(m);
}

/// A manifest of `n` Debian bundles in one type directory (nothing is built:
/// listing never needs the packages).
fn many_bundles_manifest(dir: &Path, n: usize) -> std::path::PathBuf {
    let mut yaml = String::new();
    for i in 0..n {
        let uname = format!("6.1.0-{i}-amd64");
        let url = format!("http://127.0.0.1:9/pool/linux-headers-{uname}_6.1.{i}-1_amd64.deb");
        let id = kpackfs::manifest::bundle_id([url.as_str()]);
        yaml.push_str(&format!(
            "{id}:\n  type: debian\n  name: {uname}\n  uname: {uname}\n  packages:\n  - url: {url}\n    sha256: ab{:062x}\n    size: 1000\n",
            i + 1
        ));
    }
    let path = dir.join("many.yml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn ls_l_of_a_big_type_directory_asks_only_about_unbuilt_tgz_names() {
    let work = tempdir();
    // 10,000 names: more than one 1 MiB READDIRPLUS page.
    let n = 5000;
    let manifest = many_bundles_manifest(work.path(), n);
    let m = Mounted::start(&manifest, None, &["--no-apt-mirrors".into(), "--crawl-interval".into(), "off".into()]);
    let requests = || m.status()["requests"].clone();
    let moved =
        |a: &serde_json::Value, b: &serde_json::Value, op: &str| b[op].as_u64().unwrap() - a[op].as_u64().unwrap();
    // Names first (ls, shell completion, find -name), attributes later: the
    // kernel keeps the first listing and answers the second from it.
    let before = requests();
    let names = run_ok(Command::new("ls").arg(m.path("debian")));
    assert_eq!(names.lines().count(), 2 * n);
    let listing = run_ok(Command::new("ls").arg("-l").arg(m.path("debian")));
    let after = requests();
    assert_eq!(listing.lines().count(), 2 * n + 1, "a directory and a .tgz per bundle, and the total line");
    // Attributes come with the listing (READDIRPLUS always, big buffers):
    // no LOOKUP for the 5,000 directories, a few requests for 10,000 names.
    // (With READDIRPLUS_AUTO, only pages read while names were being stat'ed
    // had attributes: the plain listing's later pages had none, and each of
    // their directories cost a LOOKUP.)
    // Each never-built .tgz is asked about, by design: its size must be
    // asked again once built (docs/semantics.md).
    let (lookups, listings) = (moved(&before, &after, "lookup"), moved(&before, &after, "readdir"));
    assert!(lookups <= n as u64 + 4, "{lookups} LOOKUPs for {n} .tgz names and {n} directories");
    assert!(listings <= 12, "{listings} READDIR(PLUS) requests for {} names", 2 * n);
    assert_eq!(m.status()["builds"], 0, "listing built nothing");
}

#[test]
fn a_manifest_with_its_index_beside_it_mounts_without_parsing_the_yaml() {
    let work = tempdir();
    let n = 100_000;
    let manifest = many_bundles_manifest(work.path(), n);
    let out = run_ok(kpackfs().arg("index").arg(&manifest));
    assert!(out.contains(&format!("{n} bundles shown of {n} entries")), "{out}");
    let quiet = ["--no-apt-mirrors".to_string(), "--crawl-interval".into(), "off".into()];
    {
        let m = Mounted::start(&manifest, None, &quiet);
        let status = m.status();
        assert_eq!(status["manifest_entries_parsed"], 0, "mapped, not parsed: {status}");
        assert_eq!(status["entries"], n);
        assert!(m.path("debian/6.1.0-99999-amd64/").is_dir());
    }
    // One more entry in the YAML: the index beside it is for other bytes,
    // so the YAML is parsed and the new entry served.
    let mut yaml = std::fs::read_to_string(&manifest).unwrap();
    let url = "http://127.0.0.1:9/pool/linux-headers-6.1.0-100000-amd64_6.1.0-1_amd64.deb";
    yaml.push_str(&format!("{}:\n  type: debian\n  packages:\n  - url: {url}\n", kpackfs::manifest::bundle_id([url])));
    std::fs::write(&manifest, yaml).unwrap();
    let m = Mounted::start(&manifest, None, &quiet);
    let status = m.status();
    assert_eq!(status["manifest_entries_parsed"], n + 1, "{status}");
    assert!(m.path("debian/6.1.0-100000-amd64/").is_dir());
}

#[test]
fn restart_without_the_mirror_serves_the_warm_bundle() {
    let fx = Fixture::new(true);
    let cache = tempdir();
    let suse = fx.bundle("suse").clone();
    let before = {
        let m = Mounted::start(&fx.manifest, Some(cache.path()), &fx.mirror_args());
        let tree = m.path(&format!("suse/{}", suse.name));
        let snap = snapshot(&tree);
        let tgz = sha256_file(&m.path(&format!("suse/{}.tgz", suse.name)));
        (snap, tgz)
    };
    let manifest = cache.path().join("manifest.yml");
    std::fs::copy(&fx.manifest, &manifest).unwrap();
    let mirror_args = fx.mirror_args();
    drop(fx); // the mirror is gone
    let m = Mounted::start(&manifest, Some(cache.path()), &mirror_args);
    let tgz = m.path(&format!("suse/{}.tgz", suse.name));
    assert!(std::fs::metadata(&tgz).unwrap().len() > 0, "the .tgz size survives a restart");
    assert_eq!(snapshot(&m.path(&format!("suse/{}", suse.name))), before.0);
    assert_eq!(sha256_file(&tgz), before.1);
    let status = m.status();
    assert_eq!(status["misses"], 0, "{status}");
    assert_eq!(status["failures"], 0);
}

#[test]
fn writes_get_erofs() {
    let fx = Fixture::new(true);
    let m = mount(&fx, &[]);
    let rh = fx.bundle("redhat");
    let dir = m.path(&format!("redhat/{}", rh.name));
    let file = dir.join("Makefile");
    assert!(file.is_file());
    let erofs = Some(libc::EROFS);
    assert_eq!(errno_of(std::fs::OpenOptions::new().write(true).open(&file)), erofs);
    assert_eq!(errno_of(std::fs::OpenOptions::new().append(true).open(&file)), erofs);
    assert_eq!(errno_of(std::fs::write(dir.join("new"), b"x")), erofs);
    assert_eq!(errno_of(std::fs::create_dir(dir.join("d"))), erofs);
    assert_eq!(errno_of(std::fs::remove_file(&file)), erofs);
    assert_eq!(errno_of(std::fs::rename(&file, dir.join("moved"))), erofs);
    assert_eq!(errno_of(std::os::unix::fs::symlink("x", dir.join("l"))), erofs);
    assert_eq!(errno_of(std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))), erofs);
    assert_eq!(errno_of(std::fs::write(m.path("debian/new"), b"x")), erofs);
    assert_eq!(errno_of(std::fs::remove_file(m.path(&format!("redhat/{}.tgz", rh.name)))), erofs);
    let before = std::fs::metadata(&file).unwrap().len();
    let truncate = std::fs::OpenOptions::new().write(true).truncate(true).open(&file);
    assert_eq!(errno_of(truncate), erofs, "truncate");
    let c_path = std::ffi::CString::new(file.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid C strings and buffer.
    let rc = unsafe { libc::setxattr(c_path.as_ptr(), c"user.x".as_ptr(), b"1".as_ptr().cast(), 1, 0) };
    assert_eq!((rc, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::EROFS)), "setxattr");
    // SAFETY: valid C string.
    let rc = unsafe { libc::truncate(c_path.as_ptr(), 0) };
    assert_eq!((rc, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::EROFS)), "truncate(2)");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), before, "nothing changed");
}

#[test]
fn other_users_read_a_root_mount_and_cannot_write() {
    let fx = Fixture::new(true);
    let m = mount(&fx, &[]);
    // The test's temporary directory is 0700; let others reach the mount point.
    std::fs::set_permissions(m.mnt.parent().unwrap(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let rh = fx.bundle("redhat");
    let file = m.path(&format!("redhat/{}/BUNDLE_UNAME", rh.name));
    let as_nobody = |script: &str| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script])
            .output()
            .unwrap()
    };
    let out = as_nobody(&format!("cat {}", file.display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), rh.uname);
    // Owned by root, fixed mtime, fixed modes, as the kernel reports them.
    use std::os::unix::fs::MetadataExt;
    for (path, mode) in [
        (file.clone(), 0o100644),
        (m.path(&format!("redhat/{}", rh.name)), 0o040755),
        (m.path("redhat"), 0o040555),
        (m.path(&format!("redhat/{}.tgz", rh.name)), 0o100444),
    ] {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{}", path.display());
        assert_eq!(meta.mtime(), 946_684_800, "{}", path.display());
        assert_eq!(meta.mode(), mode, "{}", path.display());
    }
    let out = as_nobody(&format!("ls {}/redhat/ && cat {}/.kpackfs/status", m.mnt.display(), m.mnt.display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = as_nobody(&format!("echo x > {}", file.display()));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Read-only file system") || stderr.contains("Permission denied"), "{stderr}");
}

#[test]
fn missing_names_are_enoent_and_status_reports() {
    let fx = Fixture::new(true);
    let m = mount(&fx, &[]);
    let rh = fx.bundle("redhat");
    assert_eq!(errno_of(std::fs::metadata(m.path("nosuchtype"))), Some(libc::ENOENT));
    assert_eq!(errno_of(std::fs::metadata(m.path("redhat/9.9.9"))), Some(libc::ENOENT));
    assert_eq!(fx.server.total_requests(), 0);
    let missing = m.path(&format!("redhat/{}/include/nosuch.h", rh.name));
    assert_eq!(errno_of(std::fs::metadata(&missing)), Some(libc::ENOENT));
    // The kernel remembers the miss: looking again costs no request at all.
    let lookups = m.status()["requests"]["lookup"].as_u64().unwrap();
    for _ in 0..100 {
        assert_eq!(errno_of(std::fs::metadata(&missing)), Some(libc::ENOENT));
        assert_eq!(errno_of(std::fs::metadata(m.path("redhat/9.9.9"))), Some(libc::ENOENT));
    }
    assert_eq!(m.status()["requests"]["lookup"].as_u64().unwrap(), lookups, "negative entries are cached");
    let out = run_ok(kpackfs().arg("status").arg(&m.mnt));
    assert!(out.contains(&format!("ready     redhat/{}", rh.name)), "{out}");
    assert!(out.contains("1 misses"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&run_ok(kpackfs().arg("status").arg("--json").arg(&m.mnt))).unwrap();
    assert!(json["cache_used"].as_u64().unwrap() > 0);
    assert!(json["hits"].as_u64().unwrap() >= 1);
}
