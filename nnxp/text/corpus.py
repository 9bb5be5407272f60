"""Where the text comes from: a user's UTF-8 file or directory, or the offline default.

The default corpus is the English documentation text that ships inside every
CPython (``pydoc_data.topics``: the language reference topics ``help()``
shows), so ``nnxp text ...`` works offline on a fresh machine.  It is the
Python Software Foundation's documentation, under the PSF licence
(https://docs.python.org/3/license.html), read from the interpreter's own
standard library, not copied into nnxp.

Files must be UTF-8 text: a file with NUL bytes, invalid UTF-8, or a line
longer than :data:`MAX_LINE` characters (a "text" file that is really one
blob, which the tokenizer would take as one word) is refused with one
:class:`~nnxp.errors.DataError` line naming the file and the fix.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import DataError

__all__ = ["read_corpus", "default_corpus", "DEFAULT_CORPUS_NAME", "MAX_LINE"]

#: the longest line a corpus file may have, in characters
MAX_LINE = 100_000

DEFAULT_CORPUS_NAME = f"CPython {sys.version_info.major}.{sys.version_info.minor} documentation (pydoc_data.topics)"


def default_corpus() -> str:
    """The documentation topics of this CPython, joined in sorted topic order."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip it
        raise DataError("this Python has no pydoc_data (the default corpus): give a CORPUS "
                        "file or directory of UTF-8 text") from None
    return "\n\n".join(topics[key] for key in sorted(topics))


def read_corpus(path: str | os.PathLike | None = None) -> tuple[str, str]:
    """(text, name) of a UTF-8 file, every file under a directory, or the default corpus (``None``).

    A directory's regular files are read recursively in sorted path order,
    skipping hidden files and folders (names starting with a dot).
    """
    if path is None:
        return default_corpus(), DEFAULT_CORPUS_NAME
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise DataError(f"directory {path} has no files: give a UTF-8 text file or a directory of them")
        text = "\n".join(_read_text(p) for p in files)
    elif path.exists():
        text = _read_text(path)
    else:
        raise DataError(f"corpus {path} not found: give a UTF-8 text file or directory "
                        "(or no CORPUS for the built-in English text)")
    if not text.strip():
        raise DataError(f"corpus {path} is empty (no text): give a file with some UTF-8 text")
    return text, str(path)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if b"\0" in data:
        raise DataError(f"{path} is a binary file (it has NUL bytes), not text: give UTF-8 text files")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (invalid byte at offset {exc.start}): "
                        "convert it to UTF-8, e.g. iconv -t UTF-8") from None
    if len(text) > MAX_LINE:
        for number, line in enumerate(text.splitlines(), 1):
            if len(line) > MAX_LINE:
                raise DataError(f"{path}: line {number} is {len(line):,} characters long (at most {MAX_LINE:,}): "
                                "this is not line-based text; break it into lines")
    return text
