//! Image bundles (type coreos): developer-container-like disk images made
//! with the real tools (`mkfs.ext4 -d`, `sgdisk`, `bzip2`/`lbzip2`) from
//! Debian's packaged headers laid out as Flatcar and the old CoreOS lay
//! them out, bundled without mounting anything, and checked against the
//! packaged headers (the oracle: the same generated headers, the same
//! vermagic of a hello module).

mod common;

use common::pkgs::{real_debian, RealDebian};
use common::{build_hello, kpackfs, read, run_ok, sh, tempdir};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Flatcar's developer container: GPT partition 9 "ROOT" (Linux data
/// type), ext4; `/lib -> usr/lib`; `usr/lib/modules/<release>/{build,source}`
/// real directories (cpio --dereference in coreos-kernel.eclass); the
/// wrapper Makefile names Portage's work directory, not in the image.
const FLATCAR_LAYOUT: &str = r#"
r=$1; u=$2; x=$3; c=$4
mkdir -p $r/usr/lib/modules/$u $r/usr/share/flatcar $r/etc $r/usr/bin
ln -s usr/lib $r/lib
cp -rL $x/usr/src/linux-headers-$u $r/usr/lib/modules/$u/build
cp -rL $x/usr/src/linux-headers-$c $r/usr/lib/modules/$u/source
echo "include /build/amd64-usr/var/tmp/portage/sys-kernel/coreos-modules-6.1/work/coreos-modules-6.1/source/Makefile" > $r/usr/lib/modules/$u/build/Makefile
echo "FLATCAR_RELEASE_VERSION=3510.2.0" > $r/usr/share/flatcar/release
echo "root:image-only:0:0" > $r/etc/passwd
# A link out of the tree into the image (copied), one that climbs out of
# the image (resolved at the image's root), one that dangles.
ln -s ../../../../share/flatcar/release $r/usr/lib/modules/$u/build/release
ln -s ../../../../../../../../../../etc/passwd $r/usr/lib/modules/$u/build/passwd
ln -s /nowhere/at/all $r/usr/lib/modules/$u/build/dangling
"#;

/// The old CoreOS developer container: GPT partition 9 "ROOT" (x86-64
/// root type) beside another partition, ext4; a real `/lib`; `build` and
/// `source` absolute links to the kbuild output and the source tree
/// (linux-info's layout), the wrapper naming the source tree in the image.
const COREOS_LAYOUT: &str = r#"
r=$1; u=$2; x=$3; c=$4
o=var/cache/portage/sys-kernel/coreos-kernel; s=usr/src/linux-$u-coreos
mkdir -p $r/lib/modules/$u $r/var/cache/portage/sys-kernel $r/usr/src $r/etc
cp -rL $x/usr/src/linux-headers-$u $r/$o
cp -rL $x/usr/src/linux-headers-$c $r/$s
echo "include /$s/Makefile" > $r/$o/Makefile
ln -s /$o $r/lib/modules/$u/build
ln -s /$s $r/lib/modules/$u/source
"#;

/// `$1` root into a GPT disk image `$2` with the filesystem in partition
/// 9 (type `$3`); `$4` adds a first partition without a filesystem.
const DISK: &str = r#"
r=$1; img=$2; type=$3; other=$4
kb=$(du -sk $r | cut -f1)
mkfs.ext4 -q -F -L ROOT -d $r $img.fs $(( kb * 13 / 10 + 16384 ))K
n=$(( $(stat -c %s $img.fs) / 512 ))
truncate -s $(( (4096 + n + 2048) * 512 )) $img
if [ "$other" = yes ]; then sgdisk -n 1:2048:4095 -c 1:EFI-SYSTEM -t 1:EF00 $img >/dev/null; fi
sgdisk -n 9:4096:$(( 4096 + n - 1 )) -c 9:ROOT -t 9:$type $img >/dev/null
dd if=$img.fs of=$img bs=512 seek=4096 conv=notrunc,sparse status=none
rm $img.fs
"#;

const FLATCAR_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const COREOS_TYPE: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";

struct Images {
    deb: RealDebian,
    extracted: PathBuf,
    flatcar: PathBuf,
    coreos: PathBuf,
}

fn common_name(extracted: &Path) -> String {
    let text = read(
        &extracted
            .join("usr/src")
            .join(
                sh(&format!("ls {}/usr/src | grep -v common | grep linux-headers | head -1", extracted.display()))
                    .trim(),
            )
            .join("Makefile"),
    );
    text.split("linux-headers-").nth(1).and_then(|t| t.split('/').next()).unwrap().to_string()
}

