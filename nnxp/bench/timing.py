"""How the step benchmark times its contenders: calibration, interleaved samples, and
watching for other processes that would spoil a measurement (:class:`CpuMonitor`)."""

from __future__ import annotations

import gc
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .contenders import Contender
from .report import log

__all__ = ["Budget", "CpuMonitor", "keep_round", "measure", "summary"]


class CpuMonitor:
    """CPU used by *other* processes (and hypervisor steal) while we measure, from /proc/stat.

    ``foreign_cores(a, b)`` between two snapshots: (CPU time the whole machine
    was busy - CPU time this process used) / wall time, in cores.  Tick
    resolution (10 ms), so meaningful over windows of 100 ms or more.  None
    where /proc/stat does not exist.
    """

    def __init__(self) -> None:
        self.ok = os.path.exists("/proc/stat")
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def snapshot(self) -> tuple[float, float, float] | None:
        if not self.ok:
            return None
        with open("/proc/stat", encoding="ascii") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        t = os.times()
        return time.perf_counter(), (sum(v) - v[3] - v[4]) / self.tick, t.user + t.system

    @staticmethod
    def foreign_cores(a, b) -> float | None:
        if a is None or b is None or b[0] <= a[0]:
            return None
        return max(0.0, ((b[1] - a[1]) - (b[2] - a[2])) / (b[0] - a[0]))

    def wait_idle(self, max_foreign: float, max_wait_s: float, window_s: float = 0.5) -> tuple[float, float | None]:
        """Sleep until other processes use less than ``max_foreign`` cores over a window (at most
        ``max_wait_s``); returns (seconds waited, the last window's foreign load).

        When it has to wait, it says so at once on stderr: what it waits for and for how long."""
        if not self.ok or not math.isfinite(max_foreign) or max_wait_s <= 0:
            return 0.0, None
        t0 = time.perf_counter()
        said = False
        while True:
            a = self.snapshot()
            time.sleep(window_s)
            load = self.foreign_cores(a, self.snapshot())
            waited = time.perf_counter() - t0
            if load is None or load < max_foreign or waited >= max_wait_s:
                if said:
                    log(f"  ... {'quiet' if load is not None and load < max_foreign else 'still busy'}"
                        f" after {waited:.1f} s; measuring")
                return waited, load
            if not said:
                said = True
                log(f"  other processes use {load:.2f} cores: waiting up to {max_wait_s - waited:.0f} s "
                    f"for them to use less than {max_foreign:g} (--max-wait SECONDS, "
                    "--max-foreign-load inf to not wait)")


class Budget:
    """How long a run may still wait for other processes to go quiet, in total."""

    def __init__(self, seconds: float):
        self.left = seconds
        self.waited = 0.0

    def spend(self, seconds: float) -> None:
        self.waited += seconds
        self.left = max(0.0, self.left - seconds)


def _calibrate(c: Contender, warmup_s: float, min_sample_s: float) -> None:
    """Warm up and choose ``k`` so that k steps last at least ``min_sample_s``.

    The step time used is the 10th percentile of single steps: robust to the
    slow first steps and to a stray disturbance (a larger k is harmless).
    """
    c.reset()
    for _ in range(3):
        c.step()
    c.sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < warmup_s:
        t0 = time.perf_counter()
        c.step()
        c.sync()
        times.append(time.perf_counter() - t0)
    c.k = max(1, math.ceil(min_sample_s / float(np.percentile(times, 10))))
    c.samples = []


def _settle(c: Contender, seconds: float) -> None:
    """Run untimed steps for ``seconds``: lets another library's idle threads stop spinning."""
    c.reset()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        c.step()
    c.sync()


def _sample(c: Contender) -> float:
    """Seconds per step over k consecutive steps, from the initial weights."""
    c.reset()
    c.sync()
    t0 = time.perf_counter()
    for _ in range(c.k):
        c.step()
    c.sync()
    return (time.perf_counter() - t0) / c.k


