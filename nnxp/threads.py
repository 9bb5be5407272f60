"""How many CPU threads the matrix products get: ``threads=`` and its measured default.

On the CPU every training step is a few BLAS matrix products.  OpenBLAS (in
NumPy's wheels) and PyTorch start one thread per core and *spin* while they
wait for each other; that pays only when each product is big enough, and on a
machine where other processes are busy it is a disaster: the threads wait for
cores that are not free.

What was measured (2-core Xeon VM shared with other jobs, NumPy 2 + its
OpenBLAS, float32, one SGD training step ``net.train_step``, best of the
medians, 1 thread time / 2 threads time; 2026-11-23):

- 784-256-10: batch 16 1.20x, 32 1.28x, 64 1.81x, 128 1.67x, 256 and 512
  1.83x (1024: 0.70x, disturbed by other jobs).  Issue 11 measured the
  whole ``nnxp train`` at batch 32: 2.27 s with two threads, 2.33 s with one,
  for twice the CPU time.
- 784-1024-1024-10: batch 16 1.61x, 32 1.74x, 64 1.99x, 128 1.89x (256 and
  512: 0.83x and 0.47x, the machine got busy meanwhile).
- busy machine: ``nnxp train`` took 50 s with OpenBLAS's two threads and
  4.2 s with one (issue 11); 60-100 s against 5.7-7.5 s here, 281 s against
  22-26 s with two extra CPU-bound processes (benchmarks/README.md).

So the default (``threads=None``) is:

1. one thread when the step's largest product is small: fewer than
   :data:`SMALL_GEMM` multiply-adds (batch x inputs x outputs of the widest
   layer; 784-256 at batch 32 is 6.4 M, at batch 64 12.8 M): a second
   thread gains at most 1.3x there, for twice the CPU time, and loses 10x
   when the cores are busy;
2. otherwise as many threads as cores are idle right now, measured over
   :data:`SAMPLE_SECONDS` from ``/proc/stat`` (Linux; elsewhere the load
   average), at least one and at most the cores this process may use.

An explicit ``threads=N`` (``--threads N``) is obeyed up to the cores this
process may use; a larger count is capped there with one warning line.  The limit is
applied with threadpoolctl to every BLAS/OpenMP pool NumPy (and SciPy) loaded,
and with ``torch.set_num_threads`` when PyTorch is in use; it is restored
afterwards.  GPU work is unaffected.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any, Iterator, Sequence

from .errors import ConfigError

__all__ = ["SMALL_GEMM", "SAMPLE_SECONDS", "usable_cores", "idle_cores", "choose_threads",
           "check_threads", "thread_limit", "limit_threads"]

#: below this many multiply-adds in the widest layer's product a second thread does not pay
SMALL_GEMM = 8_000_000
#: how long :func:`idle_cores` watches the machine
SAMPLE_SECONDS = 0.05


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs from /proc/stat, or None where there is none."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 5:
        return None
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user..steal


def idle_cores(seconds: float = SAMPLE_SECONDS) -> float:
    """How many cores were idle over the next ``seconds`` (Linux), else from the load average."""
    cores = os.cpu_count() or 1
    before = _cpu_times()
    if before is not None:
        time.sleep(seconds)
        after = _cpu_times()
        if after is not None and after[1] > before[1]:
            return cores * (after[0] - before[0]) / (after[1] - before[1])
    try:
        return max(0.0, cores - os.getloadavg()[0])
    except (AttributeError, OSError):
        return float(cores)


_last_idle: tuple[float, float] = (-1e9, 0.0)  # (when, idle cores) of the latest measurement


def _recent_idle_cores(max_age: float = 1.0) -> float:
    """:func:`idle_cores`, measured at most once a second (fit/predict may be called often)."""
    global _last_idle
    now = time.monotonic()
    if now - _last_idle[0] > max_age:
        _last_idle = (now, idle_cores())
    return _last_idle[1]


def check_threads(threads: Any, name: str = "threads") -> int | None:
    """``threads`` as a positive int, or None for the measured default; a clear error otherwise.

    A count above the cores this process may use (:func:`usable_cores`) is
    capped there, with one warning line on stderr (``name`` is how the caller
    calls it, e.g. ``--threads``): more threads than cores only wait for each
    other, and a count too large for a C int would overflow in the BLAS call.
    """
    if threads is None or (isinstance(threads, str) and threads.strip().lower() == "auto"):
        return None
    try:
        n = int(threads)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} must be a positive integer or 'auto', got {threads!r}") from None
    if isinstance(threads, bool) or n != threads and str(n) != str(threads).strip() or n < 1:
        raise ConfigError(f"{name} must be a positive integer or 'auto', got {threads!r}")
    cores = usable_cores()
    if n > cores:
        shown = f"{name} {n}" if name.startswith("-") else f"{name}={n}"
        print(f"nnxp: warning: {shown} is more than the {cores} core{'s' if cores != 1 else ''} this "
              f"process may use: using {cores}", file=sys.stderr, flush=True)
        n = cores
    return n


def choose_threads(batch_size: int, sizes: Sequence[int], *, cores: int | None = None,
                   idle: float | None = None) -> int:
    """The default thread count for steps of ``batch_size`` rows through layers ``sizes``.

    ``cores`` and ``idle`` default to :func:`usable_cores` and a fresh
    :func:`idle_cores` measurement (taken only when the shape is big enough
    for threads to matter).
    """
    cores = usable_cores() if cores is None else cores
    widest = max(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    if cores <= 1 or batch_size * widest < SMALL_GEMM:
        return 1
    idle = _recent_idle_cores() if idle is None else idle
    # The sample includes this process's own core only when it was busy; +0.5 rounds.
    return max(1, min(cores, int(idle + 0.5)))


@contextlib.contextmanager
def thread_limit(threads: Any, batch_size: int, sizes: Sequence[int],
                 backend: Any = None) -> Iterator[int]:
    """A ``with`` block in which the CPU matrix products use ``threads`` threads.

    ``threads`` None (or "auto") picks :func:`choose_threads`.  Yields the
    number used.  On a GPU backend nothing is changed (yields 0).
    """
    n = check_threads(threads)
    if backend is not None and getattr(backend, "name", "") == "cupy":
        yield 0
        return
    if n is None:
        n = choose_threads(int(batch_size), [int(s) for s in sizes])
    with limit_threads(n):
        yield n


@contextlib.contextmanager
def limit_threads(n: int) -> Iterator[None]:
    """A ``with`` block in which BLAS/OpenMP pools (threadpoolctl) and PyTorch use ``n`` threads."""
    from threadpoolctl import threadpool_limits

    n = min(int(n), usable_cores())  # callers warn (check_threads); a C int must not overflow
    torch = sys.modules.get("torch")
    previous = torch.get_num_threads() if torch is not None else None
    try:
        if torch is not None:
            torch.set_num_threads(n)
        with threadpool_limits(limits=n):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(previous)
