#!/usr/bin/env python3
"""Write a kpackfs manifest of N synthetic Debian bundles (3 packages each,
with sha256 and size), for the scale benchmark: gen_manifest.py N OUT [TYPES]."""
import hashlib, os, sys

def simplify(url):
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in url)

def debian_archive():
    """The first Debian source's URL in the shipped sources.yml."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "../kernel-package-lists/sources.yml"), encoding="utf-8") as f:
        in_debian = False
        for line in f:
            if line.startswith("- name:"):
                in_debian = line.split(":", 1)[1].strip().startswith("debian-")
            elif in_debian and line.startswith("  url: "):
                return line.split(":", 1)[1].strip()
    raise SystemExit("no Debian source in sources.yml")

def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    types = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    base = debian_archive() + "/pool/main/l/linux"
    with open(out, "w") as f:
        f.write("# kpackfs manifest: id -> bundle. See docs/manifest.md.\n")
        for i in range(n):
            abi = f"{i // 3 + 1}"
            flavour = ["amd64", "cloud-amd64", "rt-amd64"][i % 3]
            uname = f"6.{i % 97}.0-{abi}-{flavour}"
            kind = f"debian{i % types}" if types > 1 else "debian"
            urls = [
                f"{base}/linux-headers-{uname}_6.1.{i}-1_amd64.deb",
                f"{base}/linux-headers-6.{i % 97}.0-{abi}-common_6.1.{i}-1_all.deb",
                f"{base}/linux-kbuild-6.{i % 97}_6.1.{i}-1_amd64.deb",
            ]
            ident = hashlib.sha256("".join(sorted(simplify(u) for u in urls)).encode()).hexdigest()
            f.write(f"{ident}:\n  type: {kind}\n  name: {uname}\n  uname: {uname}\n  packages:\n")
            for j, u in enumerate(urls):
                sha = hashlib.sha256(f"{i}/{j}".encode()).hexdigest()
                f.write(f"  - url: {u}\n    sha256: {sha}\n    size: {1000000 + i + j}\n")

main()
