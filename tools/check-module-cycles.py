#!/usr/bin/env python3
"""Fail when an import circle between the crate's top-level modules exists.

Usage:
  tools/check-module-cycles.py                 # check the project (exit 0/1)
  tools/check-module-cycles.py --print-graph   # also list every edge
  tools/check-module-cycles.py --root DIR      # check another crate root
  tools/check-module-cycles.py --self-test     # run the built-in tests

Top-level modules are the files src/*.rs (except lib.rs and main.rs) and the
directories src/*/ (a `src/x.rs` next to `src/x/` is the same module x). The
files of a module are the file itself, or every .rs file beneath the directory.
An edge A -> B exists when a file of A names `crate::B` (also `$crate::B`, a
grouped `crate::{B::x, C}`, and `super::...` chains that climb to the crate
root), with B another top-level module. Comments and string/char literals are
ignored. Everything counts, #[cfg(test)] code included.

Exit status: 0 no cycles, 1 at least one cycle, 2 usage error (no src/).
Python 3 standard library only.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict, deque

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------
# Lexing: blank out comments and literals (keeping newlines), then tokenize.

_CHAR_LIT = re.compile(r"'(?:\\(?:x[0-9A-Fa-f]{2}|u\{[0-9A-Fa-f_]{1,8}\}|.)|[^\\'\n])'")
_RAW_STR = re.compile(r'(b|c)?r(#*)"')


def strip_comments_and_literals(src):
    """Source with comments and literals replaced by spaces (newlines kept)."""
    out = []
    i, n = 0, len(src)

    def blank(s):
        return "".join("\n" if ch == "\n" else " " for ch in s)

    while i < n:
        c = src[i]
        nxt = src[i + 1] if i + 1 < n else ""
        prev_ident = i > 0 and (src[i - 1].isalnum() or src[i - 1] == "_")
        if c == "/" and nxt == "/":  # line comment, incl. /// and //!
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(src[i:j]))
            i = j
        elif c == "/" and nxt == "*":  # block comment (nests in Rust)
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(src[i:j]))
            i = j
        elif not prev_ident and _RAW_STR.match(src, i):  # r"..", r#".."#, br"..", cr".."
            m = _RAW_STR.match(src, i)
            end = '"' + m.group(2)
            j = src.find(end, m.end())
            j = n if j < 0 else j + len(end)
            out.append(blank(src[i:j]))
            i = j
        elif c == '"' or (not prev_ident and c in "bc" and nxt == '"'):  # "..", b"..", c".."
            j = i + (1 if c == '"' else 2)
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(blank(src[i:j]))
            i = j
        elif c == "'" or (not prev_ident and c == "b" and nxt == "'"):  # char or lifetime
            start = i + (1 if c == "b" else 0)
            m = _CHAR_LIT.match(src, start)
            if m:
                out.append(blank(src[i:m.end()]))
                i = m.end()
            else:  # a lifetime or label: keep it
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


_TOKEN = re.compile(r"\$?[A-Za-z_][A-Za-z0-9_]*|::|[{}(),;*]|\n|.", re.S)


def tokens(clean):
    """(text, line) for identifiers, '::', braces, ',' and other punctuation."""
    line = 1
    for m in _TOKEN.finditer(clean):
        t = m.group()
        if t == "\n":
            line += 1
        elif not t.isspace():
            yield t, line


def _ident(t):
    return t[:1] == "_" or t[:1].isalpha()


def module_path_of(rel_parts):
    """Module path of a file from its path parts under src/ (e.g. [broker, mod.rs])."""
    parts = list(rel_parts)
    last = parts.pop()[:-3]
    if last != "mod":
        parts.append(last)
    return parts


def references(clean, file_mod):
    """Yield (top-level name, line) for every crate-rooted path in the text.

    file_mod is the module path of the file (e.g. ['broker', 'store']); inline
    `mod x { ... }` blocks are tracked so `super::` resolves correctly."""
    toks = list(tokens(clean))
    n = len(toks)
    depth = 0
    scopes = []  # (module path, brace depth at which the inline mod ends)
    pending_mod = None  # name of `mod NAME` waiting for its `{`
    cur = list(file_mod)

    def group_heads(j):
        """Top names of a `{ a::x, b, c as d }` group starting at toks[j] == '{'."""
        d, first, k = 0, True, j
        while k < n:
            t, ln = toks[k]
            if t == "{":
                d += 1
                first = first if d > 1 else True
            elif t == "}":
                d -= 1
                if d == 0:
                    return
            elif t == "," and d == 1:
                first = True
            elif d == 1 and first:
                first = False
                if _ident(t) and t not in ("self", "super", "crate"):
                    yield t, ln
            k += 1

    i = 0
    while i < n:
        t, ln = toks[i]
        if t == "{":
            depth += 1
            if pending_mod is not None:
                cur = cur + [pending_mod]
                scopes.append((cur, depth))
                pending_mod = None
        elif t == "}":
            if scopes and scopes[-1][1] == depth:
                scopes.pop()
                cur = scopes[-1][0] if scopes else list(file_mod)
            depth -= 1
        elif t == ";":
            pending_mod = None
        elif t == "mod" and i + 1 < n and _ident(toks[i + 1][0]):
            pending_mod = toks[i + 1][0]
        elif t in ("crate", "$crate", "super") and i + 1 < n and toks[i + 1][0] == "::":
            prev = toks[i - 1][0] if i else ""
            if prev == "::":  # middle of a longer path (e.g. self::super::)
                i += 1
                continue
            if t == "super":  # climb: super::super::x
                base, j = list(cur), i
                while j + 1 < n and toks[j][0] == "super" and toks[j + 1][0] == "::":
                    base = base[:-1]
                    j += 2
                if base or j >= n:  # still inside some module: not crate-rooted
                    i = j
                    continue
                j -= 1  # toks[j] == '::' after the last super
            else:
                j = i + 1
            if j + 1 < n:
                nt = toks[j + 1][0]
                if nt == "{":
                    for name, gl in group_heads(j + 1):
                        yield name, gl
                elif _ident(nt):
                    yield nt, ln
            i = j + 1
            continue
        i += 1


# --------------------------------------------------------------------------
# Graph


def collect(root):
    src = os.path.join(root, "src")
    if not os.path.isdir(src):
        raise SystemExit("check-module-cycles: no src/ directory under %s" % root)
    files = defaultdict(list)  # module -> [abs path]
    for entry in sorted(os.listdir(src)):
        p = os.path.join(src, entry)
        if os.path.isfile(p) and entry.endswith(".rs") and entry not in ("lib.rs", "main.rs"):
            files[entry[:-3]].append(p)
        elif os.path.isdir(p) and not entry.startswith("."):
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames.sort()
                for f in sorted(filenames):
                    if f.endswith(".rs"):
                        files[entry].append(os.path.join(dirpath, f))
            files.setdefault(entry, [])
    return src, dict(files)


def build_graph(root):
    src, files = collect(root)
    modules = sorted(files)
    mods = set(modules)
    edges = defaultdict(list)  # (a, b) -> [(relpath, line)]
    for a in modules:
        for path in files[a]:
            with open(path, encoding="utf-8", errors="replace") as f:
                clean = strip_comments_and_literals(f.read())
            rel_parts = os.path.relpath(path, src).split(os.sep)
            rel = os.path.relpath(path, root)
            for b, line in references(clean, module_path_of(rel_parts)):
                if b in mods and b != a:
                    edges[(a, b)].append((rel, line))
    return modules, dict(edges), sum(len(v) for v in files.values())


def sccs(modules, adj):
    """Tarjan's algorithm (iterative); components in a deterministic order."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    for s in modules:
        if s in index:
            continue
        work = [(s, iter(sorted(adj[s])))]
        index[s] = low[s] = counter[0]
        counter[0] += 1
        stack.append(s)
        on.add(s)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(adj[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(sorted(comp))
    return sorted(out, key=lambda c: c[0])


def shortest_path(adj, src, dst, allowed):
    prev, q = {src: None}, deque([src])
    while q:
        v = q.popleft()
        if v == dst:
            break
        for w in sorted(adj[v]):
            if w in allowed and w not in prev:
                prev[w] = v
                q.append(w)
    if dst not in prev:
        return None
    path, v = [], dst
    while v is not None:
        path.append(v)
        v = prev[v]
    return path[::-1]


def fmt_locs(locs, limit=4):
    s = ", ".join("%s:%d" % l for l in locs[:limit])
    if len(locs) > limit:
        s += ", +%d more" % (len(locs) - limit)
    return s


def check(root, print_graph=False, out=sys.stdout):
    modules, edges, nfiles = build_graph(root)
    adj = defaultdict(set)
    for a, b in edges:
        adj[a].add(b)
    w = out.write
    if print_graph:
        w("edges (module -> module: mentions, locations):\n")
        for (a, b) in sorted(edges):
            w("  %s -> %s: %d  %s\n" % (a, b, len(edges[(a, b)]), fmt_locs(edges[(a, b)], 3)))
    groups = [c for c in sccs(modules, adj) if len(c) > 1]
    if not groups:
        w("module graph: %d modules, %d edges, no cycles\n" % (len(modules), len(edges)))
        return 0
    w("module graph: %d modules, %d edges, %d cycle group(s)\n"
      % (len(modules), len(edges), len(groups)))
    for gi, comp in enumerate(groups, 1):
        members = set(comp)
        inner = sorted(e for e in edges if e[0] in members and e[1] in members)
        w("\ncycle group %d: %s (%d modules, %d edges inside)\n"
          % (gi, ", ".join(comp), len(comp), len(inner)))
        # One cycle through every inner edge not yet on a printed cycle, so
        # each edge that has to go is shown at least once.
        covered, cycles = set(), []
        for (a, b) in sorted(inner, key=lambda e: (e[0] != comp[0], e)):
            if (a, b) in covered:
                continue
            back = shortest_path(adj, b, a, members)
            cyc = [a] + back  # a -> b ... -> a
            cycles.append(cyc)
            covered.update(zip(cyc, cyc[1:]))
        for cyc in cycles:
            w("  cycle: %s\n" % " -> ".join(cyc))
            for x, y in zip(cyc, cyc[1:]):
                w("    %s -> %s: %s\n" % (x, y, fmt_locs(edges[(x, y)])))
    return 1


# --------------------------------------------------------------------------
# Self-test

SELF_TESTS = [
    # (name, {relative path: text}, expected exit, modules the report must name)
    ("acyclic a->b->c (with decoys in comments/strings)", {
        "src/lib.rs": "pub mod a;\npub mod b;\npub mod c;\n",
        "src/a/mod.rs": "use crate::b::Thing;\nmod inner;\n",
        "src/a/inner.rs": "pub fn f() { super::super::b::g(); }\n",
        "src/b.rs": "//! docs naming crate::a::x\nuse crate::c;\npub struct Thing;\n"
                    "pub fn g() {}\n",
        "src/c.rs": "// use crate::a;\n/// see crate::b::Thing\n/* crate::a /* nested */ crate::b */\n"
                    "pub fn h() -> (&'static str, char, &'static str) {\n"
                    "    (\"crate::a::f()\", '\"', r#\"crate::b\"#)\n}\n"
                    "pub fn l<'a>(x: &'a str) -> &'a str { x }\n",
    }, 0, []),
    ("cycle a->b->a through a grouped use", {
        "src/lib.rs": "pub mod a;\npub mod b;\npub mod c;\n",
        "src/a.rs": "use crate::{\n    b::{x, y as z},\n    c,\n};\npub fn f() {}\n",
        "src/b.rs": "use crate::a::f;\npub fn x() {}\npub fn y() {}\n",
        "src/c.rs": "pub fn c() {}\n",
    }, 1, ["a", "b"]),
    ("cycle a->b->a through a plain path crate::a::f()", {
        "src/lib.rs": "pub mod a;\npub mod b;\n",
        "src/main.rs": "fn main() { crate::a::f(); }\n",
        "src/a.rs": "pub fn f() {}\n#[cfg(test)]\nmod tests {\n    #[test]\n"
                    "    fn t() { crate::b::g(); }\n}\n",
        "src/b/mod.rs": "pub fn g() {\n    let _ = 1;\n    crate::a::f()\n}\n",
    }, 1, ["a", "b"]),
]


def self_test():
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="module-cycles-") as tmp:
        for k, (name, tree, want_rc, want_names) in enumerate(SELF_TESTS, 1):
            root = os.path.join(tmp, "crate%d" % k)
            for rel, text in tree.items():
                p = os.path.join(root, rel)
                os.makedirs(os.path.dirname(p), exist_ok=True)
                with open(p, "w") as f:
                    f.write(text)
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--root", root],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  universal_newlines=True)
            problems = []
            if proc.returncode != want_rc:
                problems.append("exit %d, expected %d" % (proc.returncode, want_rc))
            if want_rc == 0 and "no cycles" not in proc.stdout:
                problems.append("no 'no cycles' line")
            if want_rc == 1:
                m = re.search(r"cycle: (.*)", proc.stdout)
                path = m.group(1).split(" -> ") if m else []
                if not m or any(x not in path for x in want_names) or path[0] != path[-1]:
                    problems.append("cycle path does not name %s" % " and ".join(want_names))
            if problems:
                failed += 1
                print("FAIL %d: %s: %s\n%s" % (k, name, "; ".join(problems),
                                               "    " + proc.stdout.replace("\n", "\n    ")))
            else:
                passed += 1
                print("ok   %d: %s" % (k, name))
    print("self-test: %d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Fail when top-level modules of the crate import each other in a circle.")
    ap.add_argument("--root", default=ROOT, help="crate root holding src/ (default: %s)" % ROOT)
    ap.add_argument("--print-graph", action="store_true", help="list every edge first")
    ap.add_argument("--self-test", action="store_true", help="run the built-in tests")
    args = ap.parse_args(argv)
    if args.self_test:
        return self_test()
    try:
        return check(os.path.abspath(args.root), args.print_graph)
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
