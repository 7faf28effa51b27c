#!/usr/bin/env bash
# Regenerate the fuzz seed corpus (fuzz/corpus/<target>/) from small,
# real-format inputs made by the real tools: dpkg-deb, rpmbuild, createrepo_c.
# The seeds are committed; this script documents where they came from.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$here/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"/{package,cpio,packages,release,repomd,primary,manifest,sources,config,pack}

# A .deb with a header tree, a symlink and a hard link.
root=$work/deb
mkdir -p "$root/DEBIAN" "$root/usr/src/linux-headers-1.0-1-amd64/include" "$root/lib/modules/1.0-1-amd64"
printf 'Package: linux-headers-1.0-1-amd64\nVersion: 1\nArchitecture: amd64\nMaintainer: t <t@t>\nDescription: t\n' > "$root/DEBIAN/control"
echo 'obj-m := x.o' > "$root/usr/src/linux-headers-1.0-1-amd64/Makefile"
echo '#define X 1' > "$root/usr/src/linux-headers-1.0-1-amd64/include/x.h"
ln "$root/usr/src/linux-headers-1.0-1-amd64/include/x.h" "$root/usr/src/linux-headers-1.0-1-amd64/include/y.h"
ln -s /usr/src/linux-headers-1.0-1-amd64 "$root/lib/modules/1.0-1-amd64/build"
for z in gzip xz zstd none; do
  dpkg-deb --root-owner-group -Z"$z" --build "$root" "$out/package/linux-headers_$z.deb" >/dev/null
done
tar -C "$root" -czf "$out/package/tree.tar.gz" usr lib

# An RPM (its cpio payload, uncompressed, is the cpio seed too).
mkdir -p "$work/rpm/SPECS"
cat > "$work/rpm/SPECS/k.spec" <<'SPEC'
Name: kernel-devel
Version: 1.0
Release: 1
Summary: t
License: GPL
BuildArch: noarch
%description
t
%install
mkdir -p %{buildroot}/usr/src/kernels/1.0-1.x86_64/include
echo 'obj-m := x.o' > %{buildroot}/usr/src/kernels/1.0-1.x86_64/Makefile
ln -s Makefile %{buildroot}/usr/src/kernels/1.0-1.x86_64/Kbuild
%files
/usr/src/kernels
SPEC
for p in w9.gzdio w2.xzdio w3.zstdio w0.ufdio; do
  rpmbuild -bb --quiet --define "_topdir $work/rpm" --define "_binary_payload $p" "$work/rpm/SPECS/k.spec" 2>/dev/null
  cp "$work"/rpm/RPMS/noarch/*.rpm "$out/package/kernel-devel_$p.rpm"
  rm -f "$work"/rpm/RPMS/noarch/*.rpm
done
rpm2cpio "$out/package/kernel-devel_w0.ufdio.rpm" > "$out/cpio/payload.cpio"

# yum repodata.
mkdir -p "$work/repo"
cp "$out/package/kernel-devel_w9.gzdio.rpm" "$work/repo/"
createrepo_c --quiet --general-compress-type=gz "$work/repo"
cp "$work/repo/repodata/repomd.xml" "$out/repomd/repomd.xml"
gunzip -c "$work"/repo/repodata/*-primary.xml.gz > "$out/primary/primary.xml"

# apt indexes.
cat > "$out/packages/Packages" <<'P'
Package: linux-headers-6.1.0-56-amd64
Version: 6.1.192-2
Depends: linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), gcc-12
Filename: pool/main/l/linux/linux-headers-6.1.0-56-amd64_6.1.192-2_amd64.deb
Size: 1841552
SHA256: 0000000000000000000000000000000000000000000000000000000000000000
Description: Header files
 long text

Package: linux-kbuild-6.1
Version: 6.1.192-3
Filename: pool/main/l/linux/linux-kbuild-6.1_6.1.192-3_amd64.deb
P
cat > "$out/release/Release" <<'R'
Origin: Debian
Suite: stable
Date: Sat, 28 Nov 2026 08:12:34 UTC
Valid-Until: Sat, 05 Dec 2026 08:12:34 UTC
SHA256:
 0000000000000000000000000000000000000000000000000000000000000000 8790396 main/binary-amd64/Packages.xz
R

# Manifests, sources, config.
head -c 4000 "$here/../manifest.yml" > "$out/manifest/kpackfs.yml"
head -c 3000 "$here/../../shared/fixtures/kernel-packer/manifest.yml" > "$out/manifest/kernel-packer.yml" 2>/dev/null || true
head -c 4000 "$here/../kernel-package-lists/sources.yml" > "$out/sources/sources.yml"
printf 'cache_dir: /var/cache/kpackfs\ncache_size: 10G\napt_mirrors: true\nmirrors:\n  http://a/u: http://b/u\n' > "$out/config/config.yml"
echo "seeds in $out:"; find "$out" -type f | wc -l
