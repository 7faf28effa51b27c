#!/usr/bin/env python3
"""Which kernels does an archive hold, and did kpackfs find them?

An independent reading: apt itself downloads and verifies each suite's signed
index (a private apt configuration per suite, pocket and architecture; the
host's apt sources are never changed), and a kernel is defined here by what
the archive ships for it, not by kpackfs's rule:

    a kernel is a release <uname> for which the suite has an image package
    (Debian: linux-image-<uname> or linux-image-<uname>-unsigned; Ubuntu:
    linux-image-<uname> or linux-image-unsigned-<uname>) and a headers
    package linux-headers-<uname>, where <uname> starts with x.y.z (which
    leaves out metapackages such as linux-headers-amd64 or
    linux-headers-generic).

kpackfs's crawler never reads image packages. A kernel counts as found when
the kpackfs manifest (`kpackfs list --json`) has an entry of the distribution's
type and of the kernel's name holding a package with apt's sha256 (or sha512,
where the archive publishes only that) for linux-headers-<uname>; or, with
--listing, when the name is listed (`ls MNT/<type>`). The name is the uname
(Debian), plus for Ubuntu `-<arch>` off amd64 and the backport series
`~XX.YY` when the version carries one (docs/manifest.md).

Which suites to read:
  - Debian: the suites below (or --suites), from the host's apt mirror;
  - Ubuntu: what the archive itself serves, never our shipped sources: its
    dists/ listing when the server has one; else every codename Ubuntu has
    released (distro-info-data's ubuntu.csv, the copy the archive's own
    development release ships, read through apt, with the host's copy) plus
    the archive's `devel` alias, each probed with its -updates and -security
    pockets. A suite kpackfs forgets therefore shows up as a miss.

Usage: archive_kernels.py [--distro debian|ubuntu] (--manifest-json FILE | --listing FILE)
                          [--suites ...] [--arches ...] [--work DIR] [--json OUT] [--markdown OUT]
Prints one line per suite (and pocket) and architecture; exits 1 if any kernel is missed.
"""

import argparse
import csv
import glob
import io
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

DEBIAN_SUITES = ["bookworm", "bookworm-updates", "bookworm-security", "trixie", "trixie-security",
                 "bullseye", "bullseye-security"]
HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = os.path.join(HERE, "../kernel-package-lists/keys")
RELEASE = re.compile(r"^\d+\.\d+\.\d+")
UBUNTU_RELEASE = re.compile(r"^\d+\.\d+\.\d+-\d+-[a-z]")
POCKETS = ["", "-updates", "-security"]


def host_uris():
    """Every deb URI of the host's apt sources (one-line and deb822 forms)."""
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
    return [u.rstrip("/") for u in uris]


def debian_mirrors():
    """The host's Debian mirror URIs from apt's own configuration: (archive, security)."""
    uris = host_uris()
    archive = os.environ.get("KPACKFS_DEBIAN_MIRROR") or next((u for u in uris if u.endswith("/debian")), None)
    security = os.environ.get("KPACKFS_SECURITY_MIRROR") or next(
        (u for u in uris if u.endswith("/debian-security")), None)
    if not archive:
        sys.exit("no Debian mirror in apt's configuration (set KPACKFS_DEBIAN_MIRROR)")
    return archive.rstrip("/"), (security or archive + "-security").rstrip("/")


def ubuntu_bases():
    """Ubuntu's archive and security bases: the host's Ubuntu mirror if apt
    names one, else the canonical URLs the shipped sources name (read as
    text: the oracle does not use kpackfs's parser)."""
    archive = os.environ.get("KPACKFS_UBUNTU_MIRROR")
    security = os.environ.get("KPACKFS_UBUNTU_SECURITY_MIRROR")
    text = open(os.path.join(HERE, "../kernel-package-lists/sources.yml"), encoding="utf-8").read()
    canonical = re.search(r"^\s*url:\s*(\S+/ubuntu)\s*$", text, re.M)
    canonical_sec = re.search(r"^\s*security_url:\s*(\S+/ubuntu)\s*$", text, re.M)
    mirror = next((u for u in host_uris() if u.endswith("/ubuntu")), None)
    archive = archive or mirror or (canonical and canonical.group(1))
    if not archive:
        sys.exit("no Ubuntu archive URL (set KPACKFS_UBUNTU_MIRROR)")
    security = security or (mirror if mirror else canonical_sec and canonical_sec.group(1)) or archive
    return archive.rstrip("/"), security.rstrip("/")


