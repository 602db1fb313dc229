#!/usr/bin/env python3
"""Checks that a crate's modules form layers: no import cycle between files,
and (for coscheduler) dependencies only pointing down the declared layers.

Reads every path into the crate in each .rs file of a crate's src/: `use`
declarations as trees (`use crate::{a::b, c::{self, d}}` names `a::b`, `c`
and `c::d`), and inline paths (`crate::`, `super::`, `self::`, or a child
module's name). A path is
resolved from the module it is written in, inline `mod name { ... }` blocks
included, and mapped to the file that defines the longest prefix of it that
is a module.

Usage: scripts/layers.py CRATE_SRC_DIR [--layers a,b,c,...]
       scripts/layers.py --self-test
Exits 1 and prints the cycle (or the upward edge) when the check fails.
Files that refer to each other inside one top-level module are allowed; the
largest such group is printed.
"""
import os
import re
import sys
import tempfile

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"

# Comments, string and char literals: blanked so that a path in a doc
# comment or a message does not count. One alternation scanned left to right,
# so a quote inside a comment (or a comment marker inside a string) is seen
# as what it is inside. A lifetime ('a) matches no alternative.
LEXEMES = re.compile(
    r"//[^\n]*"
    r"|/\*.*?\*/"
    r"|\bb?r(#*)\".*?\"\1"
    r"|b?\"(?:\\.|[^\"\\])*\""
    r"|b?'(?:\\u\{[0-9a-fA-F]+\}|\\x[0-9a-fA-F]{2}|\\.|[^'\\\n])'",
    re.S,
)


def strip_comments(text):
    """Blanks comments and literals, keeping every newline (and so offsets of lines)."""
    return LEXEMES.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


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


def use_tree_paths(tree):
    """The paths one `use` tree names, each a list of segments.

    `a::{b, c::{self, d as e}, f::*}` gives a::b, a::c, a::c::d, a::f (a glob
    names its module). `as` renames are dropped, `self` in a group names the
    group's prefix, a leading `::` (an extern crate) gives no path.
    """
    tokens = re.findall(r"::|[{},*]|" + IDENT, tree)
    pos = 0
    out = []

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def parse(prefix):
        nonlocal pos
        segs = list(prefix)
        if peek() == "::" and not segs:
            # `use ::extern_crate::...`: not a path into this crate
            pos += 1
            segs = [None]
        while True:
            tok = peek()
            if tok == "{":
                pos += 1
                while peek() not in ("}", None):
                    parse(segs)
                    if peek() == ",":
                        pos += 1
                pos += 1  # the closing brace
                return
            if tok == "*":
                pos += 1
                out.append(segs)
                return
            if tok is None or tok in (",", "}"):
                if segs and segs != list(prefix):
                    out.append(segs)
                return
            if tok == "as":
                pos += 2  # `as name`
                continue
            if tok == "::":
                pos += 1
                continue
            if tok == "self" and segs and segs == list(prefix):
                # `self` inside a group: the group's own prefix
                pos += 1
                out.append(segs)
                segs = None
                # what follows can only be `as name`
                while peek() == "as":
                    pos += 2
                return
            segs = segs + [tok]
            pos += 1

    while pos < len(tokens):
        before = pos
        parse([])
        if peek() == ",":
            pos += 1
        if pos == before:
            pos += 1
    return [p for p in out if p and p[0] is not None]


def inline_modules(text):
    """For each offset where an inline `mod name {` opens or a brace closes,
    the inline module path in force after it: a list of (offset, path)."""
    events = []
    stack = []  # per open brace: the module name it opened, or None
    opener = re.compile(r"\bmod\s+(" + IDENT + r")\s*\{|[{}]")
    for m in opener.finditer(text):
        tok = m.group(0)
        if m.group(1):
            stack.append(m.group(1))
        elif tok == "{":
            stack.append(None)
        elif stack:
            stack.pop()
        events.append((m.end(), [s for s in stack if s is not None]))
    return events


def inline_path_at(events, offset):
    """The inline module path in force at `offset` (see inline_modules)."""
    path = []
    for at, p in events:
        if at > offset:
            break
        path = p
    return path


def resolve(segs, here, mods):
    """The module file a path names: the longest prefix that is a module.

    `here` is the module (a list of segments) the path is written in.
    `crate`, `super` and `self` are followed; a path starting with another
    name is relative to `here` (Rust 2018's uniform paths) when `here` has a
    child module of that name, and is otherwise not into the crate (an
    extern crate, a type, a variant).
    """
    segs = list(segs)
    if segs[0] == "crate":
        base, segs = [], segs[1:]
    elif segs[0] in ("super", "self"):
        base = list(here)
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    elif "::".join(here + segs[:1]) in mods:
        base = list(here)
    else:
        return None
    full = base + segs
    for k in range(len(full), -1, -1):
        cand = "::".join(full[:k])
        if cand in mods:
            return cand
    return None


USE_DECL = re.compile(r"\buse\s+([^;]*);")
INLINE_PATH = re.compile(
    r"(?<![A-Za-z0-9_:$])\$?(" + IDENT + r")((?:\s*::\s*" + IDENT + r")+)"
)


