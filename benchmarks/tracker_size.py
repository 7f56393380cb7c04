"""Size of the tracker script: raw, gzipped, stripped and minified.

    .venv/bin/python -m benchmarks.tracker_size            # print the table
    .venv/bin/python -m benchmarks.tracker_size --terser   # also minify with terser (npx, Node)

The budget is "at most 16 KB minified" for tracker.js, the file every page loads (issue 17 raised
it from 15 KB for the hook that loads the live part). Minified means
what terser (-c -m) makes of it, measured when Node is at hand (``--terser``). Without a
JavaScript toolchain, ``strip`` below removes comments and indentation only (no renaming), which
is what the test suite's size guard measures: its gzip size tracks terser's output closely
enough to catch growth.
"""

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "personalization" / "static" / "personalization"
FILES = [
    "tracker.js",
    "tracker-banner.js",
    "tracker-items.js",
    "tracker-survey.js",
    "tracker-live.js",
]
BUDGET_BYTES = 16 * 1000

_IDENT = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")
_REGEX_AFTER = set("(,=:[!&|?{};+-*%<>~^")
_REGEX_KEYWORDS = {"return", "typeof", "case", "do", "else", "in", "of", "new", "delete", "void"}
_REGEX_KEYWORDS |= {"throw", "instanceof", "yield", "await"}


def _skip_string(src: str, i: int) -> int:
    """Index just past the string (or template literal) starting at ``src[i]``."""
    quote, i = src[i], i + 1
    depth = 0
    while i < len(src):
        c = src[i]
        if c == "\\":
            i += 2
            continue
        if quote == "`" and c == "$" and src[i + 1 : i + 2] == "{":
            depth += 1
            i += 2
            continue
        if quote == "`" and depth and c == "}":
            depth -= 1
        elif c == quote and not depth:
            return i + 1
        i += 1
    raise ValueError("unterminated string")


def _skip_regex(src: str, i: int) -> int:
    i += 1
    in_class = False
    while i < len(src):
        c = src[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            in_class = True
        elif c == "]":
            in_class = False
        elif c == "/" and not in_class:
            i += 1
            while i < len(src) and src[i] in _IDENT:
                i += 1
            return i
        i += 1
    raise ValueError("unterminated regular expression")


def strip(src: str) -> str:
    """Remove comments and indentation; keep one newline between lines (so no reliance on how
    semicolons were written) and one space only where two words would otherwise merge."""
    out: list[str] = []
    i = 0
    pending_space = pending_newline = False

    def last_word() -> str:
        text = "".join(out[-3:])
        word = ""
        for ch in reversed(text):
            if ch not in _IDENT:
                break
            word = ch + word
        return word

    def emit(token: str) -> None:
        nonlocal pending_space, pending_newline
        if out:
            prev = out[-1][-1]
            if pending_newline:
                out.append("\n")
            elif pending_space and (
                (prev in _IDENT and token[0] in _IDENT) or (prev in "+-" and token[0] == prev)
            ):
                out.append(" ")
        pending_space = pending_newline = False
        out.append(token)

    while i < len(src):
        c = src[i]
        if c == "/" and src[i + 1 : i + 2] == "/":
            i = src.find("\n", i)
            i = len(src) if i < 0 else i
        elif c == "/" and src[i + 1 : i + 2] == "*":
            i = src.index("*/", i) + 2
            pending_space = True
        elif c == "\n":
            pending_newline = bool(out)
            i += 1
        elif c in " \t\r":
            pending_space = True
            i += 1
        elif c in "'\"`":
            end = _skip_string(src, i)
            emit(src[i:end])
            i = end
        elif c == "/" and (
            not out or out[-1][-1] in _REGEX_AFTER or last_word() in _REGEX_KEYWORDS
        ):
            end = _skip_regex(src, i)
            emit(src[i:end])
            i = end
        elif c in _IDENT:
            j = i
            while j < len(src) and src[j] in _IDENT:
                j += 1
            emit(src[i:j])
            i = j
        else:
            emit(c)
            i += 1
    return "".join(out) + "\n"


def terser(path: Path) -> int | None:
    """Bytes of terser's output (-c -m), or None without Node."""
    npx = shutil.which("npx")
    if npx is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [npx, "--yes", "terser@5", str(path), "-c", "-m", "--comments", "false"],
            capture_output=True,
            cwd=tmp,
            timeout=300,
        )
    return len(done.stdout) if done.returncode == 0 else None


def measure(with_terser: bool = False) -> list[dict[str, int | str | None]]:
    rows: list[dict[str, int | str | None]] = []
    for name in FILES:
        src = (STATIC / name).read_text()
        stripped = strip(src)
        rows.append(
            {
                "file": name,
                "raw": len(src.encode()),
                "raw_gzip": len(gzip.compress(src.encode(), 9)),
                "stripped": len(stripped.encode()),
                "stripped_gzip": len(gzip.compress(stripped.encode(), 9)),
                "terser": terser(STATIC / name) if with_terser else None,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terser", action="store_true", help="also minify with terser (npx)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = measure(with_terser=args.terser)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        return
    cols = ["file", "raw", "raw_gzip", "stripped", "stripped_gzip", "terser"]
    print(" | ".join(cols))
    for row in rows:
        print(" | ".join(str(row[c]) if row[c] is not None else "-" for c in cols))
    core = rows[0]["terser"]
    if isinstance(core, int):
        verdict = "within" if core <= BUDGET_BYTES else "OVER"
        print(f"tracker.js minified: {core} bytes, {verdict} the {BUDGET_BYTES}-byte budget")


if __name__ == "__main__":
    main()
