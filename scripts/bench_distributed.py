#!/usr/bin/env python
"""Data-parallel throughput on this machine: run under ``mpiexec -n N`` (N = 1, 2, ...).

For each network and global batch: ``fit(..., distributed=dp)`` on synthetic
MNIST-shaped data (speed does not depend on the values), the median
samples/s over the timed epochs (the first is a warm-up), the host time per
step in the gradient all-reduce (waiting for the slower rank included), and
the all-reduce of a buffer of the network's parameter count on its own
(median of many calls: the pure communication cost).  ``--plain`` (one
process, no mpiexec) times the ordinary fast path for comparison.  Rank 0
prints one JSON line per case::

    python scripts/bench_distributed.py --plain
    OPENBLAS_NUM_THREADS=1 python scripts/bench_distributed.py --plain
    mpiexec -n 1 python scripts/bench_distributed.py
    mpiexec -n 2 python scripts/bench_distributed.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

import nnxp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="784-256-10,784-800-10")
    parser.add_argument("--batches", default="64,256")
    parser.add_argument("--rows", type=int, default=8192, help="samples per epoch")
    parser.add_argument("--epochs", type=int, default=4, help="epochs, the first a warm-up")
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument("--plain", action="store_true", help="one process without --distributed")
    args = parser.parse_args()

    dp = None
    if not args.plain:
        from nnxp.distributed import init

        dp = init(timeout=0)
    rng = np.random.default_rng(0)
    x = rng.random((args.rows, 784), dtype=np.float32)
    y = rng.integers(0, 10, size=args.rows)
    for spec in args.sizes.split(","):
        sizes = [int(s) for s in spec.split("-")]
        for batch in (int(b) for b in args.batches.split(",")):
            net = nnxp.Network(sizes, seed=0)
            if dp is not None:
                dp.allreduce_seconds, dp.allreduce_calls = 0.0, 0
            history = nnxp.fit(net, x[:, :sizes[0]], y, epochs=args.epochs, batch_size=batch,
                               optimizer=args.optimizer, lr=0.01, verbose=0, distributed=dp)
            rates = history["samples_per_second"][1:]
            record = {"sizes": spec, "batch": batch, "ranks": dp.size if dp else 1,
                      "mode": "plain" if dp is None else "distributed",
                      "samples_per_second": statistics.median(rates), "per_epoch": rates,
                      "parameters": sum(int(np.prod(p.shape)) for p in net.parameters())}
            if dp is not None:
                steps = dp.allreduce_calls
                record["allreduce_ms_per_step_in_training"] = 1e3 * dp.allreduce_seconds / steps
                record["allreduce_ms_alone"] = _allreduce_alone(dp, record["parameters"])
            if dp is None or dp.is_root:
                record.update(blas_threads=_blas_threads(), machine=platform.node(), cpus=os.cpu_count(),
                              load=os.getloadavg()[0], time=time.strftime("%Y-%m-%d %H:%M"))
                print(json.dumps(record), flush=True)


def _blas_threads() -> int | None:
    try:
        import threadpoolctl
    except ImportError:
        return None
    return max((info["num_threads"] for info in threadpoolctl.threadpool_info()), default=None)


def _allreduce_alone(dp, n: int, calls: int = 200) -> float:
    """Median milliseconds of one all-reduce of n float32 values."""
    buf = np.ones(n, dtype=np.float32)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        dp.comm.allreduce_sum(buf)
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


if __name__ == "__main__":
    main()
