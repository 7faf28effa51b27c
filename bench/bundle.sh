#!/usr/bin/env bash
# Build the real Debian bundle (current bookworm kernel: headers, -common,
# kbuild) with kpackfs and with kernel-packer's pipeline, in the same run:
#   dpkg-deb -x of the three packages, then
#   tar --dereference --hard-dereference -c ./usr ./lib | pigz -9
# Prints the median times, their ratio and the size ratio.
# Usage: bench/bundle.sh [ROUNDS]   (default 5)
set -euo pipefail
rounds=${1:-5}
source "$(dirname "$0")/lib.sh"
cache=${KPACKFS_BENCH_CACHE:-/var/cache/kpackfs-bench}
mkdir -p "$cache/debs"

headers=$(apt-cache depends linux-headers-amd64 | awk '/Depends: linux-headers-/{print $2; exit}')
pkgs=("$headers" $(apt-cache depends "$headers" | awk '/Depends: (linux-headers-.*-common|linux-kbuild-)/{print $2}'))
(cd "$cache/debs" && for p in "${pkgs[@]}"; do ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download -q "$p"; done)
debs=()
for p in "${pkgs[@]}"; do debs+=("$(ls -t "$cache/debs/${p}"_*.deb | head -1)"); done
echo "packages: ${pkgs[*]}"
uname=${headers#linux-headers-}

work=$(mktemp -d "${TMPDIR:-/var/tmp}/kpackfs-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
kp_times=(); base_times=()
for i in $(seq "$rounds"); do
  # kpackfs
  t0=$(now)
  "$kp" bundle --type debian -o "$work/kpackfs-$i.tgz" "${debs[@]}" >/dev/null
  t1=$(now)
  kp_times+=("$(echo "$t1 - $t0" | bc)")
  # kernel-packer's pipeline, into a fresh directory each round
  dir="$work/base-$i"; mkdir "$dir"
  t0=$(now)
  for d in "${debs[@]}"; do dpkg-deb -x "$d" "$dir"; done
  (
    cd "$dir"
    # kernel-packer's Debian fixups: relative build/source links, BUILD_ROOT
    # includes, broken links removed, then tar with dereference and pigz -9.
    ln --force --relative --symbolic "usr/src/linux-headers-$uname" "lib/modules/$uname/build"
    ln --force --relative --symbolic "usr/src/linux-headers-${uname%-amd64}-common" "lib/modules/$uname/source"
    find . -name Makefile -type f -print0 | xargs -0 -n 1 sed -i -e 's|^include /|include $(BUILD_ROOT)/|g'
    find . -type l -exec test ! -e {} \; -exec unlink {} \;
    tar --create --dereference --hard-dereference --file - ./usr ./lib | pigz -9 -c > "$work/base-$i.tgz"
  )
  t1=$(now)
  base_times+=("$(echo "$t1 - $t0" | bc)")
  rm -rf "$dir"
  printf 'round %d: kpackfs %.2fs  kernel-packer %.2fs\n' "$i" "${kp_times[-1]}" "${base_times[-1]}"
done
kp_median=$(median "${kp_times[@]}"); base=$(median "${base_times[@]}")
kp_size=$(stat -c %s "$work/kpackfs-1.tgz"); base_size=$(stat -c %s "$work/base-1.tgz")
same=$(sha256sum "$work"/kpackfs-*.tgz | awk '{print $1}' | sort -u | wc -l)
echo
printf 'median time:  kpackfs %.2fs   kernel-packer pipeline %.2fs   ratio %.3f (target <= 0.2)\n' "$kp_median" "$base" "$(echo "$kp_median / $base" | bc -l)"
printf 'bundle size:  kpackfs %d   kernel-packer %d   ratio %.3f (target <= 1.03)\n' "$kp_size" "$base_size" "$(echo "$kp_size / $base_size" | bc -l)"
printf 'kpackfs outputs identical across %d rounds: %s\n' "$rounds" "$([ "$same" = 1 ] && echo yes || echo NO)"
