#!/usr/bin/env python3
"""The crate's import graph, from its `use` lines and `crate::…` paths.

Each source file is a module (src/a/b.rs and src/a/b/mod.rs are `a::b`). A
reference `crate::a::b::c` is an edge to the longest prefix that is a module;
`super::…` and `self::…` are resolved from the file's own module. Prints the
top-level module graph, every cycle between files (strongly connected
components of more than one file), and the edges that go from a lower floor
to a higher one (the floors are tests/quick/layers.rs's table).

Usage: bench/imports.py [--dot OUT]    (exit 1 on a cycle or an upward import)
"""

import os
import re
import sys
from collections import defaultdict

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\}", re.S)


def modules():
    out = {}
    for root, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), SRC)[:-3].split(os.sep)
            if rel[-1] == "mod":
                rel = rel[:-1]
            if rel in (["lib"], ["main"]):
                rel = []
            out[tuple(rel)] = os.path.join(root, f)
    return out


def strip(text):
    text = re.sub(r"//[^\n]*", "", text)
    # Test modules are not part of the library's layering.
    at = text.find("#[cfg(test)]")
    return text if at < 0 else text[:at]


def edges(mods):
    out = defaultdict(set)
    for mod, path in mods.items():
        text = strip(open(path).read())
        refs = []
        for m in USE_GROUP.finditer(text):
            base = (m.group(1), m.group(2))
            for item in re.split(r"[,\s]+", m.group(3)):
                item = item.split(" as ")[0].strip("{} ")
                if item and item != "self":
                    refs.append((base[0], base[1] + "::" + item.split("::")[0]))
                elif item == "self":
                    refs.append(base)
        refs += [(m.group(1), m.group(2)) for m in PATH.finditer(text)]
        for kind, rest in refs:
            parts = [p for p in rest.split("::") if p]
            if kind == "crate":
                base = []
            elif kind == "super":
                base = list(mod[:-1])
                while parts and parts[0] == "super":
                    parts.pop(0)
                    base = base[:-1]
            else:
                base = list(mod)
            target = base + parts
            while target and tuple(target) not in mods:
                target = target[:-1]
            if tuple(target) != mod and tuple(target) in mods and target:
                out[mod].add(tuple(target))
    return out


def sccs(nodes, graph):
    index, low, stack, on, result, counter = {}, {}, [], set(), [], [0]
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    advanced = True
                    break
                if nxt in on:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                result.append(comp)
    return result


def floors():
    """FLOORS from tests/quick/layers.rs: module -> floor number."""
    text = open(os.path.join(SRC, "..", "tests", "quick", "layers.rs")).read()
    table = text[text.index("pub const FLOORS"):]
    table = table[:table.index("];")]
    out = {}
    for n, m in enumerate(re.finditer(r'\("([a-z]+)", &\[([^\]]*)\]\)', table)):
        for mod in re.findall(r'"([a-z_]+)"', m.group(2)):
            out[mod] = n
    return out


def name(m):
    return "::".join(m) or "crate"


def main():
    mods = modules()
    graph = edges(mods)
    top = defaultdict(set)
    for a, targets in graph.items():
        for b in targets:
            if a and b and a[0] != b[0]:
                top[a[0]].add(b[0])
    print("top-level modules and what they import:")
    for a in sorted(top):
        print(f"  {a:<10} -> {', '.join(sorted(top[a]))}")
    cycles = [c for c in sccs(sorted(mods), graph) if len(c) > 1]
    for c in cycles:
        print(f"cycle of {len(c)} files: {', '.join(sorted(name(m) for m in c))}")
    top_cycles = [c for c in sccs(sorted(top), top) if len(c) > 1]
    floor = floors()
    upward = sorted(f"{name(a)} -> {name(b)}" for a, targets in graph.items() for b in targets
                    if a and b and a[0] != b[0] and floor.get(a[0], -1) < floor.get(b[0], -1))
    for u in upward:
        print(f"upward import: {u}")
    unplaced = sorted(m for m in top if m not in floor)
    if unplaced:
        print(f"modules on no floor: {', '.join(unplaced)}")
    for c in top_cycles:
        print(f"cycle between top-level modules: {', '.join(sorted(c))}")
    if "--dot" in sys.argv:
        out = sys.argv[sys.argv.index("--dot") + 1]
        with open(out, "w") as f:
            f.write("digraph kpackfs {\n")
            for a in sorted(top):
                for b in sorted(top[a]):
                    f.write(f'  "{a}" -> "{b}";\n')
            f.write("}\n")
    print(f"{len(mods)} files, {sum(len(v) for v in graph.values())} edges, {len(cycles)} file cycles, "
          f"{len(top_cycles)} module cycles, {len(upward)} upward imports")
    sys.exit(1 if cycles or top_cycles or upward or unplaced else 0)


if __name__ == "__main__":
    main()
