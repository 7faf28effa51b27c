#!/usr/bin/env bash
# Coverage against the archive, and module builds through the mount.
#
# 1. Which kernels the Debian archive holds, per suite and architecture, as
#    apt itself reads the signed indexes (bench/archive_kernels.py), against
#    the shipped manifest: held / found / missed.
# 2. For every kernel held, a hello-world module built through `kpackfs mount`
#    with the plain line `make -C <mount>/debian/<name>/$(cat BUNDLE_BUILD_DIR) M=$PWD`
#    (arm64: ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-, the bundle's kbuild
#    tools run by qemu-user-static through binfmt_misc). It passes when make
#    succeeds and the module's vermagic starts with BUNDLE_UNAME.
#    - bookworm kernels (6.1 and 6.12+deb12) name gcc-12: built with the host's
#      gcc-12 and gcc-aarch64-linux-gnu;
#    - trixie kernels name gcc-14 and bullseye kernels gcc-10, which bookworm
#      lacks: with COVERAGE_CHROOTS=1 their amd64 kernels are built in minimal
#      chroots (debootstrap from the host's mirror) that see the same mount;
#      otherwise the table says which compiler they need.
#
# Writes docs/coverage.md (or $1). Usage (as root): bench/coverage.sh [OUT.md]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=${1:-$repo/docs/coverage.md}
state=${KPACKFS_COVERAGE_DIR:-/var/cache/kpackfs-coverage}
chroots=${COVERAGE_CHROOTS:-0}
mkdir -p "$state"
mnt=$(mktemp -d "${TMPDIR:-/var/tmp}/kpackfs-coverage.XXXXXX")
binfmt_registered=0
cleanup() {
  for c in trixie bullseye; do
    for m in "$state/$c/kernels" "$state/$c/work" "$state/$c/proc"; do umount -l "$m" 2>/dev/null || true; done
  done
  "$kp" umount --lazy "$mnt" 2>/dev/null || true
  rmdir "$mnt" 2>/dev/null || true
  [ "$binfmt_registered" = 1 ] && echo -1 >/proc/sys/fs/binfmt_misc/qemu-aarch64 || true
}
trap cleanup EXIT

# 1. The archive, read by apt, against the shipped manifest.
"$kp" list --json >"$state/manifest.json"
held_status=0
python3 "$repo/bench/archive_kernels.py" --manifest-json "$state/manifest.json" --work "$state/apt" \
  --json "$state/held.json" --markdown "$state/held.md" || held_status=$?

# 2. Builds.
debian_mirror() {
  { grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' || true
    grep -h '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '{for (i=2;i<=NF;i++) if ($i ~ /:\/\//) {print $i; break}}' || true
  } | grep -E '/debian/?$' | head -1 || true
}
make_chroot() { # make_chroot SUITE GCC
  local dir="$state/$1"
  if [ ! -x "$dir/usr/bin/$2" ]; then
    echo "making a $1 chroot for $2 (debootstrap)…"
    rm -rf "$dir"
    debootstrap --variant=minbase --include="$2,make,libc6-dev,kmod,bc,dwarves" "$1" "$dir" "$(debian_mirror)" >/dev/null
  fi
  mkdir -p "$dir/kernels" "$dir/work"
  mount --bind "$mnt" "$dir/kernels"
  mount -t proc proc "$dir/proc" 2>/dev/null || true
}

"$kp" mount "$mnt" --cache-dir "$state/cache" --crawl-interval off >/dev/null
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  tr -d '\n' </usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register
  binfmt_registered=1
fi
"$repo/bench/arm64_sysroot.sh" "$state/arm64-sysroot"
if [ "$chroots" = 1 ]; then
  make_chroot trixie gcc-14
  make_chroot bullseye gcc-10
fi

# One row per kernel: name, arch, the suites holding it.
python3 - "$state/held.json" >"$state/kernels.txt" <<'EOF'
import json, sys
suites = {}
for r in json.load(open(sys.argv[1]))["rows"]:
    for k in r["kernels"]:
        suites.setdefault((k, r["arch"]), []).append(r["suite"])
for (k, arch), s in sorted(suites.items()):
    print(k, arch, ",".join(s))
EOF

rows=(); pass=0; built=0; total=0
while read -r name arch suites; do
  total=$((total + 1))
  case "$suites" in
    bookworm*) family=bookworm; cc=gcc-12 ;;
    trixie*) family=trixie; cc=gcc-14 ;;
    bullseye*) family=bullseye; cc=gcc-10 ;;
  esac
  [ "$arch" = arm64 ] && cc="aarch64-linux-gnu-${cc}"
  if [ "$family" != bookworm ] && { [ "$chroots" != 1 ] || [ "$arch" = arm64 ]; }; then
    rows+=("| \`$name\` | $arch | $suites | $cc | needs $cc ($family), not built | | |")
    continue
  fi
  built=$((built + 1))
  if [ "$family" = bookworm ]; then work="$state/work"; else work="$state/$family/work"; fi
  rm -rf "$work"; write_hello "$work"
  tree="$mnt/debian/$name"
  t0=$(now); ok=0
  if [ "$family" != bookworm ]; then
    chroot "$state/$family" sh -c "make -s -C /kernels/debian/$name/\$(cat /kernels/debian/$name/BUNDLE_BUILD_DIR) M=/work" >"$state/build-$name.log" 2>&1 || ok=$?
  elif [ "$arch" = arm64 ]; then
    QEMU_LD_PREFIX="$state/arm64-sysroot" make -s -C "$tree/$(cat "$tree/BUNDLE_BUILD_DIR")" M="$work" \
      ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- modules >"$state/build-$name.log" 2>&1 || ok=$?
  else
    make -s -C "$tree/$(cat "$tree/BUNDLE_BUILD_DIR")" M="$work" >"$state/build-$name.log" 2>&1 || ok=$?
  fi
  secs=$(echo "$(now) - $t0" | bc)
  vermagic=$( [ -f "$work/hello.ko" ] && modinfo -F vermagic "$work/hello.ko" || echo "-")
  if [ "$ok" = 0 ] && [[ "$vermagic" == "$(cat "$tree/BUNDLE_UNAME") "* ]]; then
    result=ok; pass=$((pass + 1))
  else
    # The daemon's one line for the bundle says why, if the bundle failed (host names left out).
    cause=$(grep -F "bundle debian/$name:" "$state/cache/kpackfs.log" 2>/dev/null | tail -1 |
      grep -oE 'HTTP [0-9]{3}[A-Za-z ]*' | head -1 | sed 's/ *$//' || true)
    if [ -n "$cause" ]; then
      result="FAILED: the mirror answers $cause for a package the signed index lists"
    else
      result="FAILED (see build-$name.log in the state directory)"
    fi
  fi
  printf '%-34s %-6s %-20s %s\n' "$name" "$arch" "$cc" "$result"
  rows+=("| \`$name\` | $arch | $suites | $cc | $result | \`$vermagic\` | $(printf '%.1f' "$secs") s |")
