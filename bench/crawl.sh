#!/usr/bin/env bash
# Live crawls of the real archives: Debian (7 suites, through the host's apt
# mirror), Ubuntu (every release the shipped sources name, amd64: the ports
# archive is not reachable here) and both together. Each set: a first crawl
# into an empty cache, then an unchanged re-crawl; the time of each, their
# ratio (target: re-crawl <= 0.2x the first) and the memory peak (VmHWM, by
# GNU time) of the first.
# Usage: bench/crawl.sh [ROUNDS] [SETS]   (default 3 rounds; sets "debian ubuntu both")
set -euo pipefail
rounds=${1:-3}
sets=${2:-debian ubuntu both}
source "$(dirname "$0")/lib.sh"
work=$(mktemp -d "${TMPDIR:-/var/tmp}/kpackfs-crawlbench.XXXXXX")
trap 'rm -rf "$work"' EXIT
ubuntu=$(grep -oE '^- name: ubuntu-[a-z]+$' "$repo/kernel-package-lists/sources.yml" | sed 's/- name: //' | tr '\n' ' ')
selectors() {
  case "$1" in
    debian) echo debian ;;
    ubuntu) echo "$ubuntu" ;;
    both) echo "debian $ubuntu" ;;
  esac
}
for set in $sets; do
  first=(); again=(); peak=()
  for i in $(seq "$rounds"); do
    d="$work/$set-$i"
    run() { /usr/bin/time -f '%M' -o "$d.$1.mem" "$kp" crawl $(selectors "$set") --lists-dir "$d/lists" \
      --manifest "$d/manifest.yml" --cache-dir "$d/cache" >"$d.$1.txt" 2>&1 || true; }
    t0=$(now); run first; t1=$(now); first+=("$(echo "$t1 - $t0" | bc)"); peak+=("$(cat "$d.first.mem")")
    t0=$(now); run again; t1=$(now); again+=("$(echo "$t1 - $t0" | bc)")
    printf '%-6s round %d: first %.2fs (%s, peak %d MiB)  re-crawl %.2fs (%s)\n' "$set" "$i" "${first[-1]}" \
      "$(grep -o '[0-9]* requests.*' "$d.first.txt")" "$(($(cat "$d.first.mem") / 1024))" "${again[-1]}" \
      "$(grep -o '[0-9]* requests.*' "$d.again.txt")"
  done
  f=$(median "${first[@]}"); a=$(median "${again[@]}"); p=$(median "${peak[@]}")
  printf '%-6s median: first crawl %.2fs, unchanged re-crawl %.2fs, ratio %.3f (target <= 0.2), peak %d MiB; %s\n\n' \
    "$set" "$f" "$a" "$(echo "$a / $f" | bc -l)" "$((${p%.*} / 1024))" "$(grep -o '[0-9]* entries in the crawl result' "$work/$set-1.first.txt")"
done