/// Both images, made once per Debian kernel.
fn images() -> Images {
    let deb = real_debian();
    let dir = common::pkgs::test_cache().join(format!("images-{}", deb.uname));
    let done = dir.join("done");
    common::pkgs::with_lock(&common::pkgs::test_cache().join("images.lock"), || {
        if !done.exists() {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("x")).unwrap();
            for f in deb.files() {
                run_ok(Command::new("dpkg-deb").arg("-x").arg(&f).arg(dir.join("x")));
            }
            let x = dir.join("x");
            let c = common_name(&x);
            let layout = |script: &str, root: &str| {
                run_ok(
                    Command::new("bash")
                        .args(["-euo", "pipefail", "-c", script, "layout"])
                        .arg(dir.join(root))
                        .arg(&deb.uname)
                        .arg(&x)
                        .arg(&c),
                );
            };
            let disk = |root: &str, img: &str, type_guid: &str, other: &str| {
                run_ok(
                    Command::new("bash")
                        .args(["-euo", "pipefail", "-c", DISK, "disk"])
                        .arg(dir.join(root))
                        .arg(dir.join(img))
                        .arg(type_guid)
                        .arg(other),
                );
            };
            layout(FLATCAR_LAYOUT, "flatcar-root");
            disk("flatcar-root", "flatcar.bin", FLATCAR_TYPE, "no");
            layout(COREOS_LAYOUT, "coreos-root");
            disk("coreos-root", "coreos.bin", COREOS_TYPE, "yes");
            // Flatcar's images are made with lbzip2 (blocks), the old one with bzip2.
            sh(&format!(
                "cd {d} && lbzip2 -n 2 -9 -f flatcar.bin && bzip2 -9 -f coreos.bin && rm -rf flatcar-root coreos-root && touch done",
                d = dir.display()
            ));
        }
    });
    Images { extracted: dir.join("x"), flatcar: dir.join("flatcar.bin.bz2"), coreos: dir.join("coreos.bin.bz2"), deb }
}

fn bundle_image(work: &Path, image: &Path, out: &str) -> Command {
    let mut cmd = kpackfs();
    cmd.env("KPACKFS_CONFIG", "/dev/null").env("XDG_CACHE_HOME", work.join("xdg"));
    cmd.args(["bundle", "--type", "coreos", "-o"]).arg(work.join(out)).arg(image);
    cmd
}

fn unpack(work: &Path, tgz: &str) -> PathBuf {
    let dir = work.join(format!("{tgz}.d"));
    std::fs::create_dir_all(&dir).unwrap();
    common::gnu_tar_extract(&work.join(tgz), &dir);
    dir
}

const GENERATED: [&str; 3] =
    ["include/generated/autoconf.h", "include/generated/utsrelease.h", "include/config/auto.conf"];

#[test]
fn flatcar_and_old_coreos_images_bundle_to_the_packaged_headers_and_vermagic() {
    let images = images();
    let work = tempdir();
    let uname = &images.deb.uname;
    // The oracle: Debian's own headers, as a debian bundle.
    let mut packaged = kpackfs();
    packaged.env("KPACKFS_CONFIG", "/dev/null").env("XDG_CACHE_HOME", work.path().join("xdg"));
    packaged.args(["bundle", "--type", "debian", "-o"]).arg(work.path().join("debian.tgz")).args(images.deb.files());
    run_ok(&mut packaged);
    let debian = unpack(work.path(), "debian.tgz");
    let want_vermagic = build_hello(&debian, &work.path().join("hello-debian"));
    let debian_build = debian.join(read(&debian.join("BUNDLE_BUILD_DIR")));

    for (name, image) in [("flatcar", &images.flatcar), ("coreos", &images.coreos)] {
        let tgz = format!("{name}.tgz");
        let out = run_ok(&mut bundle_image(work.path(), image, &tgz));
        assert!(out.contains(&format!("uname {uname}")), "{out}");
        let root = unpack(work.path(), &tgz);
        assert_eq!(read(&root.join("BUNDLE_UNAME")), *uname);
        assert_eq!(read(&root.join("BUNDLE_DISTRO")), "coreos");
        assert_eq!(read(&root.join("BUNDLE_BUILD_DIR")), "./build");
        for generated in GENERATED {
            assert!(
                std::fs::read(root.join("build").join(generated)).unwrap()
                    == std::fs::read(debian_build.join(generated)).unwrap(),
                "{name}: {generated} differs from Debian's"
            );
        }
        let makefile = read(&root.join("build/Makefile"));
        assert_eq!(makefile.trim(), "include ../source/Makefile", "{name}: the wrapper is relocatable");
        let vermagic = build_hello(&root, &work.path().join(format!("hello-{name}")));
        assert_eq!(vermagic, want_vermagic, "{name}: vermagic");
        // Deterministic: the same image gives the same bytes.
        let again = format!("{name}-again.tgz");
        run_ok(&mut bundle_image(work.path(), image, &again));
        assert_eq!(
            common::sha256_file(&work.path().join(&tgz)),
            common::sha256_file(&work.path().join(&again)),
            "{name}: bundles differ"
        );
    }
    // Flatcar's links: one into the image is copied; one that climbs above
    // the image's root and one that dangles are dropped (never the host's).
    let flatcar = work.path().join("flatcar.tgz.d/build");
    assert_eq!(read(&flatcar.join("release")).trim(), "FLATCAR_RELEASE_VERSION=3510.2.0");
    for gone in ["passwd", "dangling"] {
        assert!(std::fs::symlink_metadata(flatcar.join(gone)).is_err(), "{gone} is dropped");
    }
    let _ = &images.extracted;
}

