#!/usr/bin/env bash
# Ubuntu kernels built with Ubuntu's own compilers, through the mount.
#
# 1. What the archive holds, read by apt itself against the suites the
#    archive serves (bench/archive_kernels.py --distro ubuntu), and a fresh
#    crawl of the shipped Ubuntu sources: the held/found/missed tables.
# 2. The kernels to build: the newest of every flavour in every release
#    (over its pockets), and every kernel of the newest LTS release.
# 3. Each one built with the plain line
#      make -C <mount>/ubuntu/<name>/$(cat BUNDLE_BUILD_DIR) M=$PWD
#    inside a minimal chroot of its own release (mmdebstrap from the same
#    archive, the shipped Ubuntu keyring) that sees the mount, with the
#    compiler its config names (CONFIG_CC_VERSION_TEXT, else
#    CONFIG_GCC_VERSION, else the release's default), installed in the
#    chroot from the archive. Pass: make succeeds and the module's vermagic
#    starts with the release apt names.
#
# Resumable: results go to $state/results.tsv and a kernel with a result is
# not built again (delete the file to start over); the time of every run is
# added up in $state/elapsed. Writes the tables to $state/coverage-ubuntu.md
# and into docs/coverage.md's Ubuntu section (or $1).
# Usage (as root): bench/ubuntu_builds.sh [OUT.md]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
state=${KPACKFS_UBUNTU_DIR:-/var/cache/kpackfs-ubuntu-coverage}
mkdir -p "$state"
mnt="$state/mnt"
keyring="$repo/kernel-package-lists/keys/ubuntu-archive-keyring.gpg"
archive=$(python3 -c "import sys; sys.path.insert(0, '$repo/bench'); import archive_kernels as a; print(a.ubuntu_bases()[0])")
started=$(now)

