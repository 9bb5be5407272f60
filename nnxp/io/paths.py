"""What each command reads and writes, declared once, checked before anything runs.

A command's argparse definition gives every path argument one of these types:

- ``Input(kind)``: a file the command reads (``directory=True``: or a directory of them);
- ``Output(kind)``: a file the command writes (atomically);
- ``Update(kind)``: a file the command reads and then replaces (``bench --readme``).

The dispatcher (:func:`nnxp.cli.main.main`) collects the declared paths of the
chosen command into a :class:`Files` and checks them all before calling the
command; paths a command learns later (the default ``--save`` name, the files
inside ``--data-dir``, the outputs a resumed checkpoint remembers) are added by
the command through the same :class:`Files` before anything is written.

Refused, as one :class:`~nnxp.errors.NnxpError` line:

- an output that is an input or another output: the same file by any name
  (symbolic links, hard links, ``./a`` and ``sub/../a``), or the same path if it
  does not exist yet;
- an input that exists but is not a regular file (a FIFO, a device such as
  ``/dev/zero``, a socket; a directory unless the input takes one), or is larger
  than its kind's limit (:data:`nnxp.io.read.LIMITS`);
- an output that is a directory, FIFO, device or socket, or whose directory is
  missing or not writable.
"""

from __future__ import annotations

import argparse
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from .read import check_input_file, describe_mode, limit_of

__all__ = ["Files", "Input", "Output", "PathType", "Update", "check_output_path", "declared_paths", "files_of"]

ROLES = ("input", "output", "update")


class PathType:
    """An argparse ``type`` that turns the text into a :class:`~pathlib.Path` and records
    the argument's role (``input``, ``output`` or ``update``) and kind of file."""

    def __init__(self, role: str, kind: str, *, directory: bool = False, may_be: str | None = None):
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        limit_of(kind)  # an unknown kind is a programming error, found at import
        self.role, self.kind, self.directory, self.may_be = role, kind, directory, may_be
        self.__name__ = f"{kind} path"  # argparse names the type in its messages

    def __call__(self, text: str) -> Path:
        if not text or "\0" in text:
            raise argparse.ArgumentTypeError(f"{text!r} is not a file path")
        return Path(text)

    def __repr__(self) -> str:
        extra = (", directory=True" if self.directory else "") + (f", may_be={self.may_be!r}" if self.may_be else "")
        return f"{self.role.capitalize()}({self.kind!r}{extra})"


def Input(kind: str, *, directory: bool = False) -> PathType:  # noqa: N802 (reads as a declaration)
    return PathType("input", kind, directory=directory)


def Output(kind: str, *, may_be: str | None = None) -> PathType:  # noqa: N802
    """``may_be``: the flag of an input this output may name on purpose (a checkpoint rewritten
    in place by the run that resumed it)."""
    return PathType("output", kind, may_be=may_be)


def Update(kind: str) -> PathType:  # noqa: N802
    return PathType("update", kind)


@dataclass(frozen=True)
class _Entry:
    flag: str
    path: Path
    role: str
    kind: str
    may_be: str | None  # an output may be this input's file (rewriting a checkpoint in place)


def _identity(path: Path) -> tuple:
    """The file ``path`` names: (device, inode) if it exists, else its absolute real path."""
    try:
        info = os.stat(path)
        return ("inode", info.st_dev, info.st_ino)
    except (OSError, ValueError):
        return ("path", os.path.realpath(os.path.abspath(path)))


