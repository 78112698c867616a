#!/usr/bin/env python3
"""Shape of the source tree: files over 600 lines, functions over 80 lines, module cycles.

    scripts/shape.py            # report; exit 1 when a limit is broken
    scripts/shape.py --all      # also list every file and function near the limits

Counts every .rs file of the workspace (src/, crates/*/src, vendor/tiny_http/src, tests/,
scripts/bench). Allowed over the limits (ARCHITECTURE.md says why): the files and functions
named in ALLOW below. A module cycle is two modules of one crate that `use` each other,
directly or through others (`mod` declarations do not count; `super::` and `crate::` do).
"""
import os
import re
import sys
from collections import defaultdict

FILE_LIMIT = 600
FN_LIMIT = 80
ROOTS = ["src", "crates", "vendor/tiny_http/src", "tests", "scripts/bench"]
# Limits hold for the product's source; tests and benchmarks are listed, not counted.
PRODUCT = ("src/", "crates/", "vendor/")
# Tables, not logic: a config key table, the metrics page, the simulator's test tables.
ALLOW_FILES = {"src/config/keys.rs"}
ALLOW_FNS = {"render", "build"}
ALLOW_FN_FILES = {("src/metrics.rs", "render"), ("src/config/build.rs", "build"), ("src/config.rs", "build")}

FN_RE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:unsafe\s+)?(?:extern\s+\"C\"\s+)?fn\s+(\w+)")


def strip_code(text):
    """The text with strings, chars and comments blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
            continue
        if text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
            continue
        m = re.match(r'b?r(#*)"', text[i:i + 12])
        if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
            continue
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
            continue
        if c == "'":
            m = re.match(r"'(\\.|\\u\{[0-9a-fA-F]+\}|\\x..|[^\\'])'", text[i:i + 12])
            if m:
                out.append("' '")
                i += len(m.group(0))
                continue
        out.append(c)
        i += 1
    return "".join(out)


def functions(path):
    code = strip_code(open(path, encoding="utf-8").read()).split("\n")
    found = []
    for k, line in enumerate(code):
        m = FN_RE.match(line)
        if not m:
            continue
        depth, started, end = 0, False, None
        for j in range(k, len(code)):
            for ch in code[j]:
                if ch == "{":
                    depth, started = depth + 1, True
                elif ch == "}":
                    depth -= 1
                elif ch == ";" and not started and depth == 0:
                    end = j
                    break
            if end is not None or (started and depth == 0):
                end = j
                break
        if started and end is not None:
            found.append((m.group(1), k + 1, end - k + 1))
    return found


def rs_files():
    for root in ROOTS:
        for dirpath, _, names in os.walk(root):
            if "/target" in dirpath or "fixtures" in dirpath:
                continue
            for name in sorted(names):
                if name.endswith(".rs"):
                    yield os.path.join(dirpath, name)


def crate_of(path):
    """(crate source root, module path of the file) or None for tests/scripts."""
    for root in ["src"] + [os.path.join("crates", c, "src") for c in sorted(os.listdir("crates"))] \
            if os.path.isdir("crates") else ["src"]:
        if path.startswith(root + "/"):
            rel = path[len(root) + 1:-3].split("/")
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            return root, tuple(rel)
    if path.startswith("vendor/tiny_http/src/"):
        rel = path[len("vendor/tiny_http/src/"):-3].split("/")
        if rel[-1] in ("mod", "lib"):
            rel = rel[:-1]
        return "vendor/tiny_http/src", tuple(rel)
    return None


def cycles(files):
    mods = defaultdict(set)
    for f in files:
        c = crate_of(f)
        if c and not f.endswith("main.rs"):
            mods[c[0]].add(c[1])
    found = []
    for root, known in mods.items():
        edges = defaultdict(set)
        for f in files:
            c = crate_of(f)
            if not c or c[0] != root or f.endswith("main.rs"):
                continue
            me = c[1]
            code = strip_code(open(f, encoding="utf-8").read())
            code = re.sub(r"#\[cfg\(test\)\]\s*mod\s+tests\s*\{.*", "", code, flags=re.S)
            # `use a::{b, c::d}` groups, innermost first, become `a::b a::c::d`
            group = re.compile(r"((?:\w+::)*\w+)::\{([^{}]*)\}")
            while group.search(code):
                code = group.sub(lambda g: " ".join(g.group(1) + "::" + i.strip() for i in g.group(2).split(",") if i.strip()), code)
            children = set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", code, re.M))
            own = f.endswith("mod.rs") or f.endswith("lib.rs")
            for m in re.finditer(r"(?<![\w:])((?:crate|super|self|\w+)(?:::\w+)+)", code):
                parts = m.group(1).split("::")
                if parts[0] not in ("crate", "super", "self"):
                    if not own or parts[0] not in children:
                        continue
                    parts = ["self"] + parts
                if parts[0] == "crate":
                    base, rest = (), parts[1:]
                else:
                    base = list(me) if (f.endswith("mod.rs") or f.endswith("lib.rs")) else list(me)
                    rest = parts
                    while rest and rest[0] in ("super", "self"):
                        if rest[0] == "super":
                            # a mod.rs file is its own module: super is its parent
                            base = base[:-1]
                        rest = rest[1:]
                    base = tuple(base)
                target = tuple(base)
                best = None
                for p in rest:
                    target = target + (p,)
                    if target in known:
                        best = target
                if best is None and tuple(base) in known:
                    best = tuple(base)
                if best is None:
                    continue
                # the module uses its own parent or child through a path: count it unless
                # it is itself or an ancestor (a child reaching up to its parent's items)
                if best != me and me[:len(best)] != best:
                    edges[me].add(best)
                elif best != me and me[:len(best)] == best and best != ():
                    edges[me].add(best)
        # mod.rs files re-exporting their children: `pub use child::X` is not a dependency
        # on the child's users; a child using its parent's items and the parent using the
        # child's items is a cycle, and counted.
        index, low, stack, on, out = {}, {}, [], set(), []
        counter = [0]

        def strong(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in edges[v]:
                if w not in index:
                    strong(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted("::".join(x) or "<root>" for x in comp))

        sys.setrecursionlimit(10000)
        for v in sorted(known):
            if v not in index:
                strong(v)
        found += [(root, c) for c in out]
    return found


def main():
    show_all = "--all" in sys.argv
    files = list(rs_files())
    bad = 0
    print(f"== files over {FILE_LIMIT} lines")
    for f in files:
        n = sum(1 for _ in open(f, encoding="utf-8"))
        if n > FILE_LIMIT or (show_all and n > FILE_LIMIT * 0.8):
            allowed = f in ALLOW_FILES
            bad += 0 if allowed or n <= FILE_LIMIT or not f.startswith(PRODUCT) else 1
            print(f"  {n:5} {f}{'  (allowed: table)' if allowed else ''}")
    print(f"== functions over {FN_LIMIT} lines")
    for f in files:
        for name, line, n in functions(f):
            if n > FN_LIMIT or (show_all and n > FN_LIMIT * 0.8):
                allowed = (f, name) in ALLOW_FN_FILES
                bad += 0 if allowed or n <= FN_LIMIT or not f.startswith(PRODUCT) else 1
                print(f"  {n:5} {f}:{line} {name}{'  (allowed)' if allowed else ''}")
    print("== module cycles")
    for root, comp in cycles(files):
        bad += 1
        print(f"  {root}: {' <-> '.join(comp)}")
    print(f"== {bad} over the limits")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
