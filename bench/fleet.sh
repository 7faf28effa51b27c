#!/usr/bin/env bash
# The shared bundle tier (issue 12), against the same work without it, in
# one run, on loopback: a package mirror (python's http.server over the
# packages, fetched once from the Debian archive) and an S3-compatible
# store (moto, from target/ci-venv: `bash .ci/run` installs it).
#
#   fleet    4 mounts (4 cache directories) build the hello module against
#            the same 12 bookworm kernels, each host in its own shuffled
#            order, all hosts at once; without the tier, then with it (a
#            fresh bucket). Package downloads (the mirror's log), bundle
#            builds (status), wall time; also the bundle phase alone (every
#            host reading every kernel's BUNDLE_UNAME, no module build).
#   hosts    the fleet as four CPU-limited hosts (cgroups, HOST_CPU of a
#            core each, default 0.5): per-host wall time, CPU seconds,
#            builds, bundles from the tier and bytes downloaded.
#   cold     one cold bundle: installed from the tier vs built from packages
#            (median of ROUNDS, fresh cache each time).
#   mix      the fleet again with kernels built from source added to the
#            12 (Debian's linux-source tarballs and the configs of three
#            kernels, served as minikube entries from the loopback mirror):
#            the kind of bundle that takes minutes, where one build per
#            fleet matters most. SOURCE_KERNELS=1-3 (default 3).
#   hostsmix the four CPU-limited hosts with that mix (not in the default:
#            each host's source builds take minutes at half a core).
#   publish  `kpackfs publish` of every Debian bundle of the shipped manifest
#            into an empty bucket vs `kpackfs bundle` of each in a loop
#            (both from the same warm loopback mirror).
#
# Usage (as root): bench/fleet.sh [ROUNDS]   (default 5)
#   SECTIONS="fleet hosts cold publish"   which parts to run (default: all)
#   TIER=s3|file   the fleet's tier: moto's S3 on loopback (a Python process
#                  on the same 2 cores as the hosts), or a shared directory
#                  (file://, as an NFS share would be)
#   MIRROR_RATE=BYTES   the loopback mirror sends each response at this rate
#                  (bench/rate_mirror.py), standing in for a real mirror's
#                  bandwidth; default: python's http.server at loopback speed
#   PREP=DIR       where the packages fetched from the archive are kept
#                  between runs (default target/bench-prep)
set -euo pipefail
shopt -s inherit_errexit
rounds=${1:-5}
sections=${SECTIONS:-fleet hosts cold mix publish}
want() { [[ " $sections " == *" $1 "* ]]; }
source "$(dirname "$0")/lib.sh"
moto_bin="$repo/target/ci-venv/bin/moto_server"
[ -x "$moto_bin" ] || { echo "bench: $moto_bin missing (bash .ci/run installs it)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/var/tmp}/kpackfs-fleet.XXXXXX")
mounts=(); pids=()
cleanup() {
  for m in "${mounts[@]}"; do "$kp" umount --lazy "$m" >/dev/null 2>&1 || umount -l "$m" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
ratio() { echo "scale=3; $1 / $2" | bc -l; }

# --- the packages, once, from the Debian archive (through the host's mirror) ----
"$kp" list --json --cache-dir "$work/none" >"$work/manifest.json"
python3 - "$work/manifest.json" >"$work/kernels.txt" <<'EOF'
import json, re, sys
rows = json.load(open(sys.argv[1]))
names = [r["name"] for r in rows if r["type"] == "debian" and re.fullmatch(r"6\.1\.0-\d+-(amd64|cloud-amd64)", r["name"] or "")]
names.sort(key=lambda n: (int(n.split("-")[1]), n))
print("\n".join(names[-12:]))
EOF
mapfile -t kernels <"$work/kernels.txt"
echo "kernels: ${kernels[*]}"
# What the hosts read (TYPE/NAME under the mount) and what every mount gets.
debian_paths() { paths=("${kernels[@]/#/debian/}"); fleet_args=(); }
debian_paths
npkgs=$(python3 - "$work/manifest.json" "${kernels[@]}" <<'EOF'
import json, sys
want = set(sys.argv[2:])
print(len({p["url"] for r in json.load(open(sys.argv[1])) if r["type"] == "debian" and r["name"] in want for p in r["packages"]}))
EOF
)
want publish && mapfile -t all_debian < <(python3 -c '
import json, sys
print("\n".join(r["name"] for r in json.load(open(sys.argv[1])) if r["type"] == "debian"))' "$work/manifest.json")
prefetch=("${kernels[@]}"); want publish && prefetch=("${all_debian[@]}")
echo "fetching the packages of ${#prefetch[@]} bundles once…"
prep=${PREP:-$repo/target/bench-prep}
mkdir -p "$prep/done"
for k in "${prefetch[@]}"; do
  [ -e "$prep/done/$k" ] && continue
  if "$kp" bundle "$k" --cache-dir "$prep" -o /dev/null >/dev/null 2>&1; then touch "$prep/done/$k"
  else echo "  $k: not available" >&2; fi
done
# The mirror: every package at its canonical path.
python3 - "$work/manifest.json" "$prep/packages/sha256" "$work/mirror" <<'EOF'
import json, os, shutil, sys
rows, store, out = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
for r in rows:
    for p in r["packages"]:
        src = os.path.join(store, p.get("sha256") or "-")
        if not os.path.exists(src):
            continue
        dest = os.path.join(out, p["url"].split("://", 1)[1].split("/", 1)[1])
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if not os.path.exists(dest):
            try:
                os.link(src, dest)
            except OSError:  # another filesystem
                shutil.copyfile(src, dest)
EOF
port=$((20000 + RANDOM % 20000))
if [ -n "${MIRROR_RATE:-}" ]; then
  (cd "$work/mirror" && exec python3 "$repo/bench/rate_mirror.py" "$port" "$MIRROR_RATE" 2>"$work/mirror.log" >/dev/null) & pids+=($!)
  echo "mirror: $MIRROR_RATE bytes/s per response"
else
  (cd "$work/mirror" && exec python3 -m http.server "$port" --bind 127.0.0.1 2>"$work/mirror.log" >/dev/null) & pids+=($!)
fi
s3port=$((port + 1))
"$moto_bin" -H 127.0.0.1 -p "$s3port" >/dev/null 2>&1 & pids+=($!)
sleep 2
curl -s -X PUT "http://127.0.0.1:$s3port/fleet" >/dev/null
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 \
  AWS_ENDPOINT_URL="http://127.0.0.1:$s3port" AWS_ALLOW_HTTP=true
mapfile -t mirrors < <(debian_mirror_args "$port")
mirror_args=(--no-apt-mirrors "${mirrors[@]}")
downloads() { grep -cE '"GET [^ ]*(\.deb|/source/[^ ]*) ' "$work/mirror.log" || true; }
write_hello "$work/hello-src"

# One host: every kernel in a shuffled order (seeded per host), module builds or BUNDLE_UNAME only.
host() { # host MNT SEED MODE
  local mnt=$1 seed=$2 mode=$3 k
  for k in $(printf '%s\n' "${paths[@]}" | shuf --random-source=<(yes "$seed")); do
    local tree="$mnt/$k"
    if [ "$mode" = modules ]; then
      local w; w="$work/hello-$(basename "$mnt")-${k//\//-}"; cp -r "$work/hello-src" "$w"
      make -s -C "$tree/$(cat "$tree/BUNDLE_BUILD_DIR")" M="$w" >/dev/null 2>&1 || echo "FAILED $k on host $seed" >&2
    else
      cat "$tree/BUNDLE_UNAME" >/dev/null
    fi
  done
}

# fleet RUN MODE REMOTE: 4 hosts at once; prints "seconds downloads builds installs"
fleet() {
  local run=$1 mode=$2 remote=$3 i hostpids=()
  local before; before=$(downloads)
  local mnts=()
  for i in 1 2 3 4; do
    local m="$work/$run-mnt$i"; mkdir -p "$m"
    local extra=(); [ -n "$remote" ] && extra=(--remote "$remote")
    "$kp" mount "$m" --cache-dir "$work/$run-cache$i" --crawl-interval off "${mirror_args[@]}" "${fleet_args[@]}" "${extra[@]}" >/dev/null
    mounts+=("$m"); mnts+=("$m")
  done
  local t0; t0=$(now)
  for i in 1 2 3 4; do host "${mnts[$((i - 1))]}" "$i" "$mode" & hostpids+=($!); done
  wait "${hostpids[@]}"
  local secs; secs=$(echo "$(now) - $t0" | bc)
  local builds=0 hits=0 i
  for m in "${mnts[@]}"; do
    builds=$((builds + $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["builds"])' "$m/.kpackfs/status.json")))
    hits=$((hits + $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["remote_hits"])' "$m/.kpackfs/status.json")))
  done
  for m in "${mnts[@]}"; do "$kp" umount "$m" >/dev/null; done
  echo "$secs $(( $(downloads) - before )) $builds $hits"
}

tier_kind=${TIER:-s3}
tier_url() { if [ "$tier_kind" = file ]; then mkdir -p "$work/bucket/$1"; echo "file://$work/bucket/$1"; else echo "s3://fleet/$1"; fi; }

# fleet_pair RUN MODE BUCKET: the fleet without, then with the tier; prints
# both lines and leaves t0 d0 b0 h0 / t1 d1 b1 h1 set.
fleet_pair() {
  read -r t0 d0 b0 h0 < <(fleet "notier$1" "$2" "")
  read -r t1 d1 b1 h1 < <(fleet "tier$1" "$2" "$(tier_url "$3")")
  printf 'without tier: %6.1fs  %3d package downloads  %3d bundle builds\n' "$t0" "$d0" "$b0"
  printf 'with tier:    %6.1fs  %3d package downloads  %3d bundle builds  %3d from the tier\n' "$t1" "$d1" "$b1" "$h1"
}

if want fleet; then
  echo
  echo "== fleet ($tier_kind tier): 4 hosts x ${#kernels[@]} kernels, hello module builds; without, then with the tier =="
  fleet_pair "" modules modules
  echo "wall time ratio $(ratio "$t1" "$t0") (goal <= 0.5)"
  echo "with the tier: downloads per package $(ratio "$d1" "$npkgs") ($npkgs packages), builds per bundle $(ratio "$b1" "${#kernels[@]}") (goal <= 1.1 each)"
  echo "without: downloads per package $(ratio "$d0" "$npkgs"), builds per bundle $(ratio "$b0" "${#kernels[@]}")"
  echo
  echo "== fleet, bundle phase only (every host reads every BUNDLE_UNAME) =="
  fleet_pair 2 uname uname
  echo "wall time ratio $(ratio "$t1" "$t0")"
fi

# --- four CPU-limited hosts (issue 23 item 4) ----------------------------------
# Each host's daemon and builds run in their own cgroup (v1 cpu + cpuacct)
# with HOST_CPU of a core (default 0.5: four hosts make this machine's two
# cores), so a host that skips a build another host did finishes sooner, as
# on a real fleet, and each host's CPU is its own. The mirror and the bucket
# run outside (other machines, on a real fleet).
cg=/sys/fs/cgroup
host_quota=$(echo "${HOST_CPU:-0.5} * 100000 / 1" | bc)
cg_usable() { [ -w "$cg/cpu" ] && [ -w "$cg/cpuacct" ] && [ -e "$cg/cpuacct/cpuacct.usage" ]; }
cg_make() { local c; for c in cpu cpuacct; do mkdir -p "$cg/$c/$1"; done
  echo 100000 >"$cg/cpu/$1/cpu.cfs_period_us"; echo "$host_quota" >"$cg/cpu/$1/cpu.cfs_quota_us"; }
cg_join() { local c; for c in cpu cpuacct; do echo "$BASHPID" >"$cg/$c/$1/cgroup.procs"; done; }
cg_cpu_secs() { awk '{printf "%.1f", $1 / 1e9}' "$cg/cpuacct/$1/cpuacct.usage"; }
# A cgroup's last task may still be exiting right after `wait`: retry a moment.
cg_remove() { local c t; for c in cpu cpuacct; do
  for t in 1 2 3 4 5 6 7 8 9 10; do rmdir "$cg/$c/$1" 2>/dev/null && break; sleep 0.2; done; done; }
metric() { awk -v n="$2" '$1 == n {print $2}' "$1/.kpackfs/metrics"; }

# limited_host RUN I REMOTE: in its cgroup, mount, build every module, report
# "wall builds tier-hits downloaded-bytes".
limited_host() {
  local run=$1 i=$2 remote=$3 m="$work/$1-mnt$2" extra=()
  cg_join "kpackfs-bench-$run-$i"
  mkdir -p "$m"; [ -n "$remote" ] && extra=(--remote "$remote")
  "$kp" mount "$m" --cache-dir "$work/$run-cache$i" --crawl-interval off "${mirror_args[@]}" "${fleet_args[@]}" "${extra[@]}" >/dev/null
  local t0; t0=$(now); host "$m" "$i" modules; local secs; secs=$(echo "$(now) - $t0" | bc)
  local st="$m/.kpackfs/status.json"
  echo "$secs $(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["builds"], s["remote_hits"])' "$st") $(metric "$m" kpackfs_downloaded_bytes_total)"
  "$kp" umount "$m" >/dev/null
}

# limited_fleet RUN REMOTE: the four hosts at once; per-host lines, then
# "wall total-cpu max-host-wall".
limited_fleet() {
  local run=$1 remote=$2 i pids=() t0 total=0 slowest=0
  for i in 1 2 3 4; do cg_make "kpackfs-bench-$run-$i"; mounts+=("$work/$run-mnt$i"); done
  t0=$(now)
  for i in 1 2 3 4; do (limited_host "$run" "$i" "$remote" >"$work/$run-host$i") & pids+=($!); done
  wait "${pids[@]}"
  local secs; secs=$(echo "$(now) - $t0" | bc)
  for i in 1 2 3 4; do
    local wall builds hits bytes cpu; read -r wall builds hits bytes <"$work/$run-host$i"
    cpu=$(cg_cpu_secs "kpackfs-bench-$run-$i"); cg_remove "kpackfs-bench-$run-$i"
    printf '  host %d: %6.1fs wall  %6.1f CPU s  %2d builds  %2d from the tier  %6.1f MiB downloaded\n' \
      "$i" "$wall" "$cpu" "$builds" "$hits" "$(echo "${bytes:-0} / 1048576" | bc -l)" >&2
    total=$(echo "$total + $cpu" | bc); slowest=$(echo "if ($wall > $slowest) $wall else $slowest" | bc)
  done
  echo "$secs $total $slowest"
}

# limited_hosts RUN WHAT: the four limited hosts without, then with the tier.
limited_hosts() {
  local run=$1 what=$2 w0 c0 s0 w1 c1 s1
  echo
  echo "== four hosts of ${HOST_CPU:-0.5} CPU each ($tier_kind tier), $what, hello module builds; without, then with the tier =="
  if cg_usable; then
    echo "without tier:"; read -r w0 c0 s0 < <(limited_fleet "cgnotier$run" "")
    echo "with tier:"; read -r w1 c1 s1 < <(limited_fleet "cgtier$run" "$(tier_url "hosts$run")")
    printf 'without tier: %6.1fs wall (slowest host %.1fs), %6.1f CPU s over the hosts\n' "$w0" "$s0" "$c0"
    printf 'with tier:    %6.1fs wall (slowest host %.1fs), %6.1f CPU s over the hosts\n' "$w1" "$s1" "$c1"
    echo "wall time ratio $(ratio "$w1" "$w0") (goal <= 0.5), host CPU ratio $(ratio "$c1" "$c0")"
  else
    echo "skipped: no writable cgroup v1 cpu and cpuacct controllers under $cg"
  fi
}

want hosts && limited_hosts "" "${#kernels[@]} kernels"

if want cold; then
  echo
  echo "== one cold bundle: from the tier vs built from packages (median of $rounds) =="
  k=${kernels[-1]}
  "$kp" publish "debian/$k" --to s3://fleet/cold --layout id --cache-dir "$work/prep" "${mirror_args[@]}" >/dev/null
  tier=(); built=()
  for r in $(seq "$rounds"); do
    for side in built tier; do
      m="$work/cold-$side-$r"; mkdir -p "$m"
      extra=(); [ "$side" = tier ] && extra=(--remote s3://fleet/cold)
      "$kp" mount "$m" --cache-dir "$work/cold-$side-cache$r" --crawl-interval off "${mirror_args[@]}" "${extra[@]}" >/dev/null; mounts+=("$m")
      t0=$(now); cat "$m/debian/$k/BUNDLE_UNAME" >/dev/null; t=$(echo "$(now) - $t0" | bc)
      "$kp" umount "$m" >/dev/null
      if [ "$side" = tier ]; then tier+=("$t"); else built+=("$t"); fi
    done
  done
  mt=$(median "${tier[@]}"); mb=$(median "${built[@]}")
  printf 'from the tier %.2fs, built from packages %.2fs: ratio %s (goal <= 0.5)\n' "$mt" "$mb" "$(ratio "$mt" "$mb")"
fi

# --- the fleet with kernels built from source in the mix (issue 23 item 4) -----
# Debian's own linux-source tarballs with the configs of the matching
# headers packages (the newest ABI's amd64 and cloud-amd64, the one before's
# amd64; rt needs a patch the tarball lacks) stand in for COS, minikube and
# linuxkit kernels (their hosts are not reachable here): minikube entries
# served from the loopback mirror, beside the same 12 Debian entries, in a
# manifest of their own. SOURCE_KERNELS (1-3, default 3) of them: 3 in 15 is
# kernel-packer's share of kernels with no headers package (19%).
# prepare_mix: mix.yml, and the paths and mount arguments that serve it.
prepare_mix() {
  src="$prep/src"; mkdir -p "$src"
  newest=$(apt-cache depends linux-headers-amd64 | awk '/Depends: linux-headers-/{print $2; exit}')
  newest=${newest#linux-headers-}; abi=${newest%-amd64}
  previous="${abi%-*}-$(( ${abi##*-} - 1 ))"
  flavours=("$abi-amd64" "$abi-cloud-amd64" "$previous-amd64"); flavours=("${flavours[@]:0:${SOURCE_KERNELS:-3}}")
  series=$(echo "$abi" | cut -d. -f1,2)
  mkdir -p "$work/mirror/source"; source_rows=()
  for k in "${flavours[@]}"; do
    version=$(apt-cache show "linux-headers-$k" | awk '/^Version:/{print $2; exit}')
    tarball="linux-source-$version.tar.xz"
    if [ ! -s "$src/$tarball" ]; then
      (cd "$src" && apt-get download -q "linux-source-$series=$version" >/dev/null 2>&1)
      dpkg-deb --fsys-tarfile "$src/linux-source-${series}_${version}"_*.deb |
        tar -xO --wildcards '*/linux-source-*.tar.xz' >"$src/$tarball.part"
      mv "$src/$tarball.part" "$src/$tarball"; rm -f "$src"/*.deb
    fi
    if [ ! -s "$src/config-$k" ]; then
      (cd "$src" && apt-get download -q "linux-headers-$k=$version" >/dev/null 2>&1)
      rm -rf "$src/h" && mkdir "$src/h" && dpkg-deb -x "$src/linux-headers-${k}_${version}"_*.deb "$src/h"
      cp "$src/h/usr/src/linux-headers-$k/.config" "$src/config-$k"; rm -rf "$src/h" "$src"/*.deb
    fi
    ln -f "$src/$tarball" "$src/config-$k" "$work/mirror/source/"
    source_rows+=("source-$k=$tarball=config-$k")
  done
  python3 - "$work/manifest.json" "http://127.0.0.1:$port/source" "$work/mirror/source" \
    "${source_rows[*]}" "${kernels[@]}" >"$work/mix.yml" <<'PYMIX'
import hashlib, json, os, re, sys
rows, base, files, sources = json.load(open(sys.argv[1])), *sys.argv[2:5]
want = set(sys.argv[5:])
def package(url, sha256, size):
    return f"  - url: {url}\n    sha256: {sha256}\n    size: {size}\n"
out = []
for r in rows:
    if r["type"] == "debian" and r["name"] in want:
        out.append(f"{r['id']}:\n  type: debian\n  name: {r['name']}\n  uname: {r['uname']}\n  packages:\n"
                   + "".join(package(p["url"], p["sha256"], p["size"]) for p in r["packages"]))
for row in sources.split():
    name, *parts = row.split("=")
    pkgs, simplified = "", []
    for part in parts:
        data = open(os.path.join(files, part), "rb").read()
        url = f"{base}/{part}"
        pkgs += package(url, hashlib.sha256(data).hexdigest(), len(data))
        simplified.append(re.sub(r"[^A-Za-z0-9._-]", "-", url))
    # kernel-packer's id: sha256 of the sorted simplified URLs (manifest::bundle_id).
    bundle_id = hashlib.sha256("".join(sorted(simplified)).encode()).hexdigest()
    out.append(f"{bundle_id}:\n  type: minikube\n  name: {name}\n  packages:\n" + pkgs)
print("".join(out), end="")
PYMIX
  paths=("${kernels[@]/#/debian/}" "${flavours[@]/#/minikube/source-}"); fleet_args=(--manifest "$work/mix.yml")
}

if want mix; then
  echo
  prepare_mix
  echo "== fleet with kernels from source ($tier_kind tier): 4 hosts x ${#paths[@]} kernels (${#kernels[@]} Debian, ${#flavours[@]} built from Debian's linux-source: ${flavours[*]}), hello module builds; without, then with the tier =="
  fleet_pair 3 modules mix
  echo "wall time ratio $(ratio "$t1" "$t0") (goal <= 0.5), builds per bundle $(ratio "$b1" "${#paths[@]}") with the tier, $(ratio "$b0" "${#paths[@]}") without"
  debian_paths
fi

if want hostsmix; then
  prepare_mix
  limited_hosts mix "${#paths[@]} kernels (${#flavours[@]} from source)"
  debian_paths
fi

if want publish; then
  echo
  echo "== publish every Debian bundle (${#all_debian[@]}) vs kpackfs bundle in a loop =="
  t0=$(now)
  for k in "${all_debian[@]}"; do
    "$kp" bundle "debian/$k" --cache-dir "$work/loop-cache" "${mirror_args[@]}" -o "$work/loop.tgz" >/dev/null 2>&1 || true
  done
  tloop=$(echo "$(now) - $t0" | bc)
  t0=$(now)
  # Exit 1 when some bundle failed (the archive's 404s fail the loop too).
  { "$kp" publish debian/ --to s3://fleet/publish --cache-dir "$work/publish-cache" "${mirror_args[@]}" --layout both \
    2>/dev/null || true; } | tail -1
  tpub=$(echo "$(now) - $t0" | bc)
  printf 'loop %.1fs, publish %.1fs: ratio %s (goal <= 0.6)\n' "$tloop" "$tpub" "$(ratio "$tpub" "$tloop")"
fi
