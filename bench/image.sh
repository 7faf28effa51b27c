#!/usr/bin/env bash
# A coreos bundle from a developer-container-like image, against
# `lbzip2 -d` of that image alone and kernel-packer's steps for coreos
# (lbzip2 -dck, map the partitions, mount, tar --dereference of build and
# source | pigz -9) in the same run. Partition 9 is mapped with a loop
# device at its offset (partx reads the table): what kpartx does with a
# device-mapper linear target, without udev.
# The image: Debian's packaged headers laid out as Flatcar lays them out
# (tests/image.rs), GPT partition 9, ext4, lbzip2, with FILLER bytes of the
# host's /usr (real binaries: they compress as a developer container's do).
# Prints medians and ratios (goal: kpackfs <= 2x lbzip2 -d).
# Usage: bench/image.sh [ROUNDS] [FILLER]   (default 3 rounds, 2G of filler)
set -euo pipefail
rounds=${1:-3}
filler=${2:-2G}
source "$(dirname "$0")/lib.sh"
cache=${KPACKFS_BENCH_CACHE:-/var/cache/kpackfs-bench}
mkdir -p "$cache/debs"

headers=$(apt-cache depends linux-headers-amd64 | awk '/Depends: linux-headers-/{print $2; exit}')
uname=${headers#linux-headers-}
version=$(apt-cache show "$headers" | awk '/^Version:/{print $2; exit}')
common=$(apt-cache depends "$headers" | awk '/Depends: linux-headers-.*-common/{print $2; exit}')
kbuild=$(apt-cache depends "$headers" | awk '/Depends: linux-kbuild-/{print $2; exit}')
(cd "$cache/debs" && for p in "$headers" "$common" "$kbuild"; do
  ls "${p}_"*.deb >/dev/null 2>&1 || apt-get download -q "$p"; done)

image="$cache/flatcar-$uname-$filler.bin.bz2"
if [ ! -f "$image" ]; then
  make=$(mktemp -d "${TMPDIR:-/var/tmp}/kpackfs-bench-image.XXXXXX")
  x=$make/x; r=$make/root; mkdir -p "$x"
  for p in "$headers" "$common" "$kbuild"; do dpkg-deb -x "$(ls "$cache/debs/${p}_"*.deb | head -1)" "$x"; done
  mkdir -p "$r/usr/lib/modules/$uname" "$r/usr/share"
  ln -s usr/lib "$r/lib"
  cp -rL "$x/usr/src/$headers" "$r/usr/lib/modules/$uname/build"
  cp -rL "$x/usr/src/$common" "$r/usr/lib/modules/$uname/source"
  echo "include /build/amd64-usr/var/tmp/portage/sys-kernel/coreos-modules/work/source/Makefile" > "$r/usr/lib/modules/$uname/build/Makefile"
  tar -C /usr -cf - lib bin share 2>/dev/null | head -c "$filler" > "$r/usr/share/filler" || true
  kb=$(du -sk "$r" | cut -f1)
  mkfs.ext4 -q -F -L ROOT -d "$r" "$make/fs" $(( kb * 12 / 10 + 65536 ))K
  n=$(( $(stat -c %s "$make/fs") / 512 ))
  truncate -s $(( (4096 + n + 2048) * 512 )) "$make/disk.bin"
  sgdisk -n 9:4096:$(( 4096 + n - 1 )) -c 9:ROOT -t 9:0FC63DAF-8483-4772-8E79-3D69D8477DE4 "$make/disk.bin" >/dev/null
  dd if="$make/fs" of="$make/disk.bin" bs=1M seek=2 conv=notrunc,sparse status=none
  lbzip2 -9 -n "$(nproc)" -c "$make/disk.bin" > "$image.part" && mv "$image.part" "$image"
  rm -rf "$make"
fi
echo "image: $(du -h --apparent-size "$image" | cut -f1) compressed, kernel $uname"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/kpackfs-bench.XXXXXX")
mnt=$work/mnt; mkdir -p "$mnt"
cleanup() { umount "$mnt" 2>/dev/null || true; [ -n "${loop:-}" ] && losetup -d "$loop" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
kp_times=(); lb_times=(); base_times=()
for i in $(seq "$rounds"); do
  t0=$(now); lbzip2 -dck "$image" > "$work/raw"; t1=$(now)
  lb_times+=("$(echo "$t1 - $t0" | bc)"); rm -f "$work/raw"
  t0=$(now)
  TMPDIR="$work" "$kp" bundle --cache-dir "$work/cache-$i" --type coreos -o "$work/kpackfs-$i.tgz" "$image" >/dev/null
  t1=$(now)
  kp_times+=("$(echo "$t1 - $t0" | bc)")
  t0=$(now)
  lbzip2 -dck "$image" > "$work/raw"
  read -r start sectors < <(partx -g -o START,SECTORS -n 9 "$work/raw")
  loop=$(losetup --show -f -r -o $(( start * 512 )) --sizelimit $(( sectors * 512 )) "$work/raw")
  mount -o ro "$loop" "$mnt"
  tar --create --dereference --hard-dereference --file - -C "$mnt/lib/modules/$uname" ./build ./source | pigz -9 -c > "$work/base-$i.tgz"
  umount "$mnt"; losetup -d "$loop"; loop=
  t1=$(now)
  base_times+=("$(echo "$t1 - $t0" | bc)")
  rm -rf "$work/raw" "$work/cache-$i"
  printf 'round %d: lbzip2 -d %.2fs  kpackfs %.2fs  kernel-packer steps %.2fs\n' "$i" "${lb_times[-1]}" "${kp_times[-1]}" "${base_times[-1]}"
done
kp_m=$(median "${kp_times[@]}"); lb_m=$(median "${lb_times[@]}"); base_m=$(median "${base_times[@]}")
same=$(sha256sum "$work"/kpackfs-*.tgz | awk '{print $1}' | sort -u | wc -l)
echo
printf 'median: lbzip2 -d %.2fs   kpackfs %.2fs   kernel-packer steps %.2fs\n' "$lb_m" "$kp_m" "$base_m"
printf 'ratios: kpackfs / lbzip2 -d %.3f (goal <= 2)   kpackfs / kernel-packer %.3f\n' \
  "$(echo "$kp_m / $lb_m" | bc -l)" "$(echo "$kp_m / $base_m" | bc -l)"
printf 'bundle size: kpackfs %d   kernel-packer %d\n' "$(stat -c %s "$work/kpackfs-1.tgz")" "$(stat -c %s "$work/base-1.tgz")"
printf 'kpackfs outputs identical across %d rounds: %s\n' "$rounds" "$([ "$same" = 1 ] && echo yes || echo NO)"