#[test]
fn kernel_packers_flatcar_and_coreos_entries_build_hello_through_the_mount() {
    let images = images();
    let work = tempdir();
    let server = common::http::Server::start();
    let root = work.path().join("mirror");
    let mut args = vec!["--no-apt-mirrors".to_string(), "--lists-dir".to_string()];
    args.push(common::kernel_packer_fixtures().display().to_string());
    args.extend(common::http::serve_as(
        &server,
        &root,
        &common::listed_url("flatcar.txt", "/3510.2.0/"),
        &images.flatcar,
    ));
    args.extend(common::http::serve_as(
        &server,
        &root,
        &common::listed_url("coreos-eol.txt", "/1409.2.0/"),
        &images.coreos,
    ));
    let m = common::mirror::Mounted::start(&common::kernel_packer_fixtures().join("manifest.yml"), None, &args);
    for (entry, hello) in [("coreos/flatcar-3510.2.0", "hello-flatcar"), ("coreos/coreos-1409.2.0", "hello-coreos")] {
        let bundle = m.path(entry);
        assert_eq!(read(&bundle.join("BUNDLE_UNAME")), images.deb.uname, "{entry}: {}", m.log());
        let vermagic = build_hello(&bundle, &work.path().join(hello));
        assert!(vermagic.starts_with(&format!("{} ", images.deb.uname)), "{entry}: {vermagic}");
    }
    // The scratch image is gone once the bundle is cached.
    let leftovers = sh(&format!("find {} -name image.raw | wc -l", m.cache.display()));
    assert_eq!(leftovers.trim(), "0");
    assert!(m.alive());
}

/// A small image of a fake kernel tree (enough to be found and laid out,
/// not to build), with `extra` shell run in its root (`$r`, `$b` the build
/// directory) before the filesystem is made.
fn small_image(work: &Path, name: &str, extra: &str) -> PathBuf {
    let r = work.join(format!("{name}-root"));
    let img = work.join(format!("{name}.bin"));
    sh(&format!(
        "r={r}; b=$r/usr/lib/modules/6.1.0-small/build; mkdir -p $b/include/generated $r/usr/lib/modules/6.1.0-small/source
         ln -s usr/lib $r/lib
         echo 'include ../source/Makefile' > $b/Makefile; echo CONFIG_X=y > $b/.config
         echo '#define UTS_RELEASE \"6.1.0-small\"' > $b/include/generated/utsrelease.h
         echo 'VERSION = 6' > $r/usr/lib/modules/6.1.0-small/source/Makefile
         {extra}",
        r = r.display()
    ));
    run_ok(
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", DISK, "disk"])
            .arg(&r)
            .arg(&img)
            .arg(FLATCAR_TYPE)
            .arg("no"),
    );
    img
}

fn hostile(work: &Path, image: &Path, config: &str) -> String {
    let settings = work.join("kpackfs.yml");
    std::fs::write(&settings, format!("cache_dir: {}\n{config}", work.join("cache").display())).unwrap();
    let mut cmd = bundle_image(work, image, "out.tgz");
    cmd.env("KPACKFS_CONFIG", &settings);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(65), "hostile input exits 65: {stderr}");
    assert!(!work.join("out.tgz").exists(), "nothing is written");
    stderr
}

#[test]
fn a_small_image_in_every_compression_bundles() {
    let work = tempdir();
    let img = small_image(work.path(), "small", "mknod $b/device c 1 3; mkfifo $b/fifo");
    for (tool, suffix) in [("bzip2 -k", "bz2"), ("xz -k -T1", "xz"), ("zstd -q -k", "zst"), ("gzip -k", "gz")] {
        sh(&format!("{tool} {}", img.display()));
        let compressed = PathBuf::from(format!("{}.{suffix}", img.display()));
        run_ok(&mut bundle_image(work.path(), &compressed, &format!("{suffix}.tgz")));
    }
    // Raw, and a bare filesystem without a partition table.
    run_ok(&mut bundle_image(work.path(), &img, "raw.tgz"));
    let root = unpack(work.path(), "raw.tgz");
    assert_eq!(read(&root.join("BUNDLE_UNAME")), "6.1.0-small");
    assert!(!root.join("build/device").exists() && !root.join("build/fifo").exists(), "special files are left out");
    let bare = work.path().join("bare.img");
    sh(&format!("mkfs.ext4 -q -F -d {} {} 8M", work.path().join("small-root").display(), bare.display()));
    run_ok(&mut bundle_image(work.path(), &bare, "bare.tgz"));
    let bare_root = unpack(work.path(), "bare.tgz");
    assert_eq!(read(&bare_root.join("build/Makefile")).trim(), "include ../source/Makefile");
}

