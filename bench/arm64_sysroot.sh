#!/usr/bin/env bash
# Make an arm64 userland for running a bundle's kbuild tools under qemu.
#
# An arm64 bundle's scripts/basic/fixdep, scripts/mod/modpost and (6.12)
# tools/bpf/resolve_btfids are arm64 programs linked against glibc and
# libelf. On an amd64 host, binfmt_misc hands them to qemu-aarch64, which
# looks for their loader and libraries under QEMU_LD_PREFIX. This script
# fills that prefix with Debian's own arm64 packages (libc6, libelf1 and
# their libraries), downloaded and verified by apt through a private apt
# configuration pointed at the host's mirror (the host's apt sources and
# architectures are not changed), and unpacked with dpkg-deb.
#
# Usage: bench/arm64_sysroot.sh SYSROOT [SUITE]   (default suite: bookworm)
# Then:  QEMU_LD_PREFIX=SYSROOT make ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- …
set -euo pipefail
sysroot=$1
suite=${2:-bookworm}
keyring=$(cd "$(dirname "$0")/.." && pwd)/kernel-package-lists/keys/debian-archive-keyring.gpg
[ -e "$sysroot/.done-$suite" ] && exit 0

mirror=${KPACKFS_DEBIAN_MIRROR:-$(
  { grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' || true
    grep -h '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '{for (i=2;i<=NF;i++) if ($i ~ /:\/\//) {print $i; break}}' || true
  } | grep -E '/debian/?$' | head -1)}
[ -n "$mirror" ] || { echo "no Debian mirror in apt's configuration (set KPACKFS_DEBIAN_MIRROR)" >&2; exit 1; }

apt_dir=$(mktemp -d)
trap 'rm -rf "$apt_dir"' EXIT
mkdir -p "$apt_dir"/{lists/partial,cache/archives/partial,etc/preferences.d,debs}
echo "deb [arch=arm64 signed-by=$keyring] $mirror $suite main" >"$apt_dir/etc/sources.list"
opts=(-o "Dir::Etc::sourcelist=$apt_dir/etc/sources.list" -o Dir::Etc::sourceparts=-
      -o "Dir::Etc::preferencesparts=$apt_dir/etc/preferences.d"
      -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o Dir::State::status=/dev/null
      -o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o Acquire::Languages=none
      -o APT::Sandbox::User=root)
apt-get -qq "${opts[@]}" update
(cd "$apt_dir/debs" && apt-get -qq "${opts[@]}" download libc6 libelf1 zlib1g libzstd1 libgcc-s1 >/dev/null)
mkdir -p "$sysroot"
for deb in "$apt_dir"/debs/*.deb; do dpkg-deb -x "$deb" "$sysroot"; done
# The loader by the path arm64 programs name (Debian ships it in /usr/lib and /lib links).
[ -e "$sysroot/lib/ld-linux-aarch64.so.1" ] || {
  mkdir -p "$sysroot/lib"
  ln -sf ../usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1 "$sysroot/lib/ld-linux-aarch64.so.1"
}
touch "$sysroot/.done-$suite"
