"""One process per contender: each contender of a case is timed in its own worker process,
the workers taking turns, one sample each per round.

In one process, the libraries' thread pools meet: after a product, OpenBLAS's
and PyTorch's (OpenMP, MKL) idle threads keep spinning for a while and steal
the cores the next contender's threads need.  Here each contender lives in its
own process (``python -m nnxp.bench.worker``, started by :func:`measure_isolated`),
so only its own threads are ever in it; the parent asks one worker at a time
for a sample (the others wait, blocked on a pipe), rotating the starting
worker every round, and before each sample the worker runs untimed steps for
``settle_s`` so the previous worker's spinning threads have stopped.

Protocol (one JSON object per line): the parent sends the settings, the
worker answers ``{"ready": ..., "k": ..., "pid": ...}`` after its warm-up;
then ``{"cmd": "sample"}`` -> ``{"sample_s": ..., "cpu_s": ...}`` (the
worker's own CPU time during the settle and the sample, so the parent can
tell other processes' load from its workers'), ``{"cmd": "info"}`` ->
``{"info": ...}``, ``{"cmd": "quit"}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .timing import Budget, CpuMonitor, keep_round

__all__ = ["RemoteContender", "measure_isolated"]


class RemoteContender:
    """The parent's handle on one worker process: the same fields as a Contender's results."""

    def __init__(self, name: str, settings: dict[str, Any]):
        self.name = name
        self.samples: list[float] = []
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # the directory holding this nnxp package
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen([sys.executable, "-m", "nnxp.bench.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, bufsize=1)
        self._send({**settings, "name": name})
        ready = self._receive()
        self.k, self.pid, self.pool, self._info = ready["k"], ready["pid"], ready["pool"], ready.get("info", {})

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def _receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise RuntimeError(f"benchmark worker for {self.name} exited with status {code} (its error is above)")
        return json.loads(line)

    def sample(self, settle_s: float) -> tuple[float, float]:
        """(seconds per step, the worker's CPU seconds during settle and sample)."""
        self._send({"cmd": "sample", "settle_s": settle_s})
        reply = self._receive()
        return reply["sample_s"], reply["cpu_s"]

    def fetch_info(self) -> None:
        """Ask the worker what it ran (BLAS provider, optimizer, ...), while it is alive."""
        self._send({"cmd": "info"})
        self._info = {**self._receive()["info"], "pid": self.pid}

    def info(self) -> dict[str, Any]:
        return self._info

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send({"cmd": "quit"})
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def measure_isolated(sizes: Sequence[int], batch: int, names: Sequence[str], *, device: str, repeats: int,
                     min_sample_s: float, warmup_s: float, settle_s: float, threads: int | None = None,
                     blas: str | None = None, max_foreign: float = float("inf"), budget: Budget | None = None,
                     monitor: CpuMonitor | None = None) -> tuple[list[RemoteContender], dict[str, Any]]:
    """Time ``names`` on one case, each in its own worker process; returns (contenders with
    ``samples`` filled, what happened: rounds retaken, foreign load per round, seconds waited).

    Round r asks each worker for one sample, in turn, starting at worker r mod n.  A round
    during which other processes (not the workers) used more than ``max_foreign`` cores is
    taken again once the machine is quiet, while the wait ``budget`` lasts.
    """
    monitor = monitor or CpuMonitor()
    budget = budget or Budget(0.0)
    settings = {"sizes": list(sizes), "batch": batch, "device": device, "threads": threads, "blas": blas,
                "min_sample_s": min_sample_s, "warmup_s": warmup_s}
    workers: list[RemoteContender] = []
    try:
        for name in names:
            workers.append(RemoteContender(name, settings))
        workers = [w for w in workers if w.k > 0]  # k == 0: the worker had nothing to time (e.g. no torch)
        for w in workers:  # one untimed round in the same regime as the timed ones
            w.sample(settle_s)
        report: dict[str, Any] = {"rounds_retaken": 0, "rounds_contaminated": 0, "foreign_cores": [],
                                  "waited_s": 0.0, "isolation": "process"}
        kept = 0
        while kept < repeats and workers:
            a = monitor.snapshot()
            taken, worker_cpu = [], 0.0
            for j in range(len(workers)):
                w = workers[(kept + j) % len(workers)]
                seconds, cpu = w.sample(settle_s)
                taken.append((w, seconds))
                worker_cpu += cpu
            b = monitor.snapshot()
            load = None
            if a is not None and b is not None and b[0] > a[0]:
                load = max(0.0, monitor.foreign_cores(a, b) - worker_cpu / (b[0] - a[0]))
            if not keep_round(load, max_foreign, budget, monitor, report):
                continue
            for w, seconds in taken:
                w.samples.append(seconds)
            kept += 1
        for w in workers:
            w.fetch_info()
        return workers, report
    finally:
        for w in workers:
            w.close()
