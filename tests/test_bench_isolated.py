"""``nnxp bench --processes``: each contender in its own worker process, taking turns (no timing asserted)."""

from __future__ import annotations

import os

import pytest

from nnxp.bench.isolated import measure_isolated
from nnxp.bench.timing import Budget

from conftest import one_line_error, run_cli


def test_each_contender_runs_in_its_own_process_and_gives_every_sample():
    names = ["nnxp-sgd", "numpy-ref", "gemm-floor"]
    contenders, report = measure_isolated([8, 16, 4], 8, names, device="cpu", repeats=3, min_sample_s=1e-4,
                                          warmup_s=1e-3, settle_s=0.0, threads=1, blas="openblas",
                                          budget=Budget(0.0))
    assert [c.name for c in contenders] == names
    pids = [c.info()["pid"] for c in contenders]
    assert len(set(pids)) == 3 and os.getpid() not in pids
    for c in contenders:
        assert len(c.samples) == 3 and all(s > 0 for s in c.samples) and c.k >= 1
        assert c.proc.poll() is not None  # the worker was told to quit and did
    assert contenders[0].info()["blas"].startswith("openblas")  # the worker's own executor, as asked
    assert report["isolation"] == "process" and len(report["foreign_cores"]) == 3


def test_processes_cannot_be_blocked(capsys):
    code, _, err = run_cli(capsys, "bench", "--quick", "--processes", "--order", "blocked")
    assert code == 2
    assert "--processes" in one_line_error(err)
