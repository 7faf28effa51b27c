#!/usr/bin/env bash
# Manifests at scale (issue 8): for N entries (3 packages each, sha256 and
# size), the first mount (which indexes the YAML), a second mount (which maps
# the index), daemon memory, and `ls -l` of one type directory.
# `shipped` instead of N: the default mount (the shipped manifest, every
# Debian and Ubuntu kernel), first and indexed, and `ls -l` of /ubuntu/.
# Usage: bench/scale.sh [N|shipped ...]   (default: 10000 30000 100000 1000000)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
work=$(mktemp -d "${TMPDIR:-/var/tmp}/kpackfs-scale.XXXXXX")
mnt=$work/mnt; mkdir -p "$mnt"
cleanup() { "$kp" umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(10000 30000 100000 1000000)

rss() { awk '/VmRSS|VmHWM/ {printf "%s %s MiB  ", $1, int($2/1024)}' "/proc/$1/status"; }
mount_once() {  # cache dir [manifest args...]; prints seconds to ready
  local t0 t1 cache=$1; shift; t0=$(now)
  "$kp" mount "$mnt" "$@" --cache-dir "$cache" --crawl-interval off --no-apt-mirrors >/dev/null
  t1=$(now); echo "$t1 - $t0" | bc
}
shipped() {
  local cache=$work/cache-shipped first second pid
  first=$(mount_once "$cache"); "$kp" umount "$mnt"
  for i in 1 2 3; do
    second=$(mount_once "$cache")
    pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$mnt/.kpackfs/status.json")
    local t0 t1 lines; t0=$(now); lines=$(ls -l "$mnt/ubuntu" | wc -l); t1=$(now)
    printf 'shipped manifest: first mount %.2fs, indexed mount %.3fs (%s), ls -l ubuntu/ (%d lines) %.2fs\n' \
      "$first" "$second" "$(rss "$pid")" "$lines" "$(echo "$t1 - $t0" | bc)"
    "$kp" umount "$mnt"
  done
  rm -rf "$cache"
}
for n in "${sizes[@]}"; do
  if [ "$n" = shipped ]; then shipped; continue; fi
  # Ten types: a million entries make 100,000 per type directory.
  types=$(( n >= 100000 ? n / 100000 : 1 ))
  python3 "$repo/bench/gen_manifest.py" "$n" "$work/m.yml" "$types"
  cache=$work/cache-$n
  first=$(mount_once "$cache" --manifest "$work/m.yml")
  pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$mnt/.kpackfs/status.json")
  mem_first=$(rss "$pid")
  "$kp" umount "$mnt"
  second=$(mount_once "$cache" --manifest "$work/m.yml")
  pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$mnt/.kpackfs/status.json")
  mem_second=$(rss "$pid")
  dir=$(ls "$mnt" | grep -m1 '^debian')
  t0=$(now); names=$(ls "$mnt/$dir" | wc -l); t1=$(now)
  ls_secs=$(echo "$t1 - $t0" | bc)
  t0=$(now); lines=$(ls -l "$mnt/$dir" | wc -l); t1=$(now)
  lsl_secs=$(echo "$t1 - $t0" | bc)
  mem_after_ls=$(rss "$pid")
  "$kp" umount "$mnt"
  printf '%8d entries (%s MiB of YAML): first mount %.2fs (%s)\n' "$n" "$(( $(stat -c %s "$work/m.yml") >> 20 ))" "$first" "$mem_first"
  printf '%8s          second mount %.2fs (%s)\n' "" "$second" "$mem_second"
  printf '%8s          ls %s/ (%d names) %.2fs; ls -l (%d lines) %.2fs (%s)\n' "" "$dir" "$names" "$ls_secs" "$lines" "$lsl_secs" "$mem_after_ls"
  rm -rf "$cache"
done