done <"$state/kernels.txt"

{
  echo "## Debian"
  echo
  echo "Generated by \`bench/coverage.sh\` on $(date -u +%Y-%m-%d) against the live Debian archive."
  echo
  echo "### Kernels held by the archive, found by kpackfs"
  echo
  echo "What the archive holds is read by apt itself, not by kpackfs: \`bench/archive_kernels.py\` points a private apt configuration (one per suite and architecture) at the host's mirror, lets apt download and verify the signed indexes, and reads them back with \`apt-cache dumpavail\`. A kernel there is a release that has both an image package (\`linux-image-<uname>\`, or \`-unsigned\`) and a headers package (\`linux-headers-<uname>\`), where the release starts with x.y.z (so metapackages such as \`linux-headers-amd64\` are not kernels). kpackfs's crawler never reads image packages. A kernel counts as found when the shipped manifest has a \`debian\` entry of that name holding a package with apt's sha256 for its headers. The live test \`coverage_live\` checks the same for a fresh crawl and for the default mount."
  echo
  cat "$state/held.md"
  echo
  echo "### Module builds through the mount"
  echo
  echo "Every kernel above, built through \`kpackfs mount\` with the plain line \`make -C <mount>/debian/<name>/\$(cat BUNDLE_BUILD_DIR) M=\$PWD\` (arm64: \`ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-\`, the bundle's arm64 kbuild tools run by qemu-user-static through binfmt_misc with an arm64 userland from Debian's packages, \`bench/arm64_sysroot.sh\`). A build passes when make succeeds and the module's vermagic starts with BUNDLE_UNAME. Each kernel names its compiler: bookworm's (6.1 and 6.12+deb12) gcc-12, which this bookworm host has (and its aarch64 cross compiler); trixie's gcc-14 and bullseye's gcc-10, which it does not$( [ "$chroots" = 1 ] && echo ": their amd64 kernels were built in minimal trixie and bullseye chroots (debootstrap) that see the same mount" ). Times are wall-clock and include a bundle's first access (download, verification, extraction) when it was not cached yet."
  echo
  echo "**$pass of $built built passed** ($total kernels; $((total - built)) need a compiler this host lacks)."
  echo
  echo "| kernel | arch | suites | compiler | result | vermagic | time |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} >"$state/coverage-debian.md"
replace_section "$out" debian "$state/coverage-debian.md"
echo "$pass of $built built passed ($total kernels); table in $out"
[ "$held_status" = 0 ] || echo "the shipped manifest misses kernels the archive holds (see the table)" >&2
exit "$held_status"
