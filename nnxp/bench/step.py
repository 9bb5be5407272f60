"""The step benchmark: every contender's time for one training step, case by case."""

from __future__ import annotations

import gc
import itertools
import math
import resource
import time
from collections.abc import Sequence
from typing import Any

from .contenders import ADAM_LR, CONTENDERS, N_BATCHES, SGD_LR, build_contenders, note
from .isolated import measure_isolated
from .machine import Threads, machine_info
from .report import SCHEMA, add_ratios, check_targets, log
from .timing import Budget, CpuMonitor, measure, summary

__all__ = ["CPU_BATCHES", "DEFAULT_SIZES", "GPU_BATCHES", "run_step_bench", "step_flops"]

DEFAULT_SIZES = ((784, 128, 10), (784, 256, 10), (784, 800, 10), (784, 1024, 1024, 10))
CPU_BATCHES = (64, 128, 1024)
GPU_BATCHES = (64, 128, 1024, 4096)


def step_flops(sizes: Sequence[int], batch: int) -> int:
    """Floating-point operations of the matrix products of one training step.

    Forward and weight gradient for every layer, input gradient for every layer
    but the first, each 2 B n_{i-1} n_i: ``2 B (2 sum_i n_{i-1} n_i + sum_{i>=2} n_{i-1} n_i)``.
    """
    products = [int(a) * int(b) for a, b in itertools.pairwise(sizes)]
    return 2 * int(batch) * (2 * sum(products) + sum(products[1:]))


def _device_memory_reset(device: str) -> None:
    if device == "cpu":
        return
    import cupy

    cupy.get_default_memory_pool().free_all_blocks()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    except ImportError:
        pass


def _memory(device: str) -> dict[str, float]:
    mem = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if device != "cpu":
        import cupy

        # The pool keeps what it has allocated, and it was emptied before the case:
        # its size now is the most the case's CuPy contenders held at once.
        mem["cupy_pool_peak_mb"] = cupy.get_default_memory_pool().total_bytes() / 2**20
        try:
            import torch

            if torch.cuda.is_available():
                mem["torch_cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        except ImportError:
            pass
    return mem


def run_step_bench(sizes_list: Sequence[Sequence[int]], batches: Sequence[int], *, device: str = "cpu",
                   names: Sequence[str] = CONTENDERS, repeats: int = 21, min_sample_s: float = 0.02,
                   warmup_s: float = 0.2, order: str = "interleaved", threads: int | None = None,
                   max_foreign: float = 0.25, max_wait_s: float = 600.0, settle_s: float = 0.15,
                   argv: Sequence[str] | None = None, blas: str | None = None,
                   processes: bool = False) -> dict[str, Any]:
    """Run the step benchmark; returns the result dict (what ``--json`` writes).

    ``processes``: time each contender in its own worker process, alternated in
    rounds (:mod:`.isolated`), instead of all in this process (interleaved or blocked).

    ``max_foreign``: rounds during which other processes used more than this
    many cores are retaken (``inf``: never); ``max_wait_s``: the most the whole
    run waits for a quiet machine (before each case and before retakes).
    """
    notes: list[str] = []
    cases = []
    monitor, budget = CpuMonitor(), Budget(max_wait_s)
    with Threads(threads) as th:
        machine = machine_info(device)
        total = len(sizes_list) * len(batches)
        started = time.perf_counter()
        for sizes in sizes_list:
            for batch in batches:
                label = "-".join(map(str, sizes))
                log(f"[{len(cases) + 1}/{total}] {label} batch {batch} ...")
                _device_memory_reset(device)
                waited, _ = monitor.wait_idle(max_foreign, budget.left)
                budget.spend(waited)
                if processes:
                    contenders, load = measure_isolated(
                        sizes, batch, names, device=device, repeats=repeats, min_sample_s=min_sample_s,
                        warmup_s=warmup_s, settle_s=settle_s, threads=th.count, blas=blas,
                        max_foreign=max_foreign, budget=budget, monitor=monitor)
                    for c in contenders:
                        for text in c.info().pop("notes", []):
                            note(notes, text)
                else:
                    contenders = build_contenders(sizes, batch, names, device, notes, blas)
                    load = measure(contenders, repeats=repeats, min_sample_s=min_sample_s, warmup_s=warmup_s,
                                   order=order, max_foreign=max_foreign, settle_s=settle_s, budget=budget,
                                   monitor=monitor)
                load["waited_s"] += waited
                if load["rounds_retaken"] or load["rounds_contaminated"]:
                    log(f"  other processes were busy: {load['rounds_retaken']} round(s) retaken, "
                         f"{load['rounds_contaminated']} kept contaminated, waited {load['waited_s']:.0f} s")
                known = [x for x in load["foreign_cores"] if x is not None]
                case = {"sizes": list(sizes), "batch": batch, "flops": step_flops(sizes, batch),
                        "machine_load": {**load, "foreign_cores_max": max(known) if known else None,
                                         "foreign_cores_mean": sum(known) / len(known) if known else None},
                        "contenders": {}}
                for c in contenders:
                    case["contenders"][c.name] = {"k": c.k, **summary(c.samples), **c.info(),
                                                  "samples_s": c.samples}
                case.update(_memory(device))
                add_ratios(case)
                cases.append(case)
                del contenders
                gc.collect()
        elapsed = time.perf_counter() - started
    if budget.waited:
        note(notes, f"waited {budget.waited:.0f} s in all for other processes to go quiet")
    contaminated = sum(c["machine_load"]["rounds_contaminated"] for c in cases)
    if contaminated:
        note(notes, f"{contaminated} round(s) were kept although other processes used more than "
                     f"{max_foreign:g} cores (the wait budget ran out): treat those cases with care")
    settings = {"device": device, "repeats": repeats, "min_sample_ms": min_sample_s * 1e3,
                "warmup_ms": warmup_s * 1e3, "settle_ms": settle_s * 1e3,
                "order": "process-per-contender" if processes else order, "threads": th.count,
                "max_foreign_cores": max_foreign if math.isfinite(max_foreign) else None,
                "max_wait_s": max_wait_s, "blas": blas or "auto",
                "batches_cycled": N_BATCHES, "dtype": "float32", "sgd_lr": SGD_LR, "adam_lr": ADAM_LR,
                "contenders": list(names)}
    result = {"schema": SCHEMA, "kind": "step", "command": list(argv) if argv is not None else None,
              "machine": machine, "settings": settings, "cases": cases, "notes": notes,
              "seconds": elapsed}
    result["targets"] = check_targets(result)
    return result
