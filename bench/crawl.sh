#!/usr/bin/env bash
# The live Debian crawl (7 suites of the real archive, through the host's apt
# mirror): a first crawl into an empty cache, then unchanged re-crawls.
# Prints both times and their ratio (target: re-crawl <= 0.2x the first).
# Usage: bench/crawl.sh [ROUNDS]   (default 3)
set -euo pipefail
rounds=${1:-3}
source "$(dirname "$0")/lib.sh"
work=$(mktemp -d "${TMPDIR:-/var/tmp}/kpackfs-crawlbench.XXXXXX")
trap 'rm -rf "$work"' EXIT
first=(); again=()
for i in $(seq "$rounds"); do
  d="$work/$i"
  t0=$(now); "$kp" crawl debian --lists-dir "$d/lists" --manifest "$d/manifest.yml" --cache-dir "$d/cache" > "$d.first.txt" 2>&1; t1=$(now)
  first+=("$(echo "$t1 - $t0" | bc)")
  t0=$(now); "$kp" crawl debian --lists-dir "$d/lists" --manifest "$d/manifest.yml" --cache-dir "$d/cache" > "$d.again.txt" 2>&1; t1=$(now)
  again+=("$(echo "$t1 - $t0" | bc)")
  printf 'round %d: first %.2fs (%s)  re-crawl %.2fs (%s)\n' "$i" "${first[-1]}" "$(grep -o '[0-9]* requests.*' "$d.first.txt")" "${again[-1]}" "$(grep -o '[0-9]* requests.*' "$d.again.txt")"
done
f=$(median "${first[@]}"); a=$(median "${again[@]}")
printf '\nmedian: first crawl %.2fs, unchanged re-crawl %.2fs, ratio %.3f (target <= 0.2)\n' "$f" "$a" "$(echo "$a / $f" | bc -l)"
grep -E '^  debian' "$work/1.first.txt"
