"""The ``nnxp`` parser (one subcommand per command module) and :func:`main`, which turns
every :class:`~nnxp.errors.NnxpError` into one line ``nnxp: error: ...`` and exit status 2."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import DivergenceError, NnxpError
from ..io.paths import files_from
from . import bench, evaluate, export, images, text, train

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # Always "nnxp: error:" (as for every other error), naming the command's help.
        self.exit(2, f"nnxp: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nnxp", description="Neural networks on NumPy (CPU) or CuPy (CUDA GPUs).")
    parser.add_argument("--version", action="version", version=f"nnxp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for command_group in (train, evaluate, images, export, bench, text):
        command_group.add_commands(commands)
    return parser


# --threads is on the commands that do matrix products: train, evaluate, predict, images, bench,
# text train, text neighbours.  Those two apply it themselves (train: per shape, through fit; bench:
# per contender); main applies it around the others.
_OWN_THREADS = ("train", "bench")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else 0
    args.argv = argv  # the command line, for commands that record it (bench)
    threads = getattr(args, "threads", None)
    if threads is not None and args.command not in _OWN_THREADS:
        from ..threads import limit_threads

        limit = limit_threads(threads)
    else:
        limit = contextlib.nullcontext()
    try:
        # Every declared input and output, checked before the command runs (nnxp.io.paths).
        args.files = files_from(parser, args)
        with limit:
            return int(args.func(args) or 0)
    except DivergenceError as exc:
        print(f"nnxp: {exc}", file=sys.stderr)
        return 1
    except NnxpError as exc:
        print(f"nnxp: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:  # also CuPy's OutOfMemoryError: sizes that pass the checks but not training
        print("nnxp: error: out of memory: use smaller layers or a smaller --batch-size", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = getattr(args, "resume_hint", None)
        print("\nnnxp: interrupted" + (f"; resume with: {hint}" if hint else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `nnxp images | head`: the reader left, which is fine
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