#[test]
fn broken_partition_tables_truncated_streams_and_bombs_are_refused() {
    let work = tempdir();
    let img = small_image(work.path(), "small", "");
    // A GPT whose header fails its CRC (the backup is not read from a copy of the head).
    let bad_gpt = work.path().join("bad-gpt.bin");
    std::fs::copy(&img, &bad_gpt).unwrap();
    sh(&format!("printf '\\x01' | dd of={} bs=1 seek=600 conv=notrunc status=none", bad_gpt.display()));
    let err = hostile(work.path(), &bad_gpt, "");
    assert!(err.contains("GPT"), "{err}");
    // A partition table claiming a billion entries.
    let absurd = work.path().join("absurd.bin");
    std::fs::copy(&img, &absurd).unwrap();
    sh(&format!("printf '\\x00\\xca\\x9a\\x3b' | dd of={} bs=1 seek=592 conv=notrunc status=none", absurd.display()));
    let err = hostile(work.path(), &absurd, "");
    assert!(err.contains("partition table size"), "{err}");
    // A truncated bzip2 stream.
    sh(&format!("bzip2 -k {}", img.display()));
    let cut = work.path().join("cut.bin.bz2");
    sh(&format!("head -c $(( $(stat -c %s {i}.bz2) / 2 )) {i}.bz2 > {c}", i = img.display(), c = cut.display()));
    let err = hostile(work.path(), &cut, "");
    assert!(err.contains("broken"), "{err}");
    // A bomb: 1 GiB of zeros in a few hundred bytes, over image_max_size.
    let bomb = work.path().join("bomb.bin.bz2");
    sh(&format!("head -c 1G /dev/zero | bzip2 -9 > {}", bomb.display()));
    let err = hostile(work.path(), &bomb, "image_max_size: 256M\n");
    assert!(err.contains("image_max_size"), "{err}");
    // A partition shorter than its filesystem: reads leave it.
    let short = work.path().join("short.bin");
    std::fs::copy(&img, &short).unwrap();
    sh(&format!("sgdisk -d 9 {s} >/dev/null; sgdisk -n 9:4096:4103 -c 9:ROOT {s} >/dev/null", s = short.display()));
    let err = hostile(work.path(), &short, "");
    assert!(err.contains("leaves the filesystem") || err.contains("filesystem"), "{err}");
}

#[test]
fn hostile_trees_inside_the_image_are_bounded() {
    let work = tempdir();
    // A file larger than a bundle's file may be (sparse: free to make).
    let huge = small_image(work.path(), "huge", "truncate -s 3G $b/huge");
    let err = hostile(work.path(), &huge, "");
    assert!(err.contains("limit per file"), "{err}");
    // Directories nested deeper than a tree needs.
    let deep = small_image(work.path(), "deep", "d=$b; for i in $(seq 80); do d=$d/d; done; mkdir -p $d");
    let err = hostile(work.path(), &deep, "");
    assert!(err.contains("deeper"), "{err}");
    // Link loops and self-links: dropped, the bundle made.
    let loops = small_image(
        work.path(),
        "loops",
        "ln -s loop $b/loop; ln -s a $b/b; ln -s b $b/a; ln -s . $b/self; ln -s / $b/root",
    );
    run_ok(&mut bundle_image(work.path(), &loops, "loops.tgz"));
    let root = unpack(work.path(), "loops.tgz");
    for gone in ["loop", "a", "b"] {
        assert!(std::fs::symlink_metadata(root.join("build").join(gone)).is_err(), "{gone} is dropped");
    }
    for gone in ["self", "root"] {
        assert!(
            std::fs::symlink_metadata(root.join("build").join(gone)).is_err(),
            "{gone}: a link above the tree is left out"
        );
    }
    // No image names a release: refused with the cause.
    let none = work.path().join("none.img");
    sh(&format!(
        "mkdir -p {w}/none/etc && mkfs.ext4 -q -F -d {w}/none {n} 8M",
        w = work.path().display(),
        n = none.display()
    ));
    let err = hostile(work.path(), &none, "");
    assert!(err.contains("lib/modules"), "{err}");
}