cleanup() {
  for root in "$state"/chroot/*; do
    [ -d "$root" ] || continue
    umount -l "$root/kernels" 2>/dev/null || true
    umount -l "$root/proc" 2>/dev/null || true
  done
  "$kp" umount --lazy "$mnt" 2>/dev/null || true
}
trap cleanup EXIT

# 1. A fresh crawl of the shipped Ubuntu sources (amd64: the ports archive is
#    not reachable here), and apt's own reading of the archive.
if [ ! -s "$state/manifest.yml" ] || [ "${RECRAWL:-0}" = 1 ]; then
  sel=$("$kp" crawl --help >/dev/null; python3 - "$repo" <<'EOF'
import re, sys
text = open(sys.argv[1] + "/kernel-package-lists/sources.yml").read()
print(" ".join(re.findall(r"^- name: (ubuntu-[a-z]+)\s*$", text, re.M)))
EOF
)
  t0=$(now)
  "$kp" crawl $sel --lists-dir "$state/lists" --manifest "$state/manifest.yml" --cache-dir "$state/crawl-cache" \
    | tail -1 | tee "$state/crawl.txt" || true
  echo "crawl took $(echo "$(now) - $t0" | bc) s" >>"$state/crawl.txt"
fi
"$kp" list --all --json --manifest "$state/manifest.yml" >"$state/manifest.json"
held_status=0
python3 "$repo/bench/archive_kernels.py" --distro ubuntu --manifest-json "$state/manifest.json" \
  --work "$state/apt" --json "$state/held.json" --markdown "$state/held.md" >"$state/held.txt" || held_status=$?
tail -n +1 "$state/held.txt" | head -3

# 2. Which kernels to build.
python3 - "$state/held.json" "$state/manifest.json" >"$state/kernels.tsv" <<'EOF'
import json, re, sys
held = json.load(open(sys.argv[1]))["rows"]
served = {e["name"] for e in json.load(open(sys.argv[2])) if e.get("state") == "served"}
key = lambda name: tuple(int(x) for x in re.findall(r"\d+", name.split("~")[0])[:4])
release_of = lambda suite: suite.split("-")[0]
# LTS releases are the even years' .04 (the Release file's Version field).
version = {release_of(r["suite"]): r["version"] for r in held if r.get("version")}
lts = [rel for rel, v in version.items() if re.fullmatch(r"\d*[02468]\.04", v)]
newest_lts = max(lts, key=lambda rel: float(version[rel])) if lts else None
pick, every = {}, []
for r in held:
    rel = release_of(r["suite"])
    for name, flavour in r["flavours"].items():
        if name not in served:
            continue
        if (rel, flavour) not in pick or key(name) > key(pick[(rel, flavour)]):
            pick[(rel, flavour)] = name
        if rel == newest_lts:
            every.append((rel, name))
out = {}
for (rel, flavour), name in pick.items():
    out[(rel, name)] = f"newest {flavour}"
for rel, name in every:
    out.setdefault((rel, name), f"{rel} (newest LTS)")
for (rel, name), why in sorted(out.items(), key=lambda kv: (float(version.get(kv[0][0], 0) or 0), kv[0][1])):
    print(f"{rel}\t{name}\t{why}")
EOF
echo "$(wc -l <"$state/kernels.tsv") kernels to build"

# 3. The mount, the chroots, the builds.
mkdir -p "$mnt"
mountpoint -q "$mnt" || "$kp" mount "$mnt" --manifest "$state/manifest.yml" --cache-dir "$state/cache" \
  --cache-size 40G --crawl-interval off >/dev/null

libelf_for() { case "$1" in xenial|bionic|focal|jammy) echo libelf1 ;; *) echo libelf1t64 ;; esac; }
default_gcc() { case "$1" in xenial) echo gcc-5 ;; bionic) echo gcc-7 ;; focal) echo gcc-9 ;; jammy) echo gcc-11 ;;
  noble) echo gcc-13 ;; *) echo gcc-14 ;; esac; }
make_chroot() { # make_chroot RELEASE: 0 when the chroot is there
  local root="$state/chroot/$1"
  if [ ! -x "$root/usr/bin/make" ]; then
    echo "making a $1 chroot (mmdebstrap)…"
    rm -rf "$root"; mkdir -p "$state/chroot"
    # essential + what a module build needs: the apt variant pulls in
    # systemd on xenial, whose postinst fails in a chroot.
    # xenial's essential set configures systemd, whose postinst fails under
    # mmdebstrap (chfn: PAM critical error): debootstrap orders it right.
    mmdebstrap --variant=essential --include="apt,make,libc6-dev,$(libelf_for "$1"),kmod,bc" --keyring="$keyring" \
      "$1" "$root" "deb $archive $1 main universe" "deb $archive $1-updates main universe" \
      "deb $archive $1-security main universe" >"$state/chroot-$1.log" 2>&1 ||
    { [ -e "/usr/share/debootstrap/scripts/$1" ] && rm -rf "$root" &&
      debootstrap --variant=minbase --include="make,libc6-dev,$(libelf_for "$1"),kmod,bc" --keyring="$keyring" \
        "$1" "$root" "$archive" >>"$state/chroot-$1.log" 2>&1 &&
      printf 'deb %s %s main universe\ndeb %s %s-updates main universe\ndeb %s %s-security main universe\n' \
        "$archive" "$1" "$archive" "$1" "$archive" "$1" >"$root/etc/apt/sources.list"; } || return 1
  fi
  mkdir -p "$root/kernels" "$root/work"
  mountpoint -q "$root/kernels" || mount --bind "$mnt" "$root/kernels"
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
}
compiler_of() { # compiler_of CONFIG RELEASE -> a gcc-N package name
  local text ver
  text=$(grep -m1 '^CONFIG_CC_VERSION_TEXT=' "$1" 2>/dev/null || true)
  if [[ "$text" =~ gcc-([0-9]+) ]]; then echo "gcc-${BASH_REMATCH[1]}"; return; fi
  if [[ "$text" =~ \)\ ([0-9]+)\. ]]; then
    ver=${BASH_REMATCH[1]}; [ "$ver" -ge 5 ] && { echo "gcc-$ver"; return; }
  fi
  ver=$(grep -m1 '^CONFIG_GCC_VERSION=' "$1" 2>/dev/null | cut -d= -f2 || true)
  if [ -n "$ver" ] && [ "$ver" -gt 0 ]; then
    local major=$((ver / 10000)); [ "$major" -ge 5 ] && { echo "gcc-$major"; return; }
  fi
  default_gcc "$2"
}

touch "$state/results.tsv"
while IFS=$'\t' read -r release name why; do
  grep -q "^$release	$name	" "$state/results.tsv" && continue
  if ! make_chroot "$release"; then
    printf '%s\t%s\t%s\t-\tFAILED: no %s chroot (%s)\t-\t-\n' "$release" "$name" "$why" "$release" \
      "$(grep -E '^E:' "$state/chroot-$release.log" | head -1 | cut -c1-120)" >>"$state/results.tsv"
    continue
  fi
  root="$state/chroot/$release"
  tree="$mnt/ubuntu/$name"
  t0=$(now)
  if ! uname_=$(cat "$tree/BUNDLE_UNAME" 2>/dev/null); then
    cause=$(grep -F "bundle ubuntu/$name:" "$state/cache/kpackfs.log" | tail -1 | sed 's/.*bundle [^:]*: //' | cut -c1-160)
    printf '%s\t%s\t%s\t-\tFAILED: the bundle did not build (%s)\t-\t-\n' "$release" "$name" "$why" "${cause:-EIO}" >>"$state/results.tsv"
    continue
  fi
  cc=$(compiler_of "$tree/.config" "$release")
  if [ ! -x "$root/usr/bin/$cc" ]; then
    chroot "$root" sh -c "apt-get -q -q update && DEBIAN_FRONTEND=noninteractive apt-get -q -q install -y --no-install-recommends $cc" \
      >>"$state/chroot-$release.log" 2>&1 || true
  fi
  if [ ! -x "$root/usr/bin/$cc" ]; then
    printf '%s\t%s\t%s\t%s\tFAILED: %s is not in the %s archive\t-\t-\n' "$release" "$name" "$why" "$cc" "$cc" "$release" >>"$state/results.tsv"
    continue
  fi
  # The plain make line; `gcc` is the kernel's compiler, as on a host of that release.
  rm -rf "$root/work"; mkdir -p "$root/work"; write_hello "$root/work"
  mkdir -p "$root/usr/local/bin"; ln -sf "/usr/bin/$cc" "$root/usr/local/bin/gcc"; ln -sf "/usr/bin/$cc" "$root/usr/local/bin/cc"
  ok=0
  chroot "$root" sh -c "cd /work && make -C /kernels/ubuntu/$name/\$(cat /kernels/ubuntu/$name/BUNDLE_BUILD_DIR) M=/work" \
    >"$state/build-$name.log" 2>&1 || ok=$?
  secs=$(printf '%.1f' "$(echo "$(now) - $t0" | bc)")
  vermagic=$( [ -f "$root/work/hello.ko" ] && chroot "$root" modinfo -F vermagic /work/hello.ko 2>/dev/null || echo "-")
  if [ "$ok" = 0 ] && [[ "$vermagic" == "$uname_ "* ]]; then
    result=ok
  else
    result="FAILED: $(grep -E 'error|Error|No such file' "$state/build-$name.log" | head -1 | cut -c1-160 | tr '\t|' '  ')"
  fi
  printf '%-10s %-40s %-8s %s\n' "$release" "$name" "$cc" "$result"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$release" "$name" "$why" "$cc" "$result" "$vermagic" "$secs" >>"$state/results.tsv"
done <"$state/kernels.tsv"

this_run=$(printf '%.0f' "$(echo "$(now) - $started" | bc)")
took=$(( $(cat "$state/elapsed" 2>/dev/null || echo 0) + this_run ))
echo "$took" >"$state/elapsed"
python3 - "$state" "$took" >"$state/coverage-ubuntu.md" <<'EOF'
import sys, collections
state, took = sys.argv[1], sys.argv[2]
rows = [l.rstrip("\n").split("\t") for l in open(f"{state}/results.tsv") if l.strip()]
ok = sum(1 for r in rows if r[4] == "ok")
import datetime
print("## Ubuntu\n")
print(f"Generated by `bench/ubuntu_builds.sh` on {datetime.date.today()} against the live Ubuntu archive (amd64; the ports archive is not reachable here: arm64 is tested on loopback, `tests/ubuntu.rs`).\n")
print("### Kernels held by the archive, found by kpackfs\n")
print("What the archive holds is read by apt itself (`bench/archive_kernels.py --distro ubuntu`: a private apt configuration per suite and pocket, apt downloads and verifies the signed indexes, `apt-cache dumpavail` reads them back). The suites come from the archive, not from our sources. A kernel is a release `x.y.z-abi-flavour` with an image package and a headers package in the same suite and pocket; it is found when the crawl's manifest has an entry of that name holding apt's digest of the headers package (the name adds `~XX.YY` for a backport).\n")
print(open(f"{state}/held.md").read())
print(f"\n### Module builds with Ubuntu's compilers\n")
print(f"The newest kernel of every flavour in every release, and every kernel of the newest LTS, each built through the mount with `make -C <mount>/ubuntu/<name>/$(cat BUNDLE_BUILD_DIR) M=$PWD` in a minimal chroot of its release (mmdebstrap from the same archive with the shipped keyring; debootstrap for xenial, whose essential set does not configure under mmdebstrap) with the compiler its config names. Pass: make succeeds and vermagic starts with the release. The whole run took {int(took)//60} min {int(took)%60} s on two cores, summed over its invocations (the crawl, apt's reading of 30 suites, downloads, chroots and compiler installs included; it resumes where it stopped).\n")
print(f"**{ok} of {len(rows)} built.**\n")
by = collections.Counter(r[0] for r in rows)
print("| release | kernel | why | compiler | result | vermagic | time |\n|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | `{r[1]}` | {r[2]} | {r[3]} | {r[4]} | `{r[5]}` | {r[6]} s |")
EOF
replace_section "${1:-$repo/docs/coverage.md}" ubuntu "$state/coverage-ubuntu.md"
echo "$(grep -c '	ok	' "$state/results.tsv" || true) of $(wc -l <"$state/results.tsv") built; tables in $state/coverage-ubuntu.md (${took}s in all)"
exit "$held_status"
