#!/usr/bin/env python3
"""List Rust functions longer than a limit, outside tests; exit 1 if there are any.

A function's length is the number of lines from its `fn` line to its closing brace, both
included. Tests are skipped: files under `tests/` or `benches/` directories, items marked
`#[cfg(test)]` (a `mod tests { .. }` block, or the file a `#[cfg(test)] mod x;` points to).

Usage: scripts/long-functions.py [--max N] [--exclude PATH]... [DIR_OR_FILE]...
With no paths it scans every crate of the workspace (the current directory).
"""

import argparse
import os
import re
import sys

# Longest function body allowed outside tests, in lines: what a reader takes in one sitting
# (issue 23 of the project).
DEFAULT_MAX_LINES = 120

SKIPPED_DIRS = {"tests", "benches", "target", ".git", "fuzz"}
CFG_TEST = re.compile(r"#\[cfg\((?:all\()?test\b")
PATH_ATTR = re.compile(r'#\[path\s*=\s*"([^"]+)"\]')
FN_NAME = re.compile(r"fn\s+([A-Za-z_][A-Za-z0-9_]*)")
MOD_DECL = re.compile(r"mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*;")
RAW_STRING = re.compile(r'b?r(#*)"')
CHAR_LITERAL = re.compile(r"'(?:\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'")


def blank_out(src):
    """Return `src` with comments, strings and char literals replaced by spaces (newlines kept),
    so that braces and keywords inside them are not counted."""
    out = list(src)
    i, n = 0, len(src)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c in "br" and (m := RAW_STRING.match(src, i)) and (i == 0 or not _ident(src[i - 1])):
            close = '"' + m.group(1)
            j = src.find(close, m.end())
            j = n if j < 0 else j + len(close)
            blank(i, j)
            i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{..}') or a lifetime ('a): only the former closes.
            m = CHAR_LITERAL.match(src, i)
            if m:
                blank(i, m.end())
                i = m.end()
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def _ident(c):
    return c.isalnum() or c == "_"


def item_end(code, start):
    """Index just past the item that starts at `start`: its matching `}` or its `;`."""
    depth = 0
    i, n = start, len(code)
    while i < n:
        c = code[i]
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == ";" and depth == 0:
            return i + 1
        elif c == "{" and depth == 0:
            return match_brace(code, i)
        i += 1
    return n


def match_brace(code, open_at):
    depth = 0
    for i in range(open_at, len(code)):
        if code[i] == "{":
            depth += 1
        elif code[i] == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(code)


def next_item_start(code, i):
    """Skip whitespace and further attributes after an attribute ending at `i`."""
    n = len(code)
    while i < n:
        while i < n and code[i].isspace():
            i += 1
        if code.startswith("#[", i):
            i = item_end_of_attr(code, i)
        else:
            return i
    return n


def item_end_of_attr(code, i):
    depth = 0
    for j in range(i + 1, len(code)):
        if code[j] == "[":
            depth += 1
        elif code[j] == "]":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(code)


def test_spans_and_files(path, src, code):
    """Spans of `code` under `#[cfg(test)]`, and the files such items declare as modules."""
    spans, files = [], []
    for m in CFG_TEST.finditer(code):
        attr_end = item_end_of_attr(code, m.start())
        start = next_item_start(code, attr_end)
        end = item_end(code, start)
        spans.append((m.start(), end))
        decl = MOD_DECL.match(code, start) or MOD_DECL.search(code[start:end])
        if decl and code[start:end].rstrip().endswith(";"):
            # `#[path]` attributes are in the original text (their string was blanked).
            path_attr = PATH_ATTR.search(src[m.start():start])
            files.append(module_file(path, decl.group(1), path_attr and path_attr.group(1)))
    return spans, files


def module_file(path, name, path_attr):
    directory = os.path.dirname(path)
    if path_attr:
        return os.path.normpath(os.path.join(directory, path_attr))
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem not in ("lib", "main", "mod"):
        directory = os.path.join(directory, stem)
    return os.path.normpath(os.path.join(directory, name + ".rs"))


def long_functions(path, src, code, max_lines):
    spans, _ = test_spans_and_files(path, src, code)
    found = []
    for m in FN_NAME.finditer(code):
        if m.start() > 0 and _ident(code[m.start() - 1]):
            continue
        if any(a <= m.start() < b for a, b in spans):
            continue
        end = item_end(code, m.end())
        if not code[:end].endswith("}"):
            continue  # a declaration without a body (trait method)
        first = code.count("\n", 0, m.start()) + 1
        last = code.count("\n", 0, end - 1) + 1
        if last - first + 1 > max_lines:
            found.append((path, first, m.group(1), last - first + 1))
    return found


def rust_files(roots):
    for root in roots:
        if os.path.isfile(root):
            yield os.path.normpath(root)
            continue
        for directory, subdirs, files in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if d not in SKIPPED_DIRS)
            for name in sorted(files):
                if name.endswith(".rs"):
                    yield os.path.normpath(os.path.join(directory, name))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=DEFAULT_MAX_LINES, help="longest allowed, in lines")
    parser.add_argument("--exclude", action="append", default=[], help="a file to skip (repeatable)")
    parser.add_argument("paths", nargs="*", default=["."], help="directories or files to scan")
    args = parser.parse_args()

    excluded = {os.path.normpath(p) for p in args.exclude}
    sources = {}
    for path in rust_files(args.paths):
        with open(path, encoding="utf-8") as f:
            src = f.read()
        sources[path] = (src, blank_out(src))
    for path, (src, code) in sources.items():
        excluded.update(test_spans_and_files(path, src, code)[1])

    offenders = []
    for path, (src, code) in sources.items():
        if path not in excluded:
            offenders += long_functions(path, src, code, args.max)
    for path, line, name, length in offenders:
        print(f"{path}:{line}: fn {name} is {length} lines (limit {args.max})")
    return 1 if offenders else 0


if __name__ == "__main__":
    sys.exit(main())
