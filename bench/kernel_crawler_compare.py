#!/usr/bin/env python3
"""Compare `kpackfs list --format kernel-crawler` with a list.json that
falcosecurity/kernel-crawler published, field by field, for the kernels
both hold (joined on target, kernelrelease and kernelversion: Ubuntu's
xenial and bionic builds of one release, `4.15.0-1093.99~16.04.1` and
`4.15.0-1093.99`, are two records with one target and kernelrelease). Prints a markdown table
(docs/lookup.md) and the first differences of each kind.

usage: kernel_crawler_compare.py THEIRS.json OURS.json [DISTRO...]
"""
import json
import sys
from collections import Counter


def name(url):
    return url.rsplit("/", 1)[-1]


def host(url):
    return url.split("/")[2] if "://" in url else ""


def main():
    theirs_path, ours_path, *distros = sys.argv[1:]
    theirs, ours = json.load(open(theirs_path)), json.load(open(ours_path))
    distros = distros or sorted(set(theirs) & set(ours))
    print("| distro | theirs | ours | both | header files equal | ours ⊂ theirs | theirs ⊂ ours | same hosts |")
    print("|---|---|---|---|---|---|---|---|")
    examples = {}
    for d in distros:
        key = lambda r: (r["target"], r["kernelrelease"], str(r["kernelversion"]))
        t = {key(r): r for r in theirs.get(d, [])}
        o = {key(r): r for r in ours.get(d, [])}
        both = sorted(set(t) & set(o))
        c = Counter()
        for k in both:
            a, b = t[k], o[k]
            fa, fb = {name(u) for u in a["headers"]}, {name(u) for u in b["headers"]}
            c["eq"] += fa == fb
            c["sub"] += fb < fa
            c["sup"] += fa < fb
            if fa != fb:
                examples.setdefault((d, "header files differ"), (k, sorted(fa - fb), sorted(fb - fa)))
            same_hosts = {host(u) for u in a["headers"]} == {host(u) for u in b["headers"]}
            c["hosts"] += same_hosts
            if not same_hosts:
                examples.setdefault((d, "hosts differ"), (k, sorted({host(u) for u in a["headers"]}), sorted({host(u) for u in b["headers"]})))
        # kernelreleases both know, under another target or version
        releases = {(k[1]) for k in o}
        near = sorted(k for k in set(t) - set(o) if k[1] in releases)
        if near:
            examples.setdefault((d, "same kernelrelease, other target or kernelversion"), [(k, [x for x in o if x[1] == k[1]]) for k in near[:3]])
        only_theirs = sorted(set(t) - set(o))
        if only_theirs:
            examples.setdefault((d, "only in theirs"), only_theirs[:3])
        print(f"| {d} | {len(t)} | {len(o)} | {len(both)} | {c['eq']} | {c['sub']} | {c['sup']} | {c['hosts']} |")
    print()
    for (d, kind), ex in sorted(examples.items()):
        print(f"- {d}, {kind}: {ex}")


if __name__ == "__main__":
    main()
