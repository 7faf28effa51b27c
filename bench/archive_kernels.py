#!/usr/bin/env python3
"""Which kernels does the Debian archive hold, and did a kpackfs crawl find them?

An independent reading: apt itself downloads and verifies each suite's signed
index (a private apt configuration per suite and architecture, pointed at the
host's own mirror; the host's apt sources are never changed), and a kernel is
defined here by what the archive ships for it, not by kpackfs's rule:

    a kernel is a release <uname> for which the suite has an image package
    (linux-image-<uname> or linux-image-<uname>-unsigned) and a headers
    package (linux-headers-<uname>), where <uname> starts with x.y.z
    (which leaves out metapackages such as linux-image-amd64 or
    linux-headers-6.12-amd64).

kpackfs's crawler never reads image packages. A kernel counts as found when
the kpackfs manifest (`kpackfs list --json`) has a debian entry of that name
holding a package with the same sha256 as apt's linux-headers-<uname>.

Usage: archive_kernels.py (--manifest-json FILE | --listing FILE) [--suites ...] [--arches ...]
                          [--work DIR] [--json OUT] [--markdown OUT]
Prints one line per suite and architecture; exits 1 if any kernel is missed.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys

SUITES = ["bookworm", "bookworm-updates", "bookworm-security", "trixie", "trixie-security",
          "bullseye", "bullseye-security"]
ARCHES = ["amd64", "arm64"]
RELEASE = re.compile(r"^\d+\.\d+\.\d+")


def host_mirrors():
    """The host's Debian mirror URIs from apt's own configuration: (archive, security)."""
    uris = []
    for path in glob.glob("/etc/apt/sources.list.d/*.sources"):
        for line in open(path, encoding="utf-8", errors="replace"):
            if line.startswith("URIs:"):
                uris += line.split()[1:]
    for path in ["/etc/apt/sources.list"] + glob.glob("/etc/apt/sources.list.d/*.list"):
        if os.path.exists(path):
            for line in open(path, encoding="utf-8", errors="replace"):
                words = [w for w in line.split() if "://" in w]
                if line.startswith("deb ") and words:
                    uris.append(words[0])
    archive = os.environ.get("KPACKFS_DEBIAN_MIRROR") or next(
        (u for u in uris if u.rstrip("/").endswith("/debian")), None)
    security = os.environ.get("KPACKFS_SECURITY_MIRROR") or next(
        (u for u in uris if u.rstrip("/").endswith("/debian-security")), None)
    if not archive:
        sys.exit("no Debian mirror in apt's configuration (set KPACKFS_DEBIAN_MIRROR)")
    if not security:
        security = archive.rstrip("/") + "-security"
    return archive.rstrip("/"), security.rstrip("/")


def apt_packages(work, suite, arch, uri, keyring):
    """Every stanza apt holds for one suite and architecture, read by apt-cache."""
    d = os.path.join(work, f"{suite}-{arch}")
    for sub in ["lists/partial", "cache/archives/partial", "etc/preferences.d"]:
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    with open(os.path.join(d, "etc/sources.list"), "w") as f:
        f.write(f"deb [arch={arch} signed-by={keyring}] {uri} {suite} main\n")
    opts = [
        "-o", f"Dir::Etc::sourcelist={d}/etc/sources.list",
        "-o", "Dir::Etc::sourceparts=-",
        "-o", f"Dir::Etc::preferencesparts={d}/etc/preferences.d",
        "-o", f"Dir::State::Lists={d}/lists",
        "-o", f"Dir::Cache={d}/cache",
        "-o", "Dir::State::status=/dev/null",
        "-o", f"APT::Architecture={arch}",
        "-o", f"APT::Architectures::={arch}",
        "-o", "Acquire::Languages=none",
        "-o", "APT::Sandbox::User=root",
        "-o", "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false",
    ]
    subprocess.run(["apt-get", "-q", "-q", "update"] + opts, check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run(["apt-cache"] + opts + ["dumpavail"], check=True, capture_output=True,
                         text=True).stdout
    stanzas = []
    for block in out.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if line and not line[0].isspace() and ":" in line:
                k, v = line.split(":", 1)
                fields[k] = v.strip()
        if "Package" in fields:
            stanzas.append(fields)
    return stanzas


def held_kernels(stanzas, arch):
    """uname -> (headers file name, sha256) for each kernel the suite holds."""
    images, headers = set(), {}
    for s in stanzas:
        name = s["Package"]
        if name.startswith("linux-image-"):
            u = name[len("linux-image-"):]
            images.add(u[: -len("-unsigned")] if u.endswith("-unsigned") else u)
        elif name.startswith("linux-headers-") and s.get("Architecture") == arch:
            headers[name[len("linux-headers-"):]] = (s["Filename"].rsplit("/", 1)[-1], s["SHA256"])
    return {u: h for u, h in headers.items() if u in images and RELEASE.match(u)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest-json", help="`kpackfs list --json` output: found = same name and sha256")
    ap.add_argument("--listing", help="a file of names (`ls MNT/debian`): found = the name is listed")
    ap.add_argument("--suites", nargs="*", default=SUITES)
    ap.add_argument("--arches", nargs="*", default=ARCHES)
    ap.add_argument("--work", default="/var/tmp/kpackfs-archive-kernels")
    ap.add_argument("--keyring", default=os.path.join(os.path.dirname(__file__),
                                                      "../kernel-package-lists/keys/debian-archive-keyring.gpg"))
    ap.add_argument("--json", help="write the per-suite result here")
    ap.add_argument("--markdown", help="write the table here")
    args = ap.parse_args()

    if bool(args.manifest_json) == bool(args.listing):
        sys.exit("give one of --manifest-json and --listing")
    found_shas, listed = {}, set()
    if args.manifest_json:
        data = json.load(open(args.manifest_json))
        # `kpackfs list --json` is an array of entries; an id -> entry map works too.
        for entry in (data.values() if isinstance(data, dict) else data):
            if entry.get("type") == "debian" and entry.get("name"):
                found_shas.setdefault(entry["name"], set()).update(
                    p.get("sha256") for p in entry["packages"] if p.get("sha256"))
    else:
        listed = {line.strip() for line in open(args.listing) if line.strip()}

    def is_found(uname, sha):
        return uname in listed if args.listing else sha in found_shas.get(uname, ())

    archive, security = host_mirrors()
    keyring = os.path.abspath(args.keyring)
    results, missed_any = [], False
    for suite in args.suites:
        uri = security if suite.endswith("-security") else archive
        for arch in args.arches:
            held = held_kernels(apt_packages(args.work, suite, arch, uri, keyring), arch)
            found = sorted(u for u, (_, sha) in held.items() if is_found(u, sha))
            missed = sorted(set(held) - set(found))
            missed_any |= bool(missed)
            results.append({"suite": suite, "arch": arch, "held": len(held), "found": len(found),
                            "missed": missed, "kernels": sorted(held)})
            print(f"{suite:<20} {arch:<6} held {len(held):>3}  found {len(found):>3}  missed {len(missed)}"
                  + (f": {' '.join(missed)}" if missed else ""))
    if args.json:
        json.dump(results, open(args.json, "w"), indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("| suite | arch | held (apt) | found (kpackfs) | missed |\n|---|---|---:|---:|---|\n")
            for r in results:
                f.write(f"| {r['suite']} | {r['arch']} | {r['held']} | {r['found']} | "
                        f"{', '.join(r['missed']) or '—'} |\n")
    sys.exit(1 if missed_any else 0)


if __name__ == "__main__":
    main()
