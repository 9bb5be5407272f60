"""Elementwise optimizer updates over all parameters: cache-sized chunks on a small thread pool.

An optimizer update is a dozen elementwise passes (Adam: scale m, add the
gradient, square, ...), and NumPy runs each on one core.  Here every
parameter is cut into about equal pieces of at most :data:`CHUNK` elements,
the pieces of all parameters are split into contiguous shares of equal size,
and each share runs on its own thread — the caller's and at most
``threads - 1`` pool threads; NumPy releases the GIL inside each pass.
(Cache-sized pieces, 16 K elements, were measured slower on a 2-core EPYC
with 32 MB L3: ~1 us of call overhead per pass and piece outweighs the
cache, where a whole 784-256-10 pass takes ~25 us.)  The thread count follows NumPy's BLAS thread count (so whatever limit
the thread policy puts on the BLAS applies here), and small updates (under
:data:`PARALLEL_MIN` elements in all) stay on the caller's thread.

A task is ``(kernel, p, g, state)``: ``kernel(opt, p, g, state, scratch)``
updates ``p`` and the ``state`` arrays in place, may overwrite ``g``, and uses
``scratch`` (same shape) for temporaries; it is applied to 1-D slices of the
same positions of every array, so it must be elementwise.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["CHUNK", "PARALLEL_MIN", "ChunkRunner"]

CHUNK = 131072
PARALLEL_MIN = 65536

Kernel = Callable[[Any, np.ndarray, np.ndarray, dict, np.ndarray], None]
Task = tuple[Kernel, np.ndarray, np.ndarray, dict]


def _flat(x: np.ndarray) -> np.ndarray | None:
    return x.reshape(-1) if x.flags.c_contiguous else None


def _chunks(task: Task) -> list[Task]:
    kernel, p, g, state = task
    flats = [_flat(p), _flat(g), *(_flat(s) for s in state.values())]
    if any(f is None for f in flats) or not p.flags.writeable:
        return [task]  # not a plain contiguous array: updated whole
    fp, fg, *fs = flats
    names = list(state)
    pieces = -(-fp.size // CHUNK)
    bounds = [fp.size * i // pieces for i in range(pieces + 1)]
    return [(kernel, fp[lo:hi], fg[lo:hi], {k: s[lo:hi] for k, s in zip(names, fs)})
            for lo, hi in zip(bounds[:-1], bounds[1:])]


def _default_threads() -> int:
    from .blas import openblas

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(openblas().threads() or 1, usable))


class ChunkRunner:
    """Runs update tasks chunk by chunk, split over ``threads`` threads (None: NumPy's BLAS count)."""

    def __init__(self, threads: int | None = None):
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self._scratch: dict[tuple[int, Any], np.ndarray] = {}
        self.chosen: dict[int, int] = {}  # threads chosen per update size (elements)
        self._max_threads: int | None = None  # NumPy's BLAS thread count, read at the first large update

    def _scratch_for(self, worker: int, dtype: Any, n: int) -> np.ndarray:
        buf = self._scratch.get((worker, dtype))
        if buf is None or buf.size < n:
            buf = np.empty(max(n, CHUNK), dtype=dtype)
            self._scratch[(worker, dtype)] = buf
        return buf

    def _run_share(self, opt: Any, worker: int, share: Sequence[Task], errors: dict | None = None) -> None:
        if errors is not None:  # NumPy's error state is per thread: the caller's applies here too
            with np.errstate(**errors):
                return self._run_share(opt, worker, share)
        for kernel, p, g, state in share:
            if p.flags.c_contiguous:
                t = self._scratch_for(worker, p.dtype, p.size)[:p.size].reshape(p.shape)
            else:
                t = np.empty_like(p)
            kernel(opt, p, g, state, t)

    def run(self, opt: Any, tasks: Sequence[Task]) -> None:
        total = sum(task[1].size for task in tasks)
        if total < PARALLEL_MIN or self.threads == 1:
            self._run_share(opt, 0, tasks)  # small: whole arrays, this thread, no cutting
            return
        if self._max_threads is None:
            self._max_threads = self.threads or _default_threads()
        chunks = [c for task in tasks for c in _chunks(task)]
        threads = min(self._max_threads, len(chunks))
        if threads > 1 and self.threads is None:
            if total not in self.chosen:
                self.chosen[total] = self._calibrate(opt, chunks, threads)
            threads = self.chosen[total]
        if threads == 1:
            self._run_share(opt, 0, chunks)
        else:
            self._run_threads(opt, chunks, threads, total)

    def _run_threads(self, opt: Any, chunks: Sequence[Task], threads: int, total: int) -> None:
        shares: list[list[Task]] = [[] for _ in range(threads)]
        done, per = 0, total / threads
        for c in chunks:  # contiguous shares of about equal element counts
            shares[min(threads - 1, int(done / per))].append(c)
            done += c[1].size
        if self._pool is None or self._pool_size < threads - 1:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            self._pool = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="nnxp-update")
            self._pool_size = threads - 1
        errors = np.geterr()
        futures = [self._pool.submit(self._run_share, opt, w, shares[w], errors) for w in range(1, threads)]
        self._run_share(opt, 0, shares[0])
        for f in futures:
            f.result()

    def _calibrate(self, opt: Any, chunks: Sequence[Task], threads: int, rounds: int = 7) -> int:
        """1 or ``threads``: the faster for these chunks, timed on copies (best of ``rounds`` each)."""
        copies = [(k, p.copy(), g.copy(), {n: a.copy() for n, a in st.items()}) for k, p, g, st in chunks]
        total = sum(c[1].size for c in copies)
        best = {1: float("inf"), threads: float("inf")}
        with np.errstate(all="ignore"):
            for r in range(rounds):
                for n in ((1, threads) if r % 2 else (threads, 1)):
                    t0 = time.perf_counter()
                    if n == 1:
                        self._run_share(opt, 0, copies)
                    else:
                        self._run_threads(opt, copies, n, total)
                    best[n] = min(best[n], time.perf_counter() - t0)
        return threads if best[threads] < 0.9 * best[1] else 1