def apt_opts(d, arch):
    return [
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
        # An end-of-life release's Release file is never refreshed: read it as apt reads archives.
        "-o", "Acquire::Check-Valid-Until=false",
    ]


def apt_config(work, label, arch, lines):
    d = os.path.join(work, f"{label}-{arch}")
    for sub in ["lists/partial", "cache/archives/partial", "etc/preferences.d"]:
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    with open(os.path.join(d, "etc/sources.list"), "w") as f:
        f.write("".join(line + "\n" for line in lines))
    return d, apt_opts(d, arch)


def stanzas_of(text):
    out = []
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if line and not line[0].isspace() and ":" in line:
                k, v = line.split(":", 1)
                fields[k] = v.strip()
        if "Package" in fields:
            out.append(fields)
    return out


def apt_packages(work, label, arch, lines):
    """Every stanza apt holds for one apt configuration, read by apt-cache,
    and the Version field of the Release apt verified."""
    d, opts = apt_config(work, label, arch, lines)
    subprocess.run(["apt-get", "-q", "-q", "update"] + opts, check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run(["apt-cache"] + opts + ["dumpavail"], check=True, capture_output=True,
                         text=True).stdout
    version = ""
    for release in glob.glob(os.path.join(d, "lists", "*Release")):
        m = re.search(r"^Version:\s*(\S+)", open(release, errors="replace").read(), re.M)
        version = m.group(1) if m else version
    return stanzas_of(out), version


def held_kernels(stanzas, arch, distro):
    """uname -> (headers file name, digest, version) for each kernel the index holds."""
    images, headers = set(), {}
    pattern = UBUNTU_RELEASE if distro == "ubuntu" else RELEASE
    for s in stanzas:
        name = s["Package"]
        if name.startswith("linux-image-"):
            u = name[len("linux-image-"):]
            u = u[len("unsigned-"):] if u.startswith("unsigned-") else u
            images.add(u[: -len("-unsigned")] if u.endswith("-unsigned") else u)
        elif name.startswith("linux-headers-") and s.get("Architecture") == arch:
            digest = s.get("SHA256") or s.get("SHA512")
            headers.setdefault(name[len("linux-headers-"):], []).append(
                (s["Filename"].rsplit("/", 1)[-1], digest, s.get("Version", "")))
    return {u: h for u, h in headers.items() if u in images and pattern.match(u)}


def kernel_name(distro, uname, version, arch):
    """The bundle name docs/manifest.md gives a kernel."""
    if distro != "ubuntu":
        return uname
    m = re.match(r"^\d+\.\d+\.\d+-\d+\.\d+(\.\d+)?[~-](\d{2}\.\d{2})([.+~].*)?$", version)
    return uname + ("" if arch == "amd64" else f"-{arch}") + (f"~{m.group(2)}" if m else "")


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except (urllib.error.URLError, OSError):
        return None, b""


def ubuntu_suites(work, archive, security, arch):
    """(suite, base) of every suite the archive serves, found from the archive."""
    status, body = fetch(f"{archive}/dists/")
    if status == 200:
        names = sorted(set(re.findall(r'href="([a-z]+(?:-[a-z]+)?)/"', body.decode("utf-8", "replace"))))
        how = "the archive's dists/ listing"
        suites = [n for n in names if n.split("-")[0] not in ("devel",)]
    else:
        # No listing: every codename Ubuntu has released, from the newest
        # distro-info-data the archive itself ships (its development release,
        # the `devel` alias), and the host's copy.
        codenames = set()
        status, inrelease = fetch(f"{archive}/dists/devel/InRelease")
        devel = re.search(r"^Codename:\s*(\S+)", inrelease.decode("utf-8", "replace"), re.M)
        keyring = os.path.abspath(os.path.join(KEYS, "ubuntu-archive-keyring.gpg"))
        if devel:
            codenames.add(devel.group(1))
            d, opts = apt_config(work, "distro-info", arch, [
                f"deb [arch={arch} signed-by={keyring}] {archive} devel main"])
            subprocess.run(["apt-get", "-q", "-q", "update"] + opts, check=True, stdout=subprocess.DEVNULL)
            subprocess.run(["apt-get", "-q", "-q", "download"] + opts + ["distro-info-data"], cwd=d, check=True,
                           stdout=subprocess.DEVNULL)
            deb = glob.glob(os.path.join(d, "distro-info-data_*.deb"))[0]
            csv_text = subprocess.run(f"dpkg-deb --fsys-tarfile '{deb}' | tar -xO ./usr/share/distro-info/ubuntu.csv",
                                      shell=True, check=True, capture_output=True, text=True).stdout
            codenames |= {row["series"] for row in csv.DictReader(io.StringIO(csv_text))}
        if os.path.exists("/usr/share/distro-info/ubuntu.csv"):
            codenames |= {row["series"] for row in csv.DictReader(open("/usr/share/distro-info/ubuntu.csv"))}
        how = "every codename of distro-info-data (the archive's development release's copy and the host's), probed"
        suites = []
        for c in sorted(codenames):
            for p in POCKETS:
                base = security if p == "-security" else archive
                if fetch(f"{base}/dists/{c}{p}/InRelease")[0] == 200:
                    suites.append(c + p)
    return suites, how


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--distro", choices=["debian", "ubuntu"], default="debian")
    ap.add_argument("--manifest-json", help="`kpackfs list --json` output: found = same name and digest")
    ap.add_argument("--listing", help="a file of names (`ls MNT/<type>`): found = the name is listed")
    ap.add_argument("--suites", nargs="*")
    ap.add_argument("--arches", nargs="*")
    ap.add_argument("--work", default="/var/tmp/kpackfs-archive-kernels")
    ap.add_argument("--held", help="an earlier --json: reuse its reading of the archive instead of asking apt again")
    ap.add_argument("--json", help="write the per-suite result here")
    ap.add_argument("--markdown", help="write the tables here")
    args = ap.parse_args()

    if bool(args.manifest_json) == bool(args.listing):
        sys.exit("give one of --manifest-json and --listing")
    distro = args.distro
    found_digests, listed = {}, set()
    if args.manifest_json:
        data = json.load(open(args.manifest_json))
        for entry in (data.values() if isinstance(data, dict) else data):
            if entry.get("type") == distro and entry.get("name"):
                found_digests.setdefault(entry["name"], set()).update(
                    d for p in entry["packages"] for d in (p.get("sha256"), p.get("sha512")) if d)
    else:
        listed = {line.strip() for line in open(args.listing) if line.strip()}

    def is_found(name, digest):
        return name in listed if args.listing else digest in found_digests.get(name, ())

    work = os.path.join(args.work, distro)
    if distro == "debian":
        archive, security = debian_mirrors()
        keyring = os.path.abspath(os.path.join(KEYS, "debian-archive-keyring.gpg"))
        arches = args.arches or ["amd64", "arm64"]
        suites, how = args.suites or DEBIAN_SUITES, "the suites named here"
        components = "main"
    else:
        archive, security = ubuntu_bases()
        keyring = os.path.abspath(os.path.join(KEYS, "ubuntu-archive-keyring.gpg"))
        arches = args.arches or ["amd64"]
        if args.suites:
            suites, how = args.suites, "the suites named on the command line"
        elif args.held:
            suites, how = [], "an earlier reading"
        else:
            suites, how = ubuntu_suites(work, archive, security, arches[0])
        components = "main restricted universe"
    if suites:
        print(f"suites ({how}): {' '.join(suites)}")

    # What apt read: per (suite, arch), name -> (uname, [digests]); or the
    # same from an earlier run (--held: apt's reading is not repeated).
    readings = []
    if args.held:
        earlier = json.load(open(args.held))
        how = earlier["suites_from"]
        for r in earlier["rows"]:
            readings.append((r["suite"], r["arch"], r.get("version", ""),
                             {n: (u, r["digests"][n]) for n, u in r["unames"].items()}))
    else:
        for suite in suites:
            uri = security if suite.endswith("-security") else archive
            for arch in arches:
                line = f"deb [arch={arch} signed-by={keyring}] {uri} {suite} {components}"
                stanzas, release_version = apt_packages(work, suite, arch, [line])
                kernels = {}
                for uname, builds in sorted(held_kernels(stanzas, arch, distro).items()):
                    for _, digest, version in builds:
                        name = kernel_name(distro, uname, version, arch)
                        kernels.setdefault(name, (uname, []))[1].append(digest)
                readings.append((suite, arch, release_version, kernels))
    results, missed_any = [], False
    for suite, arch, version, held in readings:
            kernels = {name: uname for name, (uname, _) in held.items()}
            found = sorted(n for n, (_, digests) in held.items() if any(is_found(n, d) for d in digests))
            missed = sorted(set(kernels) - set(found))
            missed_any |= bool(missed)
            results.append({"suite": suite, "arch": arch, "version": version, "held": len(kernels), "found": len(found),
                            "missed": missed, "kernels": sorted(kernels), "unames": kernels,
                            "digests": {n: d for n, (_, d) in held.items()},
                            "flavours": {n: re.sub(r"^\d+\.\d+\.\d+-\d+-", "", u) for n, u in kernels.items()}})
            print(f"{suite:<20} {arch:<6} held {len(kernels):>4}  found {len(found):>4}  missed {len(missed)}"
                  + (f": {' '.join(missed[:20])}{' …' if len(missed) > 20 else ''}" if missed else ""))
    if args.json:
        json.dump({"suites_from": how, "rows": results}, open(args.json, "w"), indent=1)
    def chronological(r):
        try:
            version = float(r.get("version") or 0)
        except ValueError:
            version = 0.0
        pocket = next((i for i, p in enumerate(POCKETS[1:], 1) if r["suite"].endswith(p)), 0)
        return (version, r["suite"].split("-")[0], pocket)
    if args.markdown:
        if distro == "ubuntu":
            results.sort(key=chronological)
        with open(args.markdown, "w") as f:
            f.write(f"Suites read: {how}.\n\n")
            f.write("| suite | arch | held (apt) | found (kpackfs) | missed |\n|---|---|---:|---:|---|\n")
            for r in results:
                f.write(f"| {r['suite']} | {r['arch']} | {r['held']} | {r['found']} | "
                        f"{', '.join(r['missed']) or '—'} |\n")
            if distro == "ubuntu":
                flav = {}
                for r in results:
                    missed = set(r["missed"])
                    for name, fl in r["flavours"].items():
                        k = flav.setdefault(fl, [set(), set()])
                        k[0].add(name)
                        if name not in missed:
                            k[1].add(name)
                f.write("\nPer flavour (distinct kernels over every suite and pocket):\n\n"
                        "| flavour | held (apt) | found (kpackfs) | missed |\n|---|---:|---:|---:|\n")
                for fl, (h, fd) in sorted(flav.items(), key=lambda kv: (-len(kv[1][0]), kv[0])):
                    f.write(f"| {fl} | {len(h)} | {len(fd)} | {len(h) - len(fd)} |\n")
                total = set().union(*(v[0] for v in flav.values())) if flav else set()
                got = set().union(*(v[1] for v in flav.values())) if flav else set()
                f.write(f"| **all** | **{len(total)}** | **{len(got)}** | **{len(total) - len(got)}** |\n")
    sys.exit(1 if missed_any else 0)


if __name__ == "__main__":
    main()
