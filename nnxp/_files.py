"""Atomic file replacement: readers see the old file or the new one, never half.

The new content goes to a temporary file in the target's directory (same file
system, so the final :func:`os.replace` is atomic), is flushed and fsynced,
and only then renamed over the target. If anything fails before the rename,
the temporary file is removed and an existing target is left untouched.

These helpers raise the plain :class:`OSError` (or whatever the ``with`` body
raised); callers wrap it into an :mod:`nnxp.errors` class with their context.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import IO, Union
from collections.abc import Iterator

PathLike = Union[str, "os.PathLike[str]"]

# Prefix/suffix of temporary files, so stray ones (after a power cut) are
# recognisable: ".<target name>.<random>.tmp" beside the target.
_TMP_SUFFIX = ".tmp"


def _create_temp(target: Path) -> tuple[int, Path]:
    """Create and open a fresh temp file beside ``target``; return (fd, path).

    Unlike :func:`tempfile.mkstemp` (always mode 0600) this creates the file
    with mode 0666 filtered by the umask, so the renamed file gets the same
    permissions as one written with a plain ``open``.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}{_TMP_SUFFIX}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{target}: could not create a unique temporary file beside it")


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; best effort (not possible on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb", *, encoding: str = "utf-8") -> Iterator[IO]:
    """Open ``path`` for writing so that it is replaced atomically on success.

    ``mode`` is ``"wb"`` (binary) or ``"w"`` (text, ``encoding``, ``"\\n"``
    line endings). The file object writes to a temp file; leaving the ``with``
    block normally fsyncs it and renames it over ``path``. If the block raises,
    the temp file is deleted, ``path`` is not touched and the exception
    propagates unchanged.

    Example::

        with atomic_open("model.npz") as f:
            np.savez(f, **arrays)
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open mode must be 'wb' or 'w', not {mode!r}")
    target = Path(path)
    fd, tmp = _create_temp(target)
    try:
        if mode == "wb":
            f: IO = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding=encoding, newline="\n")
    except BaseException:
        os.close(fd)
        _remove_quietly(tmp)
        raise
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Replace ``path`` atomically with ``data`` (see :func:`atomic_open`)."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
