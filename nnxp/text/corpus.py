"""Where the text comes from: a user's UTF-8 file or directory, or the offline default.

The default corpus is the English documentation text that ships inside every
CPython (``pydoc_data.topics``: the language reference topics ``help()``
shows), so ``nnxp text ...`` works offline on a fresh machine.  It is the
Python Software Foundation's documentation, under the PSF licence
(https://docs.python.org/3/license.html), read from the interpreter's own
standard library, not copied into nnxp.

Files must be UTF-8 text: a file with NUL bytes or invalid UTF-8 is refused
with one :class:`~nnxp.errors.DataError` line naming the file and the fix.
:func:`read_corpus` (which holds the whole text, for the next-token model)
also refuses a line longer than :data:`MAX_LINE` characters (a "text" file
that is really one blob, which the tokenizer would take as one word).

:func:`corpus_blocks` streams a corpus as blocks of about ``block_size``
characters, each cut where no pre-tokenizer chunk can cross (after an ASCII
letter or digit that an ASCII non-alphanumeric character follows, e.g.
``word|,`` or ``word| next``), so that chunking the blocks one by one gives
the chunks of the whole text, while only one block is in memory.  A run of
more than :data:`MAX_RUN` characters with no such place (a huge line of one
"word", or a file that is not text) is refused.
"""

from __future__ import annotations

import codecs
import os
import re
import sys
from pathlib import Path
from typing import Iterator

from ..errors import DataError
from ..io.read import LIMITS, open_input, read_bytes

__all__ = ["corpus_files", "read_corpus", "corpus_blocks", "text_blocks", "default_corpus", "DEFAULT_CORPUS_NAME",
           "MAX_RUN", "MAX_LINE"]

#: The longest stretch of text without a place to cut it into blocks (characters).
MAX_RUN = 1 << 20
BLOCK_SIZE = 1 << 16
_CUT = re.compile(r"[A-Za-z0-9](?=[\x00-/:-@\[-`{-\x7f])")
#: the longest line a corpus file read whole (read_corpus) may have, in characters
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
        files = corpus_files(path)
        if not files:
            raise DataError(f"directory {path} has no files: give a UTF-8 text file or a directory of them")
        texts, size = [], 0
        for p in files:
            texts.append(_read_text(p))
            size += len(texts[-1])
            if size > LIMITS["corpus"]:
                raise DataError(f"{path}: its files hold over {LIMITS['corpus'] >> 20} MiB, the limit for a "
                                "corpus; give a smaller directory")
        text = "\n".join(texts)
    elif path.exists():
        text = _read_text(path)
    else:
        raise DataError(f"corpus {path} not found: give a UTF-8 text file or directory "
                        "(or no CORPUS for the built-in English text)")
    if not text.strip():
        raise DataError(f"corpus {path} is empty (no text): give a file with some UTF-8 text")
    for _ in text_blocks([text], name=str(path)):  # a huge run with no place to cut is refused here too
        pass
    return text, str(path)


def corpus_files(path: str | os.PathLike) -> list[Path]:
    """The files :func:`read_corpus` reads from the directory ``path``: its regular files, recursively,
    in sorted path order, hidden files and folders (names starting with a dot) skipped."""
    path = Path(path)
    return sorted(p for p in path.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(path).parts))


def _read_text(path: Path) -> str:
    try:
        data = read_bytes(path, "corpus")
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


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise DataError(f"directory {path} has no files: give a UTF-8 text file or a directory of them")
        return files
    if path.exists():
        return [path]
    raise DataError(f"corpus {path} not found: give a UTF-8 text file or directory "
                    "(or no CORPUS for the built-in English text)")


def _stream_file(path: Path, read_size: int) -> Iterator[str]:
    """The text of one file, decoded piece by piece (NUL bytes and invalid UTF-8 refused)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    try:
        with open_input(path, "corpus") as f:  # never blocks on a FIFO, refuses /dev/zero
            while True:
                data = f.read(read_size)
                if b"\0" in data:
                    raise DataError(f"{path} is a binary file (it has NUL bytes), not text: give UTF-8 text files")
                pending = len(decoder.getstate()[0])  # bytes of a character cut by the previous read
                try:
                    text = decoder.decode(data, final=not data)
                except UnicodeDecodeError as exc:
                    at = offset - pending + exc.start
                    raise DataError(f"{path} is not UTF-8 text (invalid byte at offset {at}): "
                                    "convert it to UTF-8, e.g. iconv -t UTF-8") from None
                offset += len(data)
                if text:
                    yield text
                if not data:
                    return
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


def text_blocks(pieces: Iterator[str] | list[str], block_size: int = BLOCK_SIZE, name: str = "the text",
                max_run: int = MAX_RUN) -> Iterator[str]:
    """The concatenation of ``pieces`` re-cut into blocks of about ``block_size`` characters (longer
    where there is no place to cut), at places no pre-tokenizer chunk crosses (see the module's
    docstring)."""
    buffer = ""
    for piece in pieces:
        buffer = buffer + piece if buffer else piece
        start = 0
        while len(buffer) - start > block_size:
            cut = _last_cut(buffer, start, start + block_size)
            if not cut:
                found = _CUT.search(buffer, start + block_size)
                cut = found.end() if found else 0
            if not cut or cut - start > max(max_run, block_size):
                if len(buffer) - start > max(max_run, block_size):
                    raise DataError(
                        f"{name} has a run of more than {max_run:,} characters with no ASCII letter or digit "
                        "before a space, line break or punctuation mark (a huge line of one word, or not "
                        "text): break it into lines or words")
                break
            yield buffer[start:cut]
            start = cut
        buffer = buffer[start:]
    if buffer:
        yield buffer


def _last_cut(text: str, lo: int, hi: int) -> int:
    """The last place to cut ``text`` after a character in ``lo .. hi-1``, or 0 if none."""
    window = 4096
    while hi > lo:
        start = max(hi - window, lo)
        last = None
        for last in _CUT.finditer(text, start, min(hi + 1, len(text))):  # the look-ahead may see text[hi]
            pass
        if last is not None:
            return last.end()
        hi, window = start, window * 2
    return 0


def corpus_blocks(path: str | os.PathLike | None = None, block_size: int = BLOCK_SIZE) -> tuple[Iterator[str], str]:
    """(blocks, name): the corpus of :func:`read_corpus` streamed as blocks (see :func:`text_blocks`).

    The files are checked as they are read (binary, not UTF-8, a huge run);
    a corpus with no text at all is refused when the stream ends.
    """
    if path is None:
        return text_blocks([default_corpus()], block_size, DEFAULT_CORPUS_NAME), DEFAULT_CORPUS_NAME
    path = Path(path)
    files = _files(path)

    def pieces() -> Iterator[str]:
        seen = False
        for k, file in enumerate(files):
            if k:
                yield "\n"
            for text in _stream_file(file, max(block_size, 1 << 16)):
                seen = seen or not text.isspace()
                yield text
        if not seen:
            raise DataError(f"corpus {path} is empty (no text): give a file with some UTF-8 text")

    return text_blocks(pieces(), block_size, str(path)), str(path)