def keep_round(load: float | None, max_foreign: float, budget: Budget, monitor: CpuMonitor,
               report: dict[str, Any]) -> bool:
    """Whether a round with this foreign load is kept (and recorded in ``report``); if not, it was
    too busy and the machine has been waited for (while the budget lasts): take the round again."""
    if load is not None and load > max_foreign:
        if budget.left > 0:
            report["rounds_retaken"] += 1
            waited, _ = monitor.wait_idle(max_foreign, budget.left)
            budget.spend(waited)
            report["waited_s"] += waited
            return False
        report["rounds_contaminated"] += 1
    report["foreign_cores"].append(load)
    return True


def measure(contenders: Sequence[Contender], *, repeats: int, min_sample_s: float,
            warmup_s: float, order: str = "interleaved", max_foreign: float = float("inf"),
            settle_s: float = 0.0, budget: Budget | None = None,
            monitor: CpuMonitor | None = None) -> dict[str, Any]:
    """Fill each contender's ``samples`` (seconds per step) and set its ``k``.

    Warm-up and calibration per contender (:func:`_calibrate`), then one
    untimed round.  Then ``repeats`` rounds; in round r every contender takes
    one sample, in turn, starting at contender r mod n (``order="interleaved"``).
    A round during which other processes used more than ``max_foreign`` cores
    on average is thrown away and taken again once the machine is quiet (while
    the wait ``budget`` lasts; after that rounds are kept and counted as
    contaminated).  ``order="blocked"`` takes each contender's samples all at
    once instead (to diagnose interference between contenders; no retakes).

    Contenders run on two thread pools (NumPy's BLAS; PyTorch's OpenMP/MKL).
    An idle pool keeps spinning for a while after its last job (OpenBLAS about
    2**28 cycles, ~0.1 s) and steals time from the other pool's threads; so
    whenever the pool changes, the next contender first runs untimed for
    ``settle_s``.  The contenders should be ordered so that each pool's are
    contiguous (the rotation keeps them so: two pool changes per round).

    Returns what happened: rounds retaken, foreign load per kept round, seconds waited.
    """
    monitor = monitor or CpuMonitor()
    budget = budget or Budget(0.0)
    for c in contenders:
        _calibrate(c, warmup_s, min_sample_s)
    def pool_changes(prev: Contender | None, c: Contender) -> None:
        if settle_s > 0 and prev is not None and prev.pool != c.pool:
            _settle(c, settle_s)

    prev = None
    for c in contenders:  # one untimed round in the same regime as the timed ones
        pool_changes(prev, c)
        _sample(c)
        prev = c
    report: dict[str, Any] = {"rounds_retaken": 0, "rounds_contaminated": 0, "foreign_cores": [],
                              "waited_s": 0.0}
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        if order == "blocked":
            for c in contenders:
                pool_changes(prev, c)
                prev = c
                a = monitor.snapshot()
                c.samples = [_sample(c) for _ in range(repeats)]
                report["foreign_cores"].append(monitor.foreign_cores(a, monitor.snapshot()))
            return report
        m = len(contenders)
        kept = 0
        while kept < repeats:
            a = monitor.snapshot()
            taken = []
            for j in range(m):
                c = contenders[(kept + j) % m]
                pool_changes(prev, c)
                taken.append((c, _sample(c)))
                prev = c
            load = monitor.foreign_cores(a, monitor.snapshot())
            if not keep_round(load, max_foreign, budget, monitor, report):
                continue
            for c, t in taken:
                c.samples.append(t)
            kept += 1
    finally:
        if was_enabled:
            gc.enable()
    return report


def summary(samples: Sequence[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1e3
    q1, med, q3 = (float(v) for v in np.percentile(a, [25, 50, 75]))
    return {"median_ms": med, "q1_ms": q1, "q3_ms": q3, "iqr_ms": q3 - q1,
            "min_ms": float(a.min()), "max_ms": float(a.max()), "n": int(a.size)}
