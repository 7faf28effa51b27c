#!/usr/bin/env bash
# A cold source bundle (Debian's linux-source-6.1 and the config in its
# headers package, as a COS or vanilla kernel is built) with kpackfs, and
# kernel-packer's packer steps for such kernels in the same run: full
# extraction, the config copied, make olddefconfig, make modules_prepare,
# *.c deleted outside scripts/, tar | pigz -9. Both use gcc-12 and two jobs.
# Prints the median times and their ratio (goal: kpackfs <= 60 s).
# Usage: bench/source.sh [ROUNDS]   (default 3)
set -euo pipefail
rounds=${1:-3}
source "$(dirname "$0")/lib.sh"
cache=${KPACKFS_BENCH_CACHE:-/var/cache/kpackfs-bench}
mkdir -p "$cache/debs"

headers=$(apt-cache depends linux-headers-amd64 | awk '/Depends: linux-headers-/{print $2; exit}')
version=$(apt-cache show "$headers" | awk '/^Version:/{print $2; exit}')
series=$(echo "${headers#linux-headers-}" | cut -d. -f1,2)
(cd "$cache/debs" && for p in "$headers=$version" "linux-source-$series=$version"; do
  ls "${p%%=*}_${version}"_*.deb >/dev/null 2>&1 || apt-get download -q "$p"; done)
headers_deb=$(ls "$cache/debs/${headers}_${version}"_*.deb)
source_deb=$(ls "$cache/debs/linux-source-${series}_${version}"_*.deb)
uname=${headers#linux-headers-}
echo "kernel: $uname ($version)"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/kpackfs-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
# kernel-packer's packers start from the tarball and a config file.
dpkg-deb --fsys-tarfile "$source_deb" | tar -xO --wildcards '*/linux-source-*.tar.xz' > "$work/linux.tar.xz"
mkdir "$work/h" && dpkg-deb -x "$headers_deb" "$work/h" && cp "$work/h/usr/src/$headers/.config" "$work/config"

kp_times=(); base_times=()
for i in $(seq "$rounds"); do
  t0=$(now)
  "$kp" bundle --cache-dir "$work/cache-$i" --type source --release "$uname" -o "$work/kpackfs-$i.tgz" \
    "$work/linux.tar.xz" "$work/config" >/dev/null
  t1=$(now)
  kp_times+=("$(echo "$t1 - $t0" | bc)")
  dir="$work/base-$i"; mkdir "$dir"
  t0=$(now)
  (
    cd "$dir"
    tar --strip 1 -xJf "$work/linux.tar.xz"
    cp "$work/config" .config
    make -s CC=gcc-12 HOSTCC=gcc-12 KERNELRELEASE="$uname" olddefconfig
    make -s CC=gcc-12 HOSTCC=gcc-12 KERNELRELEASE="$uname" -j"$(nproc)" modules_prepare
    find . ! -type d -not -path './scripts/*' -name '*.c' -delete
    tar --create --dereference --hard-dereference --file - . | pigz -9 -c > "$work/base-$i.tgz"
  )
  t1=$(now)
  base_times+=("$(echo "$t1 - $t0" | bc)")
  rm -rf "$dir" "$work/cache-$i"
  printf 'round %d: kpackfs %.2fs  kernel-packer steps %.2fs\n' "$i" "${kp_times[-1]}" "${base_times[-1]}"
done
kp_median=$(median "${kp_times[@]}"); base=$(median "${base_times[@]}")
same=$(sha256sum "$work"/kpackfs-*.tgz | awk '{print $1}' | sort -u | wc -l)
echo
printf 'median time:  kpackfs %.2fs (goal <= 60 s)   kernel-packer steps %.2fs   ratio %.3f\n' "$kp_median" "$base" "$(echo "$kp_median / $base" | bc -l)"
printf 'bundle size:  kpackfs %d   kernel-packer %d\n' "$(stat -c %s "$work/kpackfs-1.tgz")" "$(stat -c %s "$work/base-1.tgz")"
printf 'kpackfs outputs identical across %d rounds: %s\n' "$rounds" "$([ "$same" = 1 ] && echo yes || echo NO)"
