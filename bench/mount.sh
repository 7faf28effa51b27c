#!/usr/bin/env bash
# Module builds through the mount against the same tree extracted on local
# disk, and against ratarmount mounting the bundle .tgz; all in one run.
# Also: cp of a cached .tgz, mount-to-ready and ls on kernel-packer's 6,473
# entries, and the daemon's peak RSS there. Prints ratios.
# Usage (as root): bench/mount.sh [ROUNDS]   (default 5)
#   BENCH_KERNEL=NAME   the Debian bundle to use (default: the newest bookworm
#                       6.1 amd64 kernel of the shipped manifest, which this
#                       host's gcc-12 builds)
#   SECTIONS="warm cold cp kp"   which parts to run (default: all)
set -euo pipefail
shopt -s inherit_errexit
rounds=${1:-5}
sections=${SECTIONS:-warm cold cp kp}
want() { [[ " $sections " == *" $1 "* ]]; }
source "$(dirname "$0")/lib.sh"
work=$(mktemp -d "${TMPDIR:-/var/tmp}/kpackfs-mountbench.XXXXXX")
mounts=()
server_pid=""
cleanup() {
  for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null || true; done
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ratio() { echo "$1 / $2" | bc -l; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# --- the bundle: a kernel this host can build -------------------------------------
if [ -n "${BENCH_KERNEL:-}" ]; then
  line=$("$kp" list | awk -v n="debian/$BENCH_KERNEL" '$1 == n')
else
  line=$("$kp" list | awk '$1 ~ /^debian\/6\.1\.0-[0-9]+-amd64$/' | sort -t- -k2,2n | tail -1)
fi
[ -n "$line" ] || { echo "bench: no such Debian kernel in the shipped manifest (BENCH_KERNEL=${BENCH_KERNEL:-})" >&2; exit 1; }
name=$(echo "$line" | awk '{print $1}' | cut -d/ -f2)
uname=$(echo "$line" | awk '{print $2}')
id=$(echo "$line" | awk '{print $4}')
echo "bundle: debian/$name"
"$kp" bundle "$name" --cache-dir "$work/prep" -o "$work/bundle.tgz" >/dev/null   # through the host's apt mirror
# A loopback mirror holding its packages at their canonical paths.
"$kp" list --json | python3 -c '
import json, sys, os, shutil
entry = next(e for e in json.load(sys.stdin) if e["id"] == sys.argv[1])
for p in entry["packages"]:
    path = p["url"].split("://", 1)[1].split("/", 1)[1]
    dest = os.path.join(sys.argv[2], path)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copy(os.path.join(sys.argv[3], p["sha256"]), dest)
    print(dest)
' "$id" "$work/mirror" "$work/prep/packages/sha256" > "$work/mirror-files"
port=$((20000 + RANDOM % 20000))
(cd "$work/mirror" && exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) & server_pid=$!
sleep 1
mapfile -t mirrors < <(debian_mirror_args "$port")
mirror_args=(--no-apt-mirrors --crawl-interval off "${mirrors[@]}")

# --- the three trees: local disk, kpackfs, ratarmount ---------------------------
native="$work/native"; mkdir -p "$native"; tar -xzf "$work/bundle.tgz" -C "$native"
kmnt="$work/kmnt"; mkdir -p "$kmnt"
"$kp" mount "$kmnt" --cache-dir "$work/cache" "${mirror_args[@]}" >/dev/null; mounts+=("$kmnt")
ktree="$kmnt/debian/$name"
cat "$ktree/BUNDLE_UNAME" >/dev/null
rmnt="$work/rmnt"; mkdir -p "$rmnt"
# RATARMOUNT=/path/to/ratarmount reuses an installed one; else it comes from PyPI.
ratarmount=${RATARMOUNT:-}
if [ -z "$ratarmount" ] && python3 -m venv "$work/venv" >/dev/null 2>&1 && "$work/venv/bin/pip" install -q ratarmount >/dev/null 2>&1; then
  ratarmount="$work/venv/bin/ratarmount"
fi
if [ -n "$ratarmount" ]; then
  "$ratarmount" "$work/bundle.tgz" "$rmnt" >/dev/null 2>&1 && mounts+=("$rmnt") || ratarmount=""
fi

# --- the modules ---------------------------------------------------------------
mkdir -p "$work/multi"
write_hello "$work/hello"
headers='#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/fs.h>
#include <linux/sched.h>
#include <linux/netdevice.h>
#include <linux/skbuff.h>
#include <linux/bpf.h>
#include <linux/kprobes.h>
#include <linux/tracepoint.h>
#include <linux/perf_event.h>
#include <linux/cgroup.h>
#include <linux/netfilter.h>
#include <net/sock.h>
#include <net/tcp.h>
#include <net/ipv6.h>'
for i in 1 2 3 4 5; do
  printf '%s\nint part%d(void) { return (int)sizeof(struct sk_buff) + (int)sizeof(struct task_struct) + %d; }\n' "$headers" "$i" "$i" > "$work/multi/part$i.c"
done
printf '%s\nMODULE_LICENSE("GPL");\nint part1(void);\nstatic int __init m_init(void) { return part1() < 0; }\nmodule_init(m_init);\n' "$headers" > "$work/multi/main.c"
echo 'obj-m := multi.o
multi-y := main.o part1.o part2.o part3.o part4.o part5.o' > "$work/multi/Makefile"

build() { # tree module -> seconds; a failed build ends the bench
  local tree=$1 mod=$2
  make -s -C "$work/$mod" clean >/dev/null 2>&1 || true
  rm -f "$work/$mod"/*.o "$work/$mod"/.*.cmd "$work/$mod"/*.ko
  local t0; t0=$(now)
  if ! make -s -C "$tree/$(cat "$tree/BUNDLE_BUILD_DIR")" M="$work/$mod" >"$work/make.log" 2>&1; then
    echo "bench: the $mod build against $tree failed:" >&2; tail -5 "$work/make.log" >&2; exit 1
  fi
  local t1; t1=$(now)
  local ko; ko=$(ls "$work/$mod"/*.ko)
  [[ "$(modinfo -F vermagic "$ko")" == "$uname "* ]] || { echo "bench: $ko has vermagic $(modinfo -F vermagic "$ko"), not $uname" >&2; exit 1; }
  echo "$t1 - $t0" | bc
}

if want warm; then
echo
echo "== warm module builds (median of $rounds, one warm-up each; sides interleaved, order alternating) =="
# This machine drifts by 20% over minutes: each round builds on every side
# back to back, and the order flips every round.
for mod in hello multi; do
  build "$native" "$mod" >/dev/null; build "$ktree" "$mod" >/dev/null
  nt=(); kt=()
  for i in $(seq "$rounds"); do
    if [ $((i % 2)) = 1 ]; then
      nt+=("$(build "$native" "$mod")"); kt+=("$(build "$ktree" "$mod")")
    else
      kt+=("$(build "$ktree" "$mod")"); nt+=("$(build "$native" "$mod")")
    fi
  done
  n=$(median "${nt[@]}"); k=$(median "${kt[@]}")
  printf '%-6s native %.2fs  kpackfs %.2fs (%.3fx, target <= 1.05)' "$mod" "$n" "$k" "$(ratio "$k" "$n")"
  if [ -n "$ratarmount" ]; then
    build "$rmnt" "$mod" >/dev/null
    rt=(); for _ in 1 2; do rt+=("$(build "$rmnt" "$mod")"); done
    r=$(median "${rt[@]}")
    printf '  ratarmount %.2fs (%.1fx)' "$r" "$(ratio "$r" "$n")"
  fi
  echo
done
vermagic=$(modinfo -F vermagic "$work/hello/hello.ko")
echo "vermagic: $vermagic (BUNDLE_UNAME $uname)"
fi

if want cold; then
echo
echo "== cold hello build: empty cache, packages from a loopback mirror =="
native_cold=(); extract=(); kp_cold=()
for i in $(seq 3); do
  drop_caches; native_cold+=("$(build "$native" hello)")
  d="$work/extract-$i"; mkdir "$d"
  drop_caches; t0=$(now)
  while read -r f; do dpkg-deb -x "$f" "$d"; done < "$work/mirror-files"
  extract+=("$(echo "$(now) - $t0" | bc)"); rm -rf "$d"
  m="$work/cold-$i"; mkdir -p "$m"
  "$kp" mount "$m" --cache-dir "$work/coldcache-$i" "${mirror_args[@]}" >/dev/null; mounts+=("$m")
  drop_caches
  kp_cold+=("$(build "$m/debian/$name" hello)")
  "$kp" umount "$m"
done
nc=$(median "${native_cold[@]}"); ex=$(median "${extract[@]}"); kc=$(median "${kp_cold[@]}")
printf 'native cold %.2fs + extract (dpkg-deb -x x3) %.2fs = %.2fs; kpackfs cold %.2fs (%.3fx of that, target <= 1)\n' \
  "$nc" "$ex" "$(echo "$nc + $ex" | bc)" "$kc" "$(ratio "$kc" "$(echo "$nc + $ex" | bc)")"
fi

if want cp; then
echo
echo "== cp of a cached .tgz (median of $rounds) =="
# Two baselines: the same file on the destination's filesystem (cp uses
# copy_file_range there, an in-kernel copy no other filesystem can use),
# and on a tmpfs (cp reads and writes, as it must from any other mount).
tgz="$kmnt/debian/$name.tgz"
cat "$tgz" >/dev/null   # built into the cache
cp "$work/bundle.tgz" "$work/native.tgz"
mkdir -p "$work/tmpfs"; mount -t tmpfs -o size=256M kpackfs-bench "$work/tmpfs"; mounts+=("$work/tmpfs")
cp "$work/bundle.tgz" "$work/tmpfs/other.tgz"
size=$(stat -c %s "$tgz")
rate() { echo "$size / $1 / 1000000" | bc -l; }
timed_cp() { local t0; t0=$(now); cp "$1" "$work/out.tgz"; echo "$(now) - $t0" | bc; rm -f "$work/out.tgz"; }
for mode in cold warm; do
  nt=(); ot=(); kt=()
  for _ in $(seq "$rounds"); do
    [ $mode = cold ] && drop_caches; nt+=("$(timed_cp "$work/native.tgz")")
    [ $mode = warm ] && cat "$work/tmpfs/other.tgz" >/dev/null; ot+=("$(timed_cp "$work/tmpfs/other.tgz")")
    [ $mode = cold ] && drop_caches; kt+=("$(timed_cp "$tgz")")
  done
  n=$(median "${nt[@]}"); o=$(median "${ot[@]}"); k=$(median "${kt[@]}")
  printf '%s: same-fs %.0f MB/s  from tmpfs %.0f MB/s  kpackfs %.0f MB/s  (%.2fx of same-fs, %.2fx of tmpfs; target >= 0.8)\n' \
    "$mode" "$(rate "$n")" "$(rate "$o")" "$(rate "$k")" "$(ratio "$n" "$k")" "$(ratio "$o" "$k")"
done
# Reading alone, warm, 1 MiB at a time: the page cache of each filesystem.
for pair in "local-disk:$work/native.tgz" "tmpfs:$work/tmpfs/other.tgz" "kpackfs:$tgz"; do
  python3 - "${pair#*:}" "$size" "${pair%%:*}" <<'PY'
import sys, time
path, size, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
runs = []
for _ in range(9):
    t = time.perf_counter()
    with open(path, 'rb', buffering=0) as f:
        while f.read(1 << 20):
            pass
    runs.append(size / (time.perf_counter() - t) / 1e6)
print('warm read, 1 MiB at a time, %-10s %6.0f MB/s' % (label, sorted(runs)[4]))
PY
done
fi

fixtures="$repo/../shared/fixtures/kernel-packer"
if want kp; then
echo
echo "== kernel-packer's manifest (6,473 entries), empty cache =="
  [ -f "$fixtures/manifest.yml" ] || { echo "bench: no kernel-packer fixtures at $fixtures" >&2; exit 1; }
  m="$work/kp"; mkdir -p "$m"
  t0=$(now); out=$("$kp" mount "$m" --manifest "$fixtures/manifest.yml" --cache-dir "$work/kpcache" --no-apt-mirrors --crawl-interval off); t1=$(now)
  mounts+=("$m")
  pid=$(echo "$out" | sed -n 's/.*(pid \([0-9]*\).*/\1/p')
  t2=$(now); entries=$(ls -l "$m"/*/ | wc -l); t3=$(now)
  printf 'mount to ready %.2fs; ls -l of every type directory (%d lines) %.2fs\n' "$(echo "$t1 - $t0" | bc)" "$entries" "$(echo "$t3 - $t2" | bc)"
  grep -E 'VmHWM|VmRSS' "/proc/$pid/status" | awk '{printf "daemon %s %.1f MiB\n", $1, $2/1024}'
  "$kp" umount "$m"
fi
