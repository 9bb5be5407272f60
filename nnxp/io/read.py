"""Reading a user's file without hanging and without running out of memory.

Every reader here opens the path with ``O_NONBLOCK`` (so a FIFO without a
writer cannot block the ``open``), then checks the *opened* file with
``fstat``: anything but a regular file (a FIFO, a character or block device
such as ``/dev/zero``, a socket, a directory) is refused, and so is a file
larger than the limit of its kind (:data:`LIMITS`).  At most the limit is
ever read, even if the file grows meanwhile.

Refusals are :class:`~nnxp.errors.DataError` lines naming the file, the
problem and the fix.  A missing or unreadable file raises the plain
:class:`OSError` (``FileNotFoundError``, ``PermissionError``), so that
each caller words "not found" for its own kind of file.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO, Union

from ..errors import DataError

__all__ = ["LIMITS", "check_input_file", "describe_mode", "limit_of", "open_input", "read_bytes", "read_text"]

PathLike = Union[str, "os.PathLike[str]"]

_KiB, _MiB, _GiB = 1 << 10, 1 << 20, 1 << 30

# The largest file nnxp reads, per kind of file (bytes). Generous for real files, small
# enough that a wrong file (a disk image, a video) is refused at once, not read into memory.
LIMITS: dict[str, int] = {
    "model": 4 * _GiB,        # a .safetensors model or checkpoint (nnxp train, text train)
    "checkpoint": 4 * _GiB,
    "dataset": 1 * _GiB,      # one IDX file, raw or gzip (MNIST's largest raw file is 47 MB)
    "corpus": 256 * _MiB,     # a text corpus (all files of a directory together)
    "image": 64 * _MiB,       # an image for nnxp predict
    "metrics": 64 * _MiB,     # a JSON-lines metrics file
    "tokenizer": 64 * _MiB,   # a tokenizer.json
    "json": 64 * _MiB,        # a bench result
    "markdown": 16 * _MiB,    # a README the bench results go into
    "cache": 1 * _MiB,        # nnxp's small cache files (the BLAS choice)
    "onnx": 4 * _GiB,         # an exported ONNX graph (only ever written)
    "table": 256 * _MiB,      # a CSV/.npz/.parquet table (nnxp train/evaluate/predict --data), parsed in memory
    "predictions": 4 * _GiB,  # nnxp predict --data --output (only ever written)
}


# What each kind of file is called in messages ("give a ... file").
NOUNS: dict[str, str] = {"model": "a .safetensors model", "checkpoint": "a checkpoint", "dataset": "an IDX dataset",
                         "corpus": "a UTF-8 text", "image": "an image", "metrics": "a metrics", "tokenizer":
                         "a tokenizer.json", "json": "a JSON", "markdown": "a Markdown", "cache": "a cache",
                         "onnx": "an ONNX", "table": "a CSV, .npz or .parquet table", "predictions": "a predictions"}


def limit_of(kind: str) -> int:
    try:
        return LIMITS[kind]
    except KeyError:
        raise ValueError(f"unknown file kind {kind!r}: one of {', '.join(LIMITS)}") from None


def describe_mode(mode: int) -> str:
    """'a directory', 'a FIFO', ... for a ``st_mode`` that is not a regular file's."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _size_text(n: int) -> str:
    for unit, size in (("GiB", _GiB), ("MiB", _MiB), ("KiB", _KiB)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def check_input_file(path: PathLike, kind: str, info: os.stat_result, what: str | None = None) -> None:
    """Raise DataError unless ``info`` (``path``'s stat) is a regular file within ``kind``'s limit."""
    what = what or NOUNS[kind]
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{path} is {describe_mode(info.st_mode)}, not a regular file; give {what} file")
    limit = limit_of(kind)
    if info.st_size > limit:
        raise DataError(f"{path} is {_size_text(info.st_size)}, over the {_size_text(limit)} limit for "
                        f"{what} file; is it the right file?")


def open_input(path: PathLike, kind: str, what: str | None = None) -> BinaryIO:
    """A binary file object for reading ``path``, a regular file within ``kind``'s limit.

    The open never blocks (``O_NONBLOCK``); the check is done on the opened
    file, so a path swapped for a FIFO between a check and the open is caught.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not a regular file; give {what or NOUNS[kind]} file") from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO opened for writing
            raise DataError(f"{path} is not a regular file; give {what or NOUNS[kind]} file") from None
        raise
    try:
        check_input_file(path, kind, os.fstat(fd), what)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: PathLike, kind: str, what: str | None = None) -> bytes:
    """The bytes of ``path`` (see :func:`open_input`); never more than ``kind``'s limit."""
    limit = limit_of(kind)
    with open_input(path, kind, what) as f:
        data = f.read(limit + 1)
    if len(data) > limit:  # it grew after the check
        raise DataError(f"{path} is over the {_size_text(limit)} limit for {what or NOUNS[kind]} file; "
                        "is it the right file?")
    return data


def read_text(path: PathLike, kind: str, what: str | None = None) -> str:
    """:func:`read_bytes` decoded as UTF-8 (``UnicodeDecodeError`` as the plain error)."""
    return read_bytes(path, kind, what).decode("utf-8")