def file_targets(text, mod, mods):
    """The modules one file's text (comments not yet stripped) refers to."""
    text = strip_comments(text)
    file_mod = mod.split("::") if mod else []
    events = inline_modules(text)
    targets = set()

    def add(segs, offset):
        here = file_mod + inline_path_at(events, offset)
        t = resolve(segs, here, mods)
        if t is not None and t != mod:
            targets.add(t)

    for m in USE_DECL.finditer(text):
        for segs in use_tree_paths(m.group(1)):
            add(segs, m.start())
    # inline paths, outside the use declarations already read
    rest = USE_DECL.sub(lambda m: " " * len(m.group(0)), text)
    for m in INLINE_PATH.finditer(rest):
        segs = [m.group(1)] + re.findall(IDENT, m.group(2))
        add(segs, m.start())
    return targets


def edges(src, mods):
    out = {}
    for mod, rel in mods.items():
        with open(os.path.join(src, rel)) as f:
            out[mod] = file_targets(f.read(), mod, mods)
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


def components(graph):
    """The strongly connected components of more than one node (Tarjan),
    largest first: the groups of files that all reach each other."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(n):
        index[n] = low[n] = counter[0]
        counter[0] += 1
        stack.append(n)
        on.add(n)
        for m in sorted(graph.get(n, ())):
            if m not in index:
                visit(m)
                low[n] = min(low[n], low[m])
            elif m in on:
                low[n] = min(low[n], index[m])
        if low[n] == index[n]:
            comp = []
            while True:
                m = stack.pop()
                on.discard(m)
                comp.append(m)
                if m == n:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    for n in sorted(graph):
        if n not in index:
            visit(n)
    sys.setrecursionlimit(limit)
    return sorted(out, key=lambda c: (-len(c), c))


def check(src, layers):
    """Prints the report for one crate; returns whether it passes."""
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
    groups = components(graph)
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
    if groups:
        g = groups[0]
        print(f"(files that refer to each other, largest group: {len(g)} files: " + ", ".join(g) + ")")
    for b in sorted(bad):
        print("upward dependency: " + b)
    if not cycle and not bad:
        print("no import cycle" + (", layers respected: " + " < ".join(layers) if layers else ""))
    return not cycle and not bad


def self_test():
    """Checks the parser on the forms it must follow; exits 1 on a failure."""
    failures = []

    def expect(what, got, want):
        if got != want:
            failures.append(f"{what}: got {got!r}, want {want!r}")

    expect(
        "grouped and nested use tree",
        sorted("::".join(p) for p in use_tree_paths(
            "crate::{a::b, c::{self, d as e}, f::*, g}")),
        ["crate::a::b", "crate::c", "crate::c::d", "crate::f", "crate::g"],
    )
    expect("plain path", use_tree_paths("crate::a::B"), [["crate", "a", "B"]])
    expect("rename", use_tree_paths("super::x as y"), [["super", "x"]])
    expect("self alone in a group", use_tree_paths("self::a::{self}"), [["self", "a"]])
    expect("extern crate path", use_tree_paths("::std::sync::{Arc, Mutex}"), [])
    expect("root group", sorted("::".join(p) for p in use_tree_paths("{crate::a, std::b}")),
           ["crate::a", "std::b"])
    expect(
        "comments and strings blanked",
        strip_comments('a // crate::x\n"crate::y" \'"\' r#"crate::z"# b').split(),
        ["a", "b"],
    )
    mods = {"": "lib.rs", "a": "a/mod.rs", "a::b": "a/b.rs", "c": "c.rs", "d": "d.rs"}
    expect("super from a file", resolve(["super", "c"], ["a", "b"], mods), "a")
    expect("super from a mod.rs", resolve(["super", "c"], ["a"], mods), "c")
    expect("super::super", resolve(["super", "super", "d", "X"], ["a", "b"], mods), "d")
    expect("uniform path to a child", resolve(["b", "X"], ["a"], mods), "a::b")
    expect("extern name", resolve(["std", "fmt"], ["a"], mods), None)
    text = """
        use crate::{c::X, d};
        fn f() { crate::a::b::g(); }
        #[cfg(test)]
        mod tests {
            use super::super::super::c;
        }
        // crate::a in a comment
        const S: &str = "crate::a";
    """
    expect("file targets", sorted(file_targets(text, "a::b", mods)), ["c", "d"])
    # inside `mod tests` of c.rs, `super` is c itself, not the crate root
    expect("inline module's super", sorted(file_targets(
        "mod tests { use super::Y; fn t() { super::super::d::f(); } }", "c", mods)), ["d"])

    # a whole crate: a cycle only through a grouped import
    with tempfile.TemporaryDirectory() as src:
        files = {
            "lib.rs": "mod x;\nmod y;\n",
            "x.rs": "use crate::{y::Y};\npub struct X;\n",
            "y.rs": "use crate::x::{self as _, X};\npub struct Y;\n",
        }
        for name, body in files.items():
            with open(os.path.join(src, name), "w") as f:
                f.write(body)
        import contextlib
        import io
        with contextlib.redirect_stdout(io.StringIO()) as out:
            ok = check(src, [])
        expect("a cycle through a grouped import fails", ok, False)
        expect("the cycle is printed", "x -> y -> x" in out.getvalue(), True)

    for f in failures:
        print("self-test failed: " + f)
    if not failures:
        print("layers.py self-test: ok")
    sys.exit(1 if failures else 0)


def main():
    if "--self-test" in sys.argv:
        self_test()
    src = sys.argv[1]
    layers = []
    if "--layers" in sys.argv:
        layers = sys.argv[sys.argv.index("--layers") + 1].split(",")
    sys.exit(0 if check(src, layers) else 1)


if __name__ == "__main__":
    main()
