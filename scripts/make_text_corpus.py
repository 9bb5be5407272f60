"""Write a large English corpus, offline and deterministically, for the BPE benchmark.

``python scripts/make_text_corpus.py OUT.txt [--megabytes 100] [--seed 0] [--vary 0.03]``

The base text is what every CPython ships: the docstrings of the standard
library's modules, classes and functions (parsed with :mod:`ast` from the
``.py`` files under ``sysconfig.get_paths()["stdlib"]``, in sorted path
order, without test suites, ``site-packages`` and ``idlelib``) and the
language reference topics of ``pydoc_data.topics`` -- about 2.1 MB in Python
3.11.  It is cut into paragraphs (at blank lines) and written again and again
until OUT has the size asked for (whole paragraphs, so slightly more).  Each
pass ``r`` varies it with ``random.Random(seed * 1_000_003 + r)``:

- the paragraphs come in a new random order;
- every number is replaced by a random one of the same number of digits;
- 3% of the words (``--vary``; runs of letters of 4 or more) get a variant: a suffix
  (``s``, ``ed``, ``ing``, ``er``, ``ly``, ``ness``), two adjacent inner
  letters swapped, or a capital first letter,

so the vocabulary keeps growing with the size (as in real text; a plain
repetition would add no new words).  The same Python version, size and seed
give the same bytes.  The text is the Python Software Foundation's, under the
PSF licence (https://docs.python.org/3/license.html).
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import re
import sys
import sysconfig
from pathlib import Path

_SKIP_DIRS = {"site-packages", "test", "tests", "idlelib", "__pycache__"}
_SUFFIXES = ("s", "ed", "ing", "er", "ly", "ness")
_TOKEN = re.compile(r"[A-Za-z]{4,}|[0-9]+")


def base_paragraphs() -> list[str]:
    """The standard library's docstrings and pydoc topics, as paragraphs (deterministic order)."""
    texts: list[str] = []
    root = sysconfig.get_paths()["stdlib"]
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            try:
                tree = ast.parse(Path(folder, name).read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc:
                        texts.append(doc)
    from pydoc_data.topics import topics

    texts.extend(topics[key] for key in sorted(topics))
    paragraphs = []
    for text in texts:
        paragraphs.extend(p.strip("\n") for p in re.split(r"\n\s*\n", text) if p.strip())
    return paragraphs


def _vary(rng: random.Random, rate: float):
    def sub(match: re.Match) -> str:
        word = match.group()
        if word[0].isdigit():
            return "".join(rng.choice("0123456789") for _ in word)
        if rng.random() >= rate:
            return word
        kind = rng.randrange(3)
        if kind == 0:
            return word + rng.choice(_SUFFIXES)
        if kind == 1:
            i = rng.randrange(1, len(word) - 2)
            return word[:i] + word[i + 1] + word[i] + word[i + 2:]
        return word[0].upper() + word[1:]
    return sub


def write_corpus(path: Path, megabytes: float, seed: int = 0, vary: float = 0.03) -> int:
    """Write about ``megabytes`` MB (10**6 bytes) of varied text to ``path``; return its size in bytes."""
    paragraphs = base_paragraphs()
    target = int(megabytes * 1_000_000)
    size, r = 0, 0
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as out:
        while size < target:
            rng = random.Random(seed * 1_000_003 + r)
            order = list(range(len(paragraphs)))
            rng.shuffle(order)
            sub = _vary(rng, vary)
            for k in order:
                text = _TOKEN.sub(sub, paragraphs[k]) + "\n\n"
                out.write(text)
                size += len(text.encode("utf-8"))
                if size >= target:
                    break
            r += 1
    os.replace(tmp, path)
    return size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, metavar="OUT.txt")
    parser.add_argument("--megabytes", type=float, default=100.0, help="size in MB, 10**6 bytes (default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the variations (default: 0)")
    parser.add_argument("--vary", type=float, default=0.03,
                        help="fraction of the words given a variant in each pass (default: 0.03)")
    args = parser.parse_args(argv)
    size = write_corpus(args.output, args.megabytes, args.seed, args.vary)
    print(f"wrote {args.output}: {size:,} bytes (Python {sys.version.split()[0]} standard library text)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
