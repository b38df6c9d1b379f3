#!/usr/bin/env python3
"""Fails when the files of a crate's src/ directory import each other in a cycle.

    scripts/module-cycles.py [--edges] wire/src [authority/src ...]

An edge `a.rs -> b.rs` is any `crate::`, `super::` or `self::` path in a.rs's code that
names module b (the longest prefix of the path that is a file; a path that names no module
file, such as `crate::Item` re-exported at the root, points at the root file). Comments,
string contents, `#[cfg(test)]` items (so `mod tests { .. }`) and the files of test-only
modules (`#[cfg(test)] mod tests;`, or with a `#[path]`) are left out: tests may reach up, code may not. `mod x;` declarations are
containment, not use. Self-edges are ignored.

With `--edges`, also prints every file's imports. Prints each cycle found (one per strongly connected group of files) and exits 1, else 0.
Python 3, standard library only.
"""

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(text):
    """Returns `text` with comments removed and string and char literal contents blanked."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            out.append(" ")
        elif re.match(r'b?r#*"', text[i:i + 258]) and (i == 0 or not text[i - 1].isalnum()):
            m = re.match(r'b?r(#*)"', text[i:])
            end = text.find('"' + m.group(1), i + m.end())
            i = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.[^']*|[^\\'])'", text[i:i + 12]):
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:i + 12])
            i += m.end()
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_items(code):
    """Removes every item under `#[cfg(test)]`; returns the code and test-only module names."""
    test_mods = set()
    while True:
        m = re.search(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]", code)
        if not m:
            return code, test_mods
        i = m.end()
        decl = re.match(r"(\s*#\s*\[[^\]]*\])*\s*(pub(\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;",
                        code[i:])
        if decl:
            test_mods.add(decl.group(4))
        depth = 0
        while i < len(code):
            if code[i] == "{":
                depth += 1
            elif code[i] == "}":
                depth -= 1
                if depth == 0:
                    i += 1
                    break
            elif code[i] == ";" and depth == 0:
                i += 1
                break
            i += 1
        code = code[:m.start()] + code[i:]


def expand_use(tree):
    """Expands a use tree such as `a::{b, c::{d, e}}` into paths (lists of segments)."""
    tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+" + IDENT, "", tree))
    paths = []

    def walk(prefix, s):
        parts, depth, start = [], 0, 0
        for k, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(s[start:k])
                start = k + 1
        parts.append(s[start:])
        for part in filter(None, parts):
            brace = part.find("{")
            if brace >= 0:
                head = [seg for seg in part[:brace].split("::") if seg]
                walk(prefix + head, part[brace + 1:part.rindex("}")])
            else:
                paths.append(prefix + part.split("::"))

    walk([], tree)
    return paths


def module_files(src):
    """Maps each module path (tuple of names, () for the root) to its file."""
    modules = {}
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src).with_suffix("").parts
        if rel in (("lib",), ("main",)):
            modules[()] = path
        elif rel and rel[-1] == "mod":
            modules[rel[:-1]] = path
        elif "bin" not in rel[:1]:
            modules[rel] = path
    return modules


def target(modules, base, segments):
    """The longest module prefix of `base + segments` that is a file."""
    full = tuple(base) + tuple(s for s in segments if s not in ("*", "self"))
    for k in range(len(full), -1, -1):
        if full[:k] in modules:
            return full[:k]
    return ()


def edges_of(module, code, modules):
    """The modules that `module`'s code names."""
    found = set()
    paths = []
    for m in re.finditer(r"\buse\s+((?:crate|super|self)\s*::[^;]*);", code):
        paths.extend(expand_use(m.group(1)))
    # Paths that start at a child module (`use codec::decode;` in lib.rs).
    children = {m[-1] for m in modules if m and m[:-1] == module}
    for m in re.finditer(r"\buse\s+(" + IDENT + r"\s*::[^;]*);", code):
        paths.extend(p for p in expand_use(m.group(1)) if p[0] in children)
    without_uses = re.sub(r"\buse\s+[^;]*;", " ", code)
    for m in re.finditer(r"(?<![A-Za-z0-9_$:])((?:crate|super|self|" + IDENT + r")"
                         r"(?:\s*::\s*" + IDENT + r")+)", without_uses):
        path = re.sub(r"\s+", "", m.group(1)).split("::")
        if path[0] in ("crate", "super", "self") or path[0] in children:
            paths.append(path)
    # A `mod.rs`/`lib.rs` file is its module; `foo.rs` is module foo, whose parent is above.
    for path in paths:
        base = list(module)
        segments = list(path)
        if segments[0] == "crate":
            base, segments = [], segments[1:]
        while segments and segments[0] in ("super", "self"):
            if segments.pop(0) == "super":
                base = base[:-1]
        found.add(target(modules, base, segments))
    found.discard(module)
    return found


def cycles(graph):
    """The strongly connected groups of more than one node, and one cycle (a list of nodes,
    first and last the same) through each."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(set(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    found = []
    for group in groups:
        start = min(group)
        # Breadth-first from `start` back to itself inside the group.
        previous, frontier = {start: None}, [start]
        while frontier:
            v = frontier.pop(0)
            for w in sorted(graph[v]):
                if w == start:
                    path = [v]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    found.append(list(reversed(path)) + [start])
                    frontier = []
                    break
                if w in group and w not in previous:
                    previous[w] = v
                    frontier.append(w)
    return groups, found


def check(src, show_edges=False):
    src = Path(src)
    modules = module_files(src)
    graph, test_only = {}, set()
    test_files = set()
    for module, path in modules.items():
        text = path.read_text()
        code, test_mods = drop_test_items(strip(text))
        test_only.update(module + (name,) for name in test_mods)
        # `#[cfg(test)] #[path = "shard_tests.rs"] mod tests;`
        for m in re.finditer(r'#\[cfg\(test\)\]\s*#\[path\s*=\s*"([^"]+)"\]', text):
            test_files.add((path.parent / m.group(1)).resolve())
        graph[module] = edges_of(module, code, modules)
    for module in list(graph):
        if modules[module].resolve() in test_files or any(
            module[:k] in test_only for k in range(1, len(module) + 1)
        ):
            del graph[module]
    graph = {v: {w for w in ws if w in graph} for v, ws in graph.items()}
    groups, found = cycles(graph)

    def name(module):
        return str(modules[module].relative_to(src))

    if show_edges:
        for module in sorted(graph):
            print(f"{name(module)} -> {' '.join(sorted(name(w) for w in graph[module]))}")
    for cycle in found:
        print(f"{src}: module cycle: " + " -> ".join(name(m) for m in cycle))
        group = next(g for g in groups if cycle[0] in g)
        print(f"{src}: files in that cycle: " + " ".join(sorted(name(m) for m in group)))
    return not found


if __name__ == "__main__":
    args = sys.argv[1:]
    show_edges = "--edges" in args
    dirs = [arg for arg in args if arg != "--edges"]
    if not dirs:
        sys.exit(__doc__)
    results = [check(src, show_edges) for src in dirs]
    sys.exit(0 if all(results) else 1)
