#!/usr/bin/env python3
"""Checks that a crate's modules form layers: no import cycle between files,
and (for coscheduler) dependencies only pointing down the declared layers.

Reads every `crate::a::b` path in each .rs file of a crate's src/ (use
declarations and inline paths alike) and maps it to the file that defines the
module. Usage: scripts/layers.py CRATE_SRC_DIR [--layers a,b,c,...]
Exits 1 and prints the cycle (or the upward edge) when the check fails.
"""
import os
import re
import sys


def module_files(src):
    """Maps module paths ('core::home') to files, for a crate rooted at src."""
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            parts = rel[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            mods["::".join(parts)] = rel
    return mods


def strip_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def edges(src, mods):
    out = {}
    for mod, rel in mods.items():
        text = strip_comments(open(os.path.join(src, rel)).read())
        targets = set()
        for m in re.finditer(r"crate((?:::[A-Za-z_][A-Za-z0-9_]*)+)", text):
            segs = m.group(1).strip(":").split("::")
            # the longest prefix that names a module file
            for k in range(len(segs), 0, -1):
                cand = "::".join(segs[:k])
                if cand in mods:
                    if cand != mod:
                        targets.add(cand)
                    break
        # `super::x` and `self::x` paths resolve relative to the module
        base = mod.split("::") if mod else []
        for m in re.finditer(r"\b(super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)", text):
            up = base[:-1] if m.group(1) == "super" else base[:]
            if rel.endswith("mod.rs") and m.group(1) == "super":
                up = base[:-1]
            segs = up + m.group(2).strip(":").split("::")
            for k in range(len(segs), 0, -1):
                cand = "::".join(segs[:k])
                if cand in mods:
                    if cand != mod and not mod.startswith(cand + "::") and cand != "":
                        targets.add(cand)
                    break
        out[mod] = targets
    return out


def find_cycle(graph):
    color, stack = {}, []

    def visit(n):
        color[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if color.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if not color.get(m):
                c = visit(m)
                if c:
                    return c
        stack.pop()
        color[n] = 2
        return None

    for n in sorted(graph):
        if not color.get(n):
            c = visit(n)
            if c:
                return c
    return None


def main():
    src = sys.argv[1]
    layers = []
    if "--layers" in sys.argv:
        layers = sys.argv[sys.argv.index("--layers") + 1].split(",")
    mods = module_files(src)
    graph = edges(src, mods)
    # parent modules re-export/declare children: a child never counts as
    # depending on its parent's declarations
    graph = {m: {t for t in ts if not (t == "" or m.startswith(t + "::"))} for m, ts in graph.items()}
    graph.pop("", None)
    # Cycles are checked between the crate's top-level modules (the
    # layers); cycles among the files of one layer are reported but allowed
    # (a control block and the fiber it owns refer to each other).
    top = {}
    for m, ts in graph.items():
        a = m.split("::")[0]
        top.setdefault(a, set()).update(t.split("::")[0] for t in ts if t.split("::")[0] != a)
    cycle = find_cycle(top)
    inner = find_cycle(graph)
    bad = []
    if layers:
        def layer_of(m):
            top = m.split("::")[0]
            return layers.index(top) if top in layers else None
        for m, ts in graph.items():
            lm = layer_of(m)
            for t in ts:
                lt = layer_of(t)
                if lm is not None and lt is not None and lt > lm:
                    bad.append(f"{m} -> {t}")
    n_edges = sum(len(v) for v in graph.values())
    print(f"{len(graph)} modules, {n_edges} edges between files")
    if cycle:
        print("import cycle between top-level modules: " + " -> ".join(cycle))
    if inner:
        print("(within a layer, files refer to each other, e.g. " + " -> ".join(inner) + ")")
    for b in sorted(bad):
        print("upward dependency: " + b)
    if not cycle and not bad:
        print("no import cycle" + (", layers respected: " + " < ".join(layers) if layers else ""))
    sys.exit(1 if cycle or bad else 0)


if __name__ == "__main__":
    main()