class Files:
    """The files one command reads and writes; each addition is checked against the others."""

    def __init__(self) -> None:
        self.entries: list[_Entry] = []

    @property
    def inputs(self) -> list[Path]:
        return [e.path for e in self.entries if e.role in ("input", "update")]

    @property
    def outputs(self) -> list[Path]:
        return [e.path for e in self.entries if e.role in ("output", "update")]

    def input(self, flag: str, path: Path | str, kind: str, *, directory: bool = False) -> Path:
        """Declare a file the command reads: refused if it exists and is not a regular file within
        ``kind``'s limit (a directory with ``directory=True``), or if it is a declared output."""
        path = Path(path)
        _check_input(flag, path, kind, directory)
        self._check_distinct(_Entry(flag, path, "input", kind, None))
        return path

    def output(self, flag: str, path: Path | str, kind: str, *, may_be: str | None = None) -> Path:
        """Declare a file the command writes: refused if it is an input (except the input flagged
        ``may_be``, which the command rewrites in place on purpose) or another output, or cannot
        be written."""
        path = Path(path)
        self._check_distinct(_Entry(flag, path, "output", kind, may_be))
        check_output_path(path, flag)
        return path

    def update(self, flag: str, path: Path | str, kind: str) -> Path:
        """Declare a file the command reads and then replaces atomically."""
        path = Path(path)
        _check_input(flag, path, kind, False)
        self._check_distinct(_Entry(flag, path, "update", kind, None))
        check_output_path(path, flag)
        return path

    def _check_distinct(self, new: _Entry) -> None:
        ident = _identity(new.path)
        if any(old.flag == new.flag and old.role == new.role and _identity(old.path) == ident for old in self.entries):
            return  # declared again (by the dispatcher, then by the command): once is enough
        for old in self.entries:
            if new.role == "input" and old.role == "input":
                continue  # reading a file twice loses nothing
            if _identity(old.path) != ident:
                continue
            if new.role == "output" and new.may_be is not None and old.flag == new.may_be:
                continue
            if old.role == "output" and old.may_be is not None and new.flag == old.may_be:
                continue
            writer, other = (new, old) if new.role != "input" else (old, new)
            what = {"input": "an input", "output": "another output", "update": "an input"}[other.role]
            alias = f", by another name: {other.path}" if str(other.path) != str(writer.path) else ""
            raise ConfigError(f"{writer.flag} {writer.path} is also {other.flag} ({what}){alias}; "
                              f"writing it would destroy that file; give {writer.flag} a different path")
        self.entries.append(new)


def _check_input(flag: str, path: Path, kind: str, directory: bool) -> None:
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return  # missing: the command says so in its own words
    if directory and stat.S_ISDIR(info.st_mode):
        return
    try:
        check_input_file(path, kind, info)
    except DataError as exc:
        raise DataError(f"{flag} {exc}") from None


def check_output_path(path: Path, flag: str | None = None) -> None:
    """Fail before any work, not after it, if ``path`` cannot be written as a file."""
    name = f"{flag} {path}" if flag else str(path)
    if path.is_dir():
        raise DataError(f"{name} is a directory: give a file name, e.g. {path / 'model.safetensors'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise DataError(f"cannot write {name}: directory {parent} does not exist; create it first")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise DataError(f"cannot write {name}: {exc.strerror}") from None
    if info is not None and not stat.S_ISREG(info.st_mode):  # a FIFO, device or socket is never replaced
        raise DataError(f"cannot write {name}: it is {describe_mode(info.st_mode)}, not a regular file; "
                        "give a file path")
    if not os.access(parent, os.W_OK) or (info is not None and not os.access(path, os.W_OK)):
        raise DataError(f"cannot write {name}: permission denied; choose another path")


def _flag_name(action: argparse.Action) -> str:
    if action.option_strings:
        return max(action.option_strings, key=len)
    metavar = action.metavar if isinstance(action.metavar, str) else None
    return metavar or action.dest.upper()


def declared_paths(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[tuple[argparse.Action, PathType]]:
    """The path arguments (action, declaration) of the (sub)command ``args`` chose, inputs first."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(args, action.dest, None)
            if chosen in action.choices:
                found += declared_paths(action.choices[chosen], args)
        elif isinstance(action.type, PathType):
            found.append((action, action.type))
    return found


def files_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Files:
    """Check every declared path of the chosen command: inputs, then updates, then outputs."""
    files = Files()
    declared = declared_paths(parser, args)
    for role in ROLES:
        for action, decl in declared:
            if decl.role != role:
                continue
            value = getattr(args, action.dest, None)
            for path in value if isinstance(value, list) else [value]:
                if path is None:
                    continue
                flag = _flag_name(action)
                if role == "input":
                    files.input(flag, path, decl.kind, directory=decl.directory)
                elif role == "output":
                    files.output(flag, path, decl.kind, may_be=decl.may_be)
                else:
                    files.update(flag, path, decl.kind)
    return files


def files_of(args: Any) -> Files:
    """The :class:`Files` the dispatcher checked for this command (a new one when called directly)."""
    files = getattr(args, "files", None)
    if not isinstance(files, Files):
        files = Files()
        try:
            args.files = files
        except AttributeError:
            pass
    return files
