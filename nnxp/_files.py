"""Atomic file replacement: readers see the old file or the new one, never half.

The new content goes to a temporary file in the target's directory (same file
system, so the final :func:`os.replace` is atomic), is flushed and fsynced,
and only then renamed over the target. If anything fails before the rename,
the temporary file is removed and an existing target is left untouched.

Only regular files (or new paths) are written: a target that is a device
node, FIFO, socket or directory is refused (``OSError`` EINVAL) before
anything is written, so ``--save /dev/sda`` or a FIFO is never replaced.

Temporary files are named ``.<target name>.<host>-<pid>.<random>.tmp``. A run
killed mid-write (``kill -9``, power cut) leaves one behind; the next write to
the same target removes such leftovers when that is safe: a regular file, owned
by the current user, written on this machine (same host tag) by a process that
no longer exists. Temp files of live processes, other users or other machines
(a shared network directory) are never touched.

These helpers raise the plain :class:`OSError` (or whatever the ``with`` body
raised); callers wrap it into an :mod:`nnxp.errors` class with their context.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import socket
import stat
from pathlib import Path
from typing import IO, Union
from collections.abc import Iterator

from .errors import DataError

PathLike = Union[str, "os.PathLike[str]"]

# Prefix/suffix of temporary files, so stray ones (after a power cut) are
# recognisable: ".<target name>.<random>.tmp" beside the target.
_TMP_SUFFIX = ".tmp"


def _host_tag() -> str:
    """8 hex digits naming this machine, so PIDs of other machines are never judged here."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def check_regular_target(target: PathLike) -> None:
    """Raise OSError (EINVAL) unless ``target`` is a regular file or does not exist yet.

    A symbolic link is judged by what it points to (a dangling one counts as new).
    """
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "not a regular file")
        raise OSError(errno.EINVAL, f"it is {kind}, not a regular file; give a file path")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep its file
    return True


def remove_stale_temps(target: PathLike) -> list[Path]:
    """Delete leftover temp files of ``target`` from dead processes on this machine; return them.

    Safe by construction: only ``.<name>.<this host>-<pid>.<hex>.tmp`` regular
    files owned by the current user whose PID is not running are removed.
    """
    target = Path(target)
    prefix = f".{target.name}.{_host_tag()}-"
    removed = []
    try:
        entries = list(os.scandir(target.parent if str(target.parent) else "."))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(_TMP_SUFFIX)):
            continue
        pid_text, _, rand = name[len(prefix):-len(_TMP_SUFFIX)].partition(".")
        if not pid_text.isdigit() or not rand or int(pid_text) == os.getpid():
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or _pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _create_temp(target: Path) -> tuple[int, Path]:
    """Create and open a fresh temp file beside ``target``; return (fd, path).

    Unlike :func:`tempfile.mkstemp` (always mode 0600) this creates the file
    with mode 0666 filtered by the umask, so the renamed file gets the same
    permissions as one written with a plain ``open``.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{_host_tag()}-{os.getpid()}.{secrets.token_hex(4)}{_TMP_SUFFIX}")
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
    check_regular_target(target)
    remove_stale_temps(target)
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
        check_regular_target(target)  # again: it may have become a FIFO or device meanwhile
        os.replace(tmp, target)
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Replace ``path`` atomically with ``data`` (see :func:`atomic_open`)."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_file(path: PathLike, data: bytes) -> Path:
    """:func:`atomic_write_bytes`, with a failure as one DataError line naming the path."""
    path = Path(path)
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}; check the directory exists "
                        "and is writable") from None
    return path


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
