#!/usr/bin/env bash
# One first mount of MANIFEST by the kpackfs binary KPACKFS into an empty
# cache: seconds until `kpackfs mount` returns (the mount is ready), the
# daemon's peak memory, and how many entries it parsed (status.json).
# Run it alternately for two binaries to compare them in the same run.
# Usage: bench/first_mount.sh KPACKFS MANIFEST
#   CRAWL=FILE   put FILE in the cache as the last crawl result first (the
#                mount then merges it onto MANIFEST, or onto its index beside it)
#   RELOAD=FILE  then put FILE there as a new crawl result, send SIGHUP and
#                time the reload (until its "manifest reloaded" log line)
set -euo pipefail
kp=$1 manifest=$2
# Not under /tmp: a mount left there by a killed run is walked by tests that scan it.
work=$(mktemp -d "${TMPDIR:-/var/tmp}/kpackfs-first-mount.XXXXXX"); mkdir -p "$work/mnt"
cleanup() { "$kp" umount "$work/mnt" 2>/dev/null || umount -l "$work/mnt" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
if [ -n "${CRAWL:-}" ]; then mkdir -p "$work/cache/crawl"; cp "$CRAWL" "$work/cache/crawl/manifest.yml"; fi
t0=$(date +%s.%N)
"$kp" mount "$work/mnt" --manifest "$manifest" --cache-dir "$work/cache" --crawl-interval off --no-apt-mirrors >/dev/null
t1=$(date +%s.%N)
status=$work/mnt/.kpackfs/status.json
pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$status")
hwm=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$pid/status")
parsed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifest_entries_parsed"])' "$status")
printf '%s: first mount %.2fs, daemon VmHWM %s MiB, %s entries parsed\n' "$kp" "$(echo "$t1 - $t0" | bc)" "$hwm" "$parsed"
if [ -n "${RELOAD:-}" ]; then
  # A reload that adds no bundle logs no "manifest reloaded" at info level:
  # wait for the index it builds (or the refusal).
  log=$work/cache/kpackfs.log; before=$(grep -c 'indexed the manifest\|reload: keeping' "$log" || true)
  mkdir -p "$work/cache/crawl"; cp "$RELOAD" "$work/cache/crawl/manifest.yml"
  t0=$(date +%s.%N); kill -HUP "$pid"
  until [ "$(grep -c 'indexed the manifest\|reload: keeping' "$log" || true)" -gt "$before" ]; do sleep 0.05; done
  t1=$(date +%s.%N)
  grep -q 'reload: keeping' "$log" && { echo "reload failed: $(grep 'reload: keeping' "$log")" >&2; exit 1; }
  hwm=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$pid/status")
  parsed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifest_entries_parsed"])' "$status")
  printf '%s: reload %.2fs, daemon VmHWM %s MiB, %s entries parsed in all, %s bytes of index; %s\n' "$kp" \
    "$(echo "$t1 - $t0" | bc)" "$hwm" "$parsed" "$(stat -c %s "$work/cache/manifest/served.idx")" \
    "$(grep 'indexed the manifest' "$log" | tail -1 | sed 's/.*indexed the manifest: //')"
fi
