//! Debian-shaped packages built in memory (ar + data.tar.gz), so the fast
//! tier needs no dpkg-deb and no network.

use kpackfs::manifest::{BundleSpec, Manifest, Package};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One archive member.
pub enum Member<'a> {
    Dir(&'a str),
    File(&'a str, Vec<u8>),
    Link(&'a str, &'a str),
}

/// A tar.gz of `members`.
pub fn tar_gz(members: &[Member<'_>]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for m in members {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_000_000_000);
        match m {
            Member::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                tar.append_data(&mut h, format!("./{p}/"), std::io::empty()).unwrap();
            }
            Member::File(p, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                tar.append_data(&mut h, format!("./{p}"), &data[..]).unwrap();
            }
            Member::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                tar.append_link(&mut h, format!("./{p}"), target).unwrap();
            }
        }
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// A .deb (debian-binary, control.tar.gz, data.tar.gz) holding `members`.
pub fn deb(members: &[Member<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut ar = ar::Builder::new(&mut out);
        let mut add = |name: &str, data: &[u8]| {
            let header = ar::Header::new(name.as_bytes().to_vec(), data.len() as u64);
            ar.append(&header, data).unwrap();
        };
        add("debian-binary", b"2.0\n");
        add("control.tar.gz", &tar_gz(&[Member::File("control", b"Package: x\n".to_vec())]));
        add("data.tar.gz", &tar_gz(members));
    }
    out
}

/// Deterministic bytes that do not compress (for sizes that count).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A synthetic Debian kernel: its headers package and a kbuild package
/// shared by every kernel of the same series.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub headers: PathBuf,
    pub kbuild: PathBuf,
}

pub const BASE: &str = "http://deb.example.test/debian/pool/main/l/linux";

impl Kernel {
    /// Write the packages of kernel `uname` into `dir`; `filler` bytes of
    /// incompressible data make it as large as needed.
    pub fn write(dir: &Path, uname: &str, filler: usize) -> Kernel {
        Self::write_with(dir, uname, filler, 0, false)
    }

    /// [`Kernel::write`] with `kbuild_filler` bytes in the shared kbuild
    /// package, and the filler zeros when `zeros` (packages of a few KB
    /// whose packs are large: sizes that count are the bundles').
    pub fn write_with(dir: &Path, uname: &str, filler: usize, kbuild_filler: usize, zeros: bool) -> Kernel {
        std::fs::create_dir_all(dir).unwrap();
        let root = format!("usr/src/linux-headers-{uname}");
        let makefile = format!("# kernel {uname}\nobj-m ?=\n");
        let headers = deb(&[
            Member::Dir("usr"),
            Member::Dir("usr/src"),
            Member::Dir(&root),
            Member::File(&format!("{root}/Makefile"), makefile.into_bytes()),
            Member::File(&format!("{root}/include/linux/kpack.h"), format!("#define KPACK \"{uname}\"\n").into_bytes()),
            Member::File(
                &format!("{root}/filler.bin"),
                if zeros { vec![0u8; filler] } else { noise(filler, uname.len() as u64 + filler as u64) },
            ),
            Member::Link(&format!("{root}/scripts"), "../../lib/linux-kbuild-9/scripts"),
            Member::Link(&format!("lib/modules/{uname}/build"), &format!("/{root}")),
        ]);
        let mut kbuild_members = vec![
            Member::Dir("usr/lib/linux-kbuild-9/scripts"),
            Member::File("usr/lib/linux-kbuild-9/scripts/basic.sh", b"#!/bin/sh\necho kbuild\n".to_vec()),
        ];
        if kbuild_filler > 0 {
            kbuild_members.push(Member::File("usr/lib/linux-kbuild-9/scripts/filler.bin", noise(kbuild_filler, 9)));
        }
        let kbuild = deb(&kbuild_members);
        let headers_path = dir.join(format!("linux-headers-{uname}_1_amd64.deb"));
        let kbuild_path = dir.join("linux-kbuild-9_1_amd64.deb");
        std::fs::File::create(&headers_path).unwrap().write_all(&headers).unwrap();
        std::fs::write(&kbuild_path, kbuild).unwrap();
        Kernel { headers: headers_path, kbuild: kbuild_path }
    }

    /// The entry, the kbuild package listed first when `kbuild_first` (the
    /// order packages are fetched and registered in; the bundle is the same).
    pub fn spec_ordered(&self, with_sums: bool, kbuild_first: bool) -> BundleSpec {
        let package = |path: &Path| {
            let data = std::fs::read(path).unwrap();
            let mut p = Package::new(format!("{BASE}/{}", path.file_name().unwrap().to_str().unwrap()));
            if with_sums {
                p.sha256 = Some(kpackfs::util::sha256_hex(&data));
                p.size = Some(data.len() as u64);
            }
            p
        };
        BundleSpec {
            kind: "debian".into(),
            name: None,
            uname: None,
            signed_by: None,
            packages: if kbuild_first {
                vec![package(&self.kbuild), package(&self.headers)]
            } else {
                vec![package(&self.headers), package(&self.kbuild)]
            },
        }
    }
}

/// A manifest of `kernels`.
pub fn manifest(kernels: &[Kernel], with_sums: bool) -> (Manifest, Vec<String>) {
    manifest_ordered(kernels, with_sums, false)
}

pub fn manifest_ordered(kernels: &[Kernel], with_sums: bool, kbuild_first: bool) -> (Manifest, Vec<String>) {
    let mut m = Manifest::default();
    let ids = kernels.iter().map(|k| m.insert(k.spec_ordered(with_sums, kbuild_first))).collect();
    (m, ids)
}
