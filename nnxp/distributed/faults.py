"""Fail fast: a rank that raises, dies or hangs stops the whole job, with one line.

Without care, one failed rank leaves the others blocked in their next
collective for ever.  Two guards end the job in bounded time:

- :func:`fail_fast` (a ``with`` block around a rank's work, and the
  ``sys.excepthook`` :func:`install_excepthook` sets): a rank that raises
  prints ``nnxp: error: rank R/N: <message>; stopping all ranks`` and ends
  the job at once through ``Communicator.abort`` (no barrier, no
  ``MPI_Finalize``, which would wait for the blocked ranks).  Rank 0 speaks at
  once; other ranks wait a moment first, so an error every rank hits (a
  diverging loss) is reported once, by rank 0.
- :class:`Watchdog`: a daemon thread that ends the job when this rank has
  made no progress (one training step, or one collective) for longer than
  ``timeout`` seconds: the peer it waits for has hung or died.  A rank killed
  outright (SIGKILL, segfault) is noticed by ``mpiexec`` itself, which ends
  the others.

Checkpoints are written atomically by rank 0 only, so a job stopped any of
these ways keeps its last complete checkpoint.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Any, Iterator

from ..errors import DivergenceError, NnxpError

__all__ = ["Watchdog", "fail_fast", "install_excepthook", "describe", "DEFAULT_TIMEOUT"]

#: seconds a rank may wait in one collective before the job is stopped.  It must
#: cover the longest gap between two collectives on another rank: one step, one
#: evaluation, and rank 0's checkpoint write.
DEFAULT_TIMEOUT = 300.0

# How long a rank other than 0 waits before reporting its own error, so that an
# error all ranks hit at once is reported by rank 0 alone.
_DEFER_SECONDS = 2.0


def describe(exc: BaseException) -> str:
    """One line for an exception: the message of an nnxp error, else type and message."""
    if isinstance(exc, KeyboardInterrupt):
        text = "interrupted"
    elif isinstance(exc, NnxpError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())


def exit_code(exc: BaseException) -> int:
    """The status the CLI uses alone: 2 for a user error, 1 for divergence, 130 for Ctrl-C."""
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, DivergenceError):
        return 1
    if isinstance(exc, NnxpError):
        return 2
    return 1


def stop_job(comm: Any, exc: BaseException) -> None:
    """Report ``exc`` as this rank's one line and end every rank; does not return."""
    if comm.rank != 0:
        time.sleep(_DEFER_SECONDS)  # if rank 0 failed too, its line (and the job's end) comes first
    kind = "" if isinstance(exc, DivergenceError) else "error: "
    print(f"nnxp: {kind}rank {comm.rank}/{comm.size}: {describe(exc)}; stopping all ranks",
          file=sys.stderr, flush=True)
    comm.abort(exit_code(exc))


@contextlib.contextmanager
def fail_fast(comm: Any) -> Iterator[None]:
    """Any exception in the block stops the whole job (see :func:`stop_job`)."""
    if comm.size == 1:
        yield
        return
    try:
        yield
    except BaseException as exc:  # noqa: BLE001 - every escape must end the job
        if isinstance(exc, SystemExit) and not exc.code:
            raise
        stop_job(comm, exc)


def install_excepthook(comm: Any) -> None:
    """Make an uncaught exception on this rank stop the whole job (library use)."""
    if comm.size == 1:
        return

    def hook(kind, exc, tb):
        stop_job(comm, exc)

    sys.excepthook = hook


class Watchdog:
    """Ends the job when this rank makes no progress for longer than ``timeout`` seconds.

    ``arm(what)`` starts the clock (every training step does: with NCCL a dead
    peer may block any device call of the step, not only the collective);
    ``with watch(what):`` restarts it around one collective and then goes back
    to the state before; ``disarm()`` stops it (after the epoch's last
    collective, so time spent outside training is never counted).  A daemon
    thread checks twice a second.  Costs two attribute writes per step.
    """

    def __init__(self, comm: Any, timeout: float = DEFAULT_TIMEOUT):
        self.comm = comm
        self.timeout = float(timeout)
        self._since: float | None = None
        self._what = ""
        self._thread: threading.Thread | None = None
        if comm.size > 1 and self.timeout > 0:
            self._thread = threading.Thread(target=self._run, name="nnxp-watchdog", daemon=True)
            self._thread.start()

    def arm(self, what: str) -> None:
        self._what, self._since = what, time.monotonic()

    def disarm(self) -> None:
        self._since = None

    @contextlib.contextmanager
    def watch(self, what: str) -> Iterator[None]:
        before = self._what, self._since
        self.arm(what)
        try:
            yield
        finally:
            self._what, self._since = before[0], (None if before[1] is None else time.monotonic())

    def _run(self) -> None:
        while True:
            time.sleep(min(0.5, self.timeout / 4))
            since = self._since
            if since is not None and time.monotonic() - since > self.timeout:
                print(f"nnxp: error: rank {self.comm.rank}/{self.comm.size}: waited more than "
                      f"{self.timeout:g} s in {self._what}: another rank has stopped or hangs; "
                      f"stopping all ranks", file=sys.stderr, flush=True)
                self.comm.abort(1)
