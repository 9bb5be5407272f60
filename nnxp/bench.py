"""``nnxp bench``: one training step timed side by side with references, and the race.

**Step benchmark** (``nnxp bench``).  For each layer-size list and batch size
it times ONE training step (forward, loss gradient, backward, optimizer update;
float32; ReLU hidden layers, softmax + cross-entropy output) of:

``nnxp-sgd`` / ``nnxp-adam``
    ``net.train_step(x, y, optimizer, ops)`` with ``ops = ops_for(net.backend)``
    (the fast path), SGD lr 0.01 / Adam lr 0.001, data already on the device.
``numpy-ref`` (``cupy-ref`` on a GPU)
    :class:`ReferenceMLP`: the step as a competent person writes it with plain
    ``@`` and allocating expressions, SGD lr 0.01, the same maths.
``torch-sgd`` / ``torch-adam``
    PyTorch eager: ``nn.Sequential``, ``F.cross_entropy``, ``backward()``,
    ``torch.optim.SGD`` / ``Adam``, ``zero_grad(set_to_none=True)``.  On a GPU
    also ``torch-sgd-graph`` / ``torch-adam-graph``: the same step captured
    once in a CUDA graph and replayed.
``gemm-floor``
    Only the step's matrix products (NumPy's ``matmul(..., out=)`` into
    preallocated arrays): forward per layer, weight gradient per layer, input
    gradient for every layer but the first.  No NumPy step can be faster.
``torch-gemm-floor``
    The same products with ``torch.matmul(..., out=)``: PyTorch's BLAS (MKL on
    x86, cuBLAS on a GPU), so that a torch step faster than ``gemm-floor`` can
    be traced to the BLAS rather than to the step's code.

How it is timed (see :func:`measure`): every contender gets the same initial
weights and the same few pre-made batches (cycled); after a warm-up that also
picks, per contender, how many consecutive steps ``k`` one sample times (so a
sample lasts at least ``--min-sample-ms``), the contenders are sampled
round-robin within each repeat (the starting contender rotates), with the
garbage collector off.  Before each sample the contender's weights are put back
to the initial ones (outside the timed region), so every sample times the same
k steps.  The device is synchronised before and after each sample.  Reported:
the median time per step and the inter-quartile range over the samples.

**Race** (``nnxp bench --race``, ``scripts/race.py``): 784-256-10, ReLU,
softmax cross-entropy, SGD lr 0.1, batch 512, test accuracy after every epoch,
until it reaches the target (96% MNIST, 85% Fashion-MNIST), nnxp (``Network.fit``
with a stopping callback) against the same loop written in PyTorch.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import itertools
import json
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .cli import check_writable, nonnegative_float, positive_float, positive_int
from .errors import ConfigError, DataError

__all__ = [
    "TARGETS",
    "GemmFloor",
    "NnxpStep",
    "ReferenceMLP",
    "ReferenceStep",
    "TorchStep",
    "add_command",
    "format_markdown",
    "format_table",
    "main",
    "measure",
    "race_main",
    "run_race",
    "run_step_bench",
    "step_flops",
]

SCHEMA = "nnxp-bench/1"
DEFAULT_SIZES = ((784, 128, 10), (784, 256, 10), (784, 800, 10), (784, 1024, 1024, 10))
CPU_BATCHES = (64, 128, 1024)
GPU_BATCHES = (64, 128, 1024, 4096)
SGD_LR = 0.01
ADAM_LR = 0.001
N_BATCHES = 4  # pre-made batches, cycled by every contender

#: The project's targets, checked on every run (at the time of the run).
TARGETS = {
    "sizes": [784, 256, 10], "batch": 128,
    "nnxp_over_ref_max": 1.10,        # nnxp-sgd time / numpy-ref time <= 1.10
    "torch_over_nnxp_min": 1.30,      # torch-sgd time / nnxp-sgd time >= 1.3
    "floor_fraction_min": 0.70,       # gemm-floor time / nnxp-sgd time >= 0.70 at batch >= 128
    "floor_min_batch": 128,
}

CONTENDERS = ("nnxp-sgd", "nnxp-adam", "numpy-ref", "torch-sgd", "torch-adam",
              "torch-sgd-graph", "torch-adam-graph", "gemm-floor", "torch-gemm-floor")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the FLOP count -------------------------------------------------------------------------------

def step_flops(sizes: Sequence[int], batch: int) -> int:
    """Floating-point operations of the matrix products of one training step.

    Forward and weight gradient for every layer, input gradient for every layer
    but the first, each 2 B n_{i-1} n_i: ``2 B (2 sum_i n_{i-1} n_i + sum_{i>=2} n_{i-1} n_i)``.
    """
    products = [int(a) * int(b) for a, b in itertools.pairwise(sizes)]
    return 2 * int(batch) * (2 * sum(products) + sum(products[1:]))


# -- the contenders -------------------------------------------------------------------------------

class ReferenceMLP:
    """The training step written by hand with plain ``@`` (NumPy or CuPy as ``xp``).

    Weights (out, in) like nnxp's; ReLU hidden layers, softmax output,
    cross-entropy cost averaged over the batch, plain SGD.  Deliberately
    ordinary code: every expression allocates its result.
    """

    def __init__(self, weights: Sequence[tuple[Any, Any]], lr: float = SGD_LR, xp: Any = np,
                 dtype: Any = np.float32):
        self.xp = xp
        self.lr = float(lr)
        self.W = [xp.array(w, dtype=dtype) for w, _ in weights]
        self.b = [xp.array(b, dtype=dtype) for _, b in weights]

    def gradients(self, x: Any, y: Any) -> tuple[Any, list[tuple[Any, Any]], Any]:
        """(batch-mean cost, [(dW_l, db_l)], softmax outputs) for inputs x and one-hot targets y."""
        xp = self.xp
        acts = [x]
        a = x
        for W, b in zip(self.W[:-1], self.b[:-1]):
            a = xp.maximum(a @ W.T + b, 0)
            acts.append(a)
        z = a @ self.W[-1].T + self.b[-1]
        z = z - z.max(axis=1, keepdims=True)
        e = xp.exp(z)
        s = e.sum(axis=1, keepdims=True)
        p = e / s
        B = x.shape[0]
        cost = -(y * (z - xp.log(s))).sum() / B
        d = (p - y) / B
        grads = []
        for l in range(len(self.W) - 1, -1, -1):
            grads.append((d.T @ acts[l], d.sum(axis=0)))
            if l > 0:
                d = (d @ self.W[l]) * (acts[l] > 0)
        grads.reverse()
        return cost, grads, p

    def step(self, x: Any, y: Any) -> tuple[Any, Any]:
        """One SGD step in place; returns (cost, outputs) like ``Network.train_step``."""
        cost, grads, p = self.gradients(x, y)
        for W, b, (dW, db) in zip(self.W, self.b, grads):
            W -= self.lr * dW
            b -= self.lr * db
        return cost, p


class _Contender:
    """One way of doing the step.  ``step()`` does one; ``reset()`` restores the
    initial weights (never timed); ``sync()`` waits for queued device work."""

    name = ""
    pool = "numpy"  # whose threads run it: "numpy" (NumPy's BLAS / CuPy) or "torch"

    def __init__(self) -> None:
        self.k = 1
        self.samples: list[float] = []  # seconds per step, one per sample
        self._i = 0

    def step(self) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        self._i = 0

    def sync(self) -> None:
        pass

    def info(self) -> dict[str, Any]:
        return {}


class NnxpStep(_Contender):
    """``Network.train_step`` on the fast ops, data already on the device."""

    def __init__(self, name: str, sizes: Sequence[int], weights, batches, optimizer: str,
                 device: Any = "cpu", dtype: str = "float32"):
        super().__init__()
        from .network import Network
        from .kernels import ops_for
        from .optim import SGD, Adam

        self.name = name
        self.net = Network(list(sizes), hidden="relu", output="softmax", loss="cross_entropy",
                           dtype=dtype, device=device, seed=0)
        self.net.set_weights(weights)
        self._initial = [self.net.backend.asarray(p, p.dtype, copy=True) for p in self.net.parameters()]
        self.batches = [(self.net.inputs(x), self.net.targets(labels, len(labels))) for x, labels in batches]
        self.optimizer = SGD(lr=SGD_LR) if optimizer == "sgd" else Adam(lr=ADAM_LR)
        self.ops_note = ""
        try:
            self.ops = ops_for(self.net.backend)
        except ImportError as exc:  # a fast path that is not importable: say so, use the generic one
            self.ops = ops_for(self.net.backend, fast=False)
            self.ops_note = f"fast path unavailable ({exc}); generic ops used"

    def step(self) -> None:
        x, y = self.batches[self._i]
        self._i = (self._i + 1) % len(self.batches)
        self.net.train_step(x, y, self.optimizer, self.ops)

    def reset(self) -> None:
        self._i = 0
        for p, p0 in zip(self.net.parameters(), self._initial):
            p[...] = p0

    def sync(self) -> None:
        self.net.backend.synchronize()

    def info(self) -> dict[str, Any]:
        out = {"ops": type(self.ops).__name__, "optimizer": repr(self.optimizer)}
        if self.ops_note:
            out["note"] = self.ops_note
        return out


class ReferenceStep(_Contender):
    """:class:`ReferenceMLP` (NumPy, or CuPy on a GPU) on the same batches."""

    def __init__(self, name: str, weights, batches, xp: Any = np, num_classes: int = 10):
        super().__init__()
        self.name = name
        self.xp = xp
        self.ref = ReferenceMLP(weights, SGD_LR, xp, np.float32)
        self._initial = [xp.array(w, copy=True) for w in self.ref.W + self.ref.b]
        eye = np.eye(num_classes, dtype=np.float32)
        self.batches = [(xp.asarray(x, dtype=xp.float32), xp.asarray(eye[labels])) for x, labels in batches]

    def step(self) -> None:
        x, y = self.batches[self._i]
        self._i = (self._i + 1) % len(self.batches)
        self.ref.step(x, y)

    def reset(self) -> None:
        self._i = 0
        for p, p0 in zip(self.ref.W + self.ref.b, self._initial):
            p[...] = p0

    def sync(self) -> None:
        if self.xp is not np:
            self.xp.cuda.get_current_stream().synchronize()


class TorchStep(_Contender):
    """PyTorch eager (or one CUDA-graph replay): ``nn.Sequential`` + ``F.cross_entropy``."""

    def __init__(self, name: str, sizes: Sequence[int], weights, batches, optimizer: str,
                 device: str = "cpu", dtype: str = "float32", graph: bool = False):
        super().__init__()
        import torch
        import torch.nn.functional as F
        from torch import nn

        self.name = name
        self.pool = "torch"
        self.torch, self.F = torch, F
        self.device = torch.device(device)
        tdtype = getattr(torch, dtype)
        layers: list[Any] = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.model = nn.Sequential(*layers).to(device=self.device, dtype=tdtype)
        self.linears = [m for m in self.model if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for lin, (w, b) in zip(self.linears, weights):
                lin.weight.copy_(torch.as_tensor(np.asarray(w), dtype=tdtype))
                lin.bias.copy_(torch.as_tensor(np.asarray(b), dtype=tdtype))
        self._initial = [p.detach().clone() for p in self.model.parameters()]
        self.batches = [(torch.as_tensor(np.asarray(x), dtype=tdtype, device=self.device),
                         torch.as_tensor(np.asarray(labels), dtype=torch.int64, device=self.device))
                        for x, labels in batches]
        params = list(self.model.parameters())
        if optimizer == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=SGD_LR)
        else:
            self.optimizer = torch.optim.Adam(params, lr=ADAM_LR, capturable=graph)
        self.graph = None
        if graph:
            self._capture()

    def _eager_step(self, x: Any, y: Any) -> Any:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.F.cross_entropy(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss

    def step(self) -> None:
        x, y = self.batches[self._i]
        self._i = (self._i + 1) % len(self.batches)
        if self.graph is None:
            self._eager_step(x, y)
        else:  # the inputs a graph reads live at fixed addresses: copy the batch there
            self.static_x.copy_(x, non_blocking=True)
            self.static_y.copy_(y, non_blocking=True)
            self.graph.replay()

    def _capture(self) -> None:
        """Whole-step capture (PyTorch's documented recipe): warm up on a side stream, then capture."""
        torch = self.torch
        self.static_x = self.batches[0][0].clone()
        self.static_y = self.batches[0][1].clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self._eager_step(self.static_x, self.static_y)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            self.static_loss = self._eager_step(self.static_x, self.static_y)
        self.graph = graph

    def reset(self) -> None:
        self._i = 0
        with self.torch.no_grad():
            for p, p0 in zip(self.model.parameters(), self._initial):
                p.copy_(p0)

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(lin.weight.detach().cpu().numpy().copy(), lin.bias.detach().cpu().numpy().copy())
                for lin in self.linears]

    def info(self) -> dict[str, Any]:
        defaults = self.optimizer.defaults
        return {"optimizer": type(self.optimizer).__name__,
                "foreach": defaults.get("foreach"), "fused": defaults.get("fused"),
                "cuda_graph": self.graph is not None}


class GemmFloor(_Contender):
    """Only the step's matrix products, into preallocated arrays (the speed limit).

    Same operand layouts as the step: ``x @ W.T`` forward, ``delta.T @ a_prev``
    weight gradient, ``delta @ W`` input gradient (every layer but the first).
    """

    name = "gemm-floor"

    def __init__(self, sizes: Sequence[int], batches, xp: Any = np, dtype: Any = np.float32):
        super().__init__()
        self.xp = xp
        rng = np.random.default_rng(1)
        B = batches[0][0].shape[0]
        n = list(sizes)
        L = len(n) - 1
        put = lambda a: xp.asarray(np.asarray(a, dtype=np.float32))
        self.x = [put(x) for x, _ in batches]
        self.W = [put(rng.normal(0.0, math.sqrt(2.0 / n[l]), (n[l + 1], n[l]))) for l in range(L)]
        self.hidden = [put(rng.uniform(0.0, 1.0, (B, n[l]))) for l in range(1, L)]  # a_1 .. a_{L-1}
        self.delta = [put(rng.normal(0.0, 1e-3, (B, n[l + 1]))) for l in range(L)]
        self.z = [xp.empty((B, n[l + 1]), dtype=dtype) for l in range(L)]
        self.dW = [xp.empty((n[l + 1], n[l]), dtype=dtype) for l in range(L)]
        self.da = [xp.empty((B, n[l]), dtype=dtype) for l in range(L)]  # da[l] = dC/da_l, l >= 1 used

    def step(self) -> None:
        xp = self.xp
        x = self.x[self._i]
        self._i = (self._i + 1) % len(self.x)
        acts = [x, *self.hidden]
        for l, W in enumerate(self.W):
            xp.matmul(acts[l], W.T, out=self.z[l])
        for l in range(len(self.W) - 1, -1, -1):
            xp.matmul(self.delta[l].T, acts[l], out=self.dW[l])
            if l > 0:
                xp.matmul(self.delta[l], self.W[l], out=self.da[l])

    def sync(self) -> None:
        if self.xp is not np:
            self.xp.cuda.get_current_stream().synchronize()


class TorchGemmFloor(_Contender):
    """:class:`GemmFloor` done by PyTorch (``torch.matmul(..., out=)``): the speed limit of
    PyTorch's BLAS (MKL on x86 CPUs, cuBLAS on GPUs), to compare BLAS with BLAS."""

    name = "torch-gemm-floor"
    pool = "torch"

    def __init__(self, sizes: Sequence[int], batches, device: str = "cpu"):
        super().__init__()
        import torch

        self.torch = torch
        self.device = torch.device(device)
        host = GemmFloor(sizes, batches, np)  # the same operands
        put = lambda a: torch.as_tensor(np.asarray(a), device=self.device)
        self.x = [put(a) for a in host.x]
        self.W = [put(a) for a in host.W]
        self.hidden = [put(a) for a in host.hidden]
        self.delta = [put(a) for a in host.delta]
        self.z = [put(a) for a in host.z]
        self.dW = [put(a) for a in host.dW]
        self.da = [put(a) for a in host.da]

    def step(self) -> None:
        mm = self.torch.matmul
        x = self.x[self._i]
        self._i = (self._i + 1) % len(self.x)
        acts = [x, *self.hidden]
        for l, W in enumerate(self.W):
            mm(acts[l], W.T, out=self.z[l])
        for l in range(len(self.W) - 1, -1, -1):
            mm(self.delta[l].T, acts[l], out=self.dW[l])
            if l > 0:
                mm(self.delta[l], self.W[l], out=self.da[l])

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)


# -- timing ---------------------------------------------------------------------------------------

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
        ``max_wait_s``); returns (seconds waited, the last window's foreign load)."""
        if not self.ok or not math.isfinite(max_foreign) or max_wait_s <= 0:
            return 0.0, None
        t0 = time.perf_counter()
        while True:
            a = self.snapshot()
            time.sleep(window_s)
            load = self.foreign_cores(a, self.snapshot())
            waited = time.perf_counter() - t0
            if load is None or load < max_foreign or waited >= max_wait_s:
                return waited, load


class _Budget:
    """How long a run may still wait for other processes to go quiet, in total."""

    def __init__(self, seconds: float):
        self.left = seconds
        self.waited = 0.0

    def spend(self, seconds: float) -> None:
        self.waited += seconds
        self.left = max(0.0, self.left - seconds)


def _calibrate(c: _Contender, warmup_s: float, min_sample_s: float) -> None:
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


def _settle(c: _Contender, seconds: float) -> None:
    """Run untimed steps for ``seconds``: lets another library's idle threads stop spinning."""
    c.reset()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        c.step()
    c.sync()


def _sample(c: _Contender) -> float:
    """Seconds per step over k consecutive steps, from the initial weights."""
    c.reset()
    c.sync()
    t0 = time.perf_counter()
    for _ in range(c.k):
        c.step()
    c.sync()
    return (time.perf_counter() - t0) / c.k


def measure(contenders: Sequence[_Contender], *, repeats: int, min_sample_s: float,
            warmup_s: float, order: str = "interleaved", max_foreign: float = float("inf"),
            settle_s: float = 0.0, budget: _Budget | None = None,
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
    budget = budget or _Budget(0.0)
    for c in contenders:
        _calibrate(c, warmup_s, min_sample_s)
    def pool_changes(prev: _Contender | None, c: _Contender) -> None:
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
            if load is not None and load > max_foreign:
                if budget.left > 0:
                    report["rounds_retaken"] += 1
                    waited, _ = monitor.wait_idle(max_foreign, budget.left)
                    budget.spend(waited)
                    report["waited_s"] += waited
                    continue
                report["rounds_contaminated"] += 1
            for c, t in taken:
                c.samples.append(t)
            report["foreign_cores"].append(load)
            kept += 1
    finally:
        if was_enabled:
            gc.enable()
    return report


def _summary(samples: Sequence[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1e3
    q1, med, q3 = (float(v) for v in np.percentile(a, [25, 50, 75]))
    return {"median_ms": med, "q1_ms": q1, "q3_ms": q3, "iqr_ms": q3 - q1,
            "min_ms": float(a.min()), "max_ms": float(a.max()), "n": int(a.size)}


# -- machine and versions ---------------------------------------------------------------------------

def _cpu_model() -> str:
    """The CPU's name, with family/model and the vector extensions that matter for GEMM."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        return platform.processor() or platform.machine()
    name = fields.get("model name", platform.machine())
    flags = set(fields.get("flags", "").split())
    simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile") if f in flags]
    extra = [f"family {fields['cpu family']} model {fields['model']}"] if "model" in fields else []
    caches = _caches()
    return f"{name} ({', '.join(extra + [' '.join(simd)] + ([caches] if caches else []))})"


def _caches() -> str:
    """"L2 2048K, L3 266240K" from sysfs (empty where unknown)."""
    out = []
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        for index in sorted(base.glob("index*")):
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            if kind in ("Unified", "Data") and level in ("2", "3"):
                out.append(f"L{level} {(index / 'size').read_text().strip()}")
    except OSError:
        return ""
    return ", ".join(out)


def _blas_info() -> list[dict[str, Any]]:
    try:
        import threadpoolctl
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "prefix", "version", "num_threads", "threading_layer",
            "architecture", "filepath")
    return [{k: v for k, v in info.items() if k in keep} for info in threadpoolctl.threadpool_info()]


def _numpy_blas_threads() -> int | None:
    """The thread count of the BLAS NumPy uses (None without threadpoolctl)."""
    blas = [b for b in _blas_info() if b.get("user_api") == "blas"]
    mine = [b for b in blas if "numpy" in str(b.get("filepath", ""))] or blas
    return int(mine[0]["num_threads"]) if mine else None


def machine_info(device: str = "cpu") -> dict[str, Any]:
    from . import __version__

    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "blas": _blas_info(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                   "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
                       if k in os.environ},
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "nnxp": __version__},
        "code": code_fingerprint(),
    }
    try:
        import torch

        info["versions"]["torch"] = torch.__version__
        info["torch"] = {"num_threads": torch.get_num_threads(), "mkl": torch.backends.mkl.is_available(),
                         "mkldnn": torch.backends.mkldnn.is_available()}
        if device != "cpu" and torch.cuda.is_available():
            info["torch"]["cuda"] = torch.version.cuda
            info["torch"]["allow_tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
    except ImportError:
        info["versions"]["torch"] = None
    try:
        import cupy

        info["versions"]["cupy"] = cupy.__version__
        if device != "cpu":
            dev = cupy.cuda.Device()
            props = cupy.cuda.runtime.getDeviceProperties(dev.id)
            name = props["name"]
            info["gpu"] = {"name": name.decode() if isinstance(name, bytes) else str(name),
                           "runtime": cupy.cuda.runtime.runtimeGetVersion(),
                           "driver": cupy.cuda.runtime.driverGetVersion(),
                           "CUPY_TF32": os.environ.get("CUPY_TF32", "(unset)")}
    except ImportError:
        info["versions"]["cupy"] = None
    except Exception as exc:  # noqa: BLE001 - a broken CUDA install raises anything
        info["versions"]["cupy"] = f"(unusable: {exc})"
    return info


_NUMERIC_FILES = ("network.py", "layers.py", "kernels/reference.py", "kernels/numpy.py", "kernels/blas.py", "kernels/cupy.py", "optim.py", "losses.py", "activations.py",
                  "train.py", "backend.py")


def code_fingerprint() -> dict[str, Any]:
    """Which nnxp code was measured: git commit, whether the numeric files differ from it, and a
    hash of those files' contents (they change while they are being optimised)."""
    import hashlib
    import subprocess

    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _NUMERIC_FILES:
        path = root / name
        if path.exists():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    out: dict[str, Any] = {"numeric_files_sha256": digest.hexdigest()[:16]}
    try:
        git = lambda *a: subprocess.run(["git", "-C", str(root), *a], capture_output=True,
                                        text=True, timeout=10, check=False)
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode == 0:
            out["git_commit"] = head.stdout.strip()
            changed = git("status", "--porcelain", "--", *_NUMERIC_FILES)
            out["numeric_files_changed"] = sorted(line[3:] for line in changed.stdout.splitlines())
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def _describe_machine(m: dict[str, Any]) -> list[str]:
    blas = [b for b in m["blas"] if b.get("user_api") == "blas"]
    blas_text = "; ".join(
        f"{b.get('internal_api')} {b.get('version')} ({b.get('num_threads')} threads, "
        f"{b.get('architecture', '?')}, {b.get('threading_layer', '?')})" for b in blas) or "unknown"
    v = m["versions"]
    lines = [
        f"date: {m['date']}",
        f"machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), {m['platform']}",
        f"BLAS (NumPy): {blas_text}; OPENBLAS_CORETYPE={m['OPENBLAS_CORETYPE']}",
        (f"versions: python {v['python']}, numpy {v['numpy']}, nnxp {v['nnxp']}, "
         f"torch {v.get('torch') or '-'}, cupy {v.get('cupy') or '-'}"),
    ]
    if "torch" in m:
        t = m["torch"]
        lines.append(f"torch: {t['num_threads']} threads, MKL {'yes' if t['mkl'] else 'no'}"
                     + (f", CUDA {t['cuda']}, TF32 matmul {t['allow_tf32_matmul']}" if "cuda" in t else ""))
    if "gpu" in m:
        g = m["gpu"]
        lines.append(f"GPU: {g['name']}, CUDA runtime {g['runtime']}, driver {g['driver']}, "
                     f"CUPY_TF32={g['CUPY_TF32']}")
    if m.get("thread_env"):
        lines.append("thread env: " + ", ".join(f"{k}={v}" for k, v in m["thread_env"].items()))
    code = m.get("code")
    if code:
        changed = code.get("numeric_files_changed")
        lines.append(f"nnxp code: commit {code.get('git_commit', '?')}"
                     + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")
                     + f" (numeric files sha256 {code['numeric_files_sha256']})")
    return lines


# -- threads ------------------------------------------------------------------------------------------

class _Threads:
    """Same thread count for NumPy's BLAS and PyTorch (``--threads``, default: the BLAS's)."""

    def __init__(self, threads: int | None):
        self.requested = threads
        self._limiter = None
        self.count: int | None = None

    def __enter__(self) -> _Threads:
        if self.requested is not None:
            try:
                import threadpoolctl

                self._limiter = threadpoolctl.threadpool_limits(limits=self.requested, user_api="blas")
            except ImportError:
                raise ConfigError("--threads needs threadpoolctl: pip install threadpoolctl") from None
        self.count = self.requested or _numpy_blas_threads()
        try:
            import torch

            self._torch_before = torch.get_num_threads()
            if self.count:
                torch.set_num_threads(self.count)
        except ImportError:
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self._limiter is not None:
            self._limiter.restore_original_limits()
        try:
            import torch

            torch.set_num_threads(self._torch_before)
        except (ImportError, AttributeError):
            pass


# -- the step benchmark -------------------------------------------------------------------------------

def _torch_usable(device: str) -> str:
    """'' when PyTorch can run on ``device``, else why not."""
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if device != "cpu" and not torch.cuda.is_available():
        return "PyTorch has no CUDA here"
    return ""


def _make_batches(sizes: Sequence[int], batch: int, seed: int = 0):
    """N_BATCHES (x, labels) pairs on the host: pixel-like inputs in [0, 1), random labels."""
    rng = np.random.default_rng([seed, batch, *sizes])
    return [(rng.uniform(0.0, 1.0, (batch, sizes[0])).astype(np.float32),
             rng.integers(0, sizes[-1], batch)) for _ in range(N_BATCHES)]


def _initial_weights(sizes: Sequence[int]):
    """nnxp's own initial network (He init, seed 0) as host float32 (W, b) pairs, shared by all."""
    from .network import Network

    net = Network(list(sizes), hidden="relu", output="softmax", device="cpu", seed=0, dtype="float32")
    return net.get_weights()


def build_contenders(sizes: Sequence[int], batch: int, names: Sequence[str], device: str,
                     notes: list[str]) -> list[_Contender]:
    weights = _initial_weights(sizes)
    batches = _make_batches(sizes, batch)
    gpu = device != "cpu"
    xp: Any = np
    if gpu:
        import cupy as xp
    torch_device = "cuda" if device == "cuda" else device
    why_no_torch = _torch_usable(device)
    out: list[_Contender] = []
    for name in names:
        if name in ("nnxp-sgd", "nnxp-adam"):
            out.append(NnxpStep(name, sizes, weights, batches, name.split("-")[1], device=device))
        elif name == "numpy-ref":
            out.append(ReferenceStep("cupy-ref" if gpu else "numpy-ref", weights, batches, xp, sizes[-1]))
        elif name == "gemm-floor":
            out.append(GemmFloor(sizes, batches, xp))
        elif name == "torch-gemm-floor":
            if why_no_torch:
                _note(notes, f"{name} skipped: {why_no_torch}")
                continue
            out.append(TorchGemmFloor(sizes, batches, torch_device))
        elif name.startswith("torch-"):
            graph = name.endswith("-graph")
            if why_no_torch:
                _note(notes, f"{name} skipped: {why_no_torch}")
                continue
            if graph and not gpu:
                continue  # CUDA graphs exist only on a GPU
            try:
                out.append(TorchStep(name, sizes, weights, batches, name.split("-")[1],
                                     device=torch_device, graph=graph))
            except Exception as exc:
                if not graph:
                    raise
                _note(notes, f"{name} skipped: CUDA graph capture failed ({type(exc).__name__}: {exc})")
    # Each thread pool's contenders together: the round-robin then changes pool twice a round.
    return sorted(out, key=lambda c: c.pool != "numpy")


def _note(notes: list[str], text: str) -> None:
    if text not in notes:
        notes.append(text)
        _log(f"note: {text}")


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
                   argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the step benchmark; returns the result dict (what ``--json`` writes).

    ``max_foreign``: rounds during which other processes used more than this
    many cores are retaken (``inf``: never); ``max_wait_s``: the most the whole
    run waits for a quiet machine (before each case and before retakes).
    """
    notes: list[str] = []
    cases = []
    monitor, budget = CpuMonitor(), _Budget(max_wait_s)
    with _Threads(threads) as th:
        machine = machine_info(device)
        total = len(sizes_list) * len(batches)
        started = time.perf_counter()
        for sizes in sizes_list:
            for batch in batches:
                label = "-".join(map(str, sizes))
                _log(f"[{len(cases) + 1}/{total}] {label} batch {batch} ...")
                _device_memory_reset(device)
                contenders = build_contenders(sizes, batch, names, device, notes)
                waited, _ = monitor.wait_idle(max_foreign, budget.left)
                budget.spend(waited)
                load = measure(contenders, repeats=repeats, min_sample_s=min_sample_s, warmup_s=warmup_s,
                               order=order, max_foreign=max_foreign, settle_s=settle_s, budget=budget,
                               monitor=monitor)
                load["waited_s"] += waited
                if load["rounds_retaken"] or load["rounds_contaminated"]:
                    _log(f"  other processes were busy: {load['rounds_retaken']} round(s) retaken, "
                         f"{load['rounds_contaminated']} kept contaminated, waited {load['waited_s']:.0f} s")
                known = [x for x in load["foreign_cores"] if x is not None]
                case = {"sizes": list(sizes), "batch": batch, "flops": step_flops(sizes, batch),
                        "machine_load": {**load, "foreign_cores_max": max(known) if known else None,
                                         "foreign_cores_mean": sum(known) / len(known) if known else None},
                        "contenders": {}}
                for c in contenders:
                    case["contenders"][c.name] = {"k": c.k, **_summary(c.samples), **c.info(),
                                                  "samples_s": c.samples}
                case.update(_memory(device))
                _add_ratios(case)
                cases.append(case)
                del contenders
                gc.collect()
        elapsed = time.perf_counter() - started
    if budget.waited:
        _note(notes, f"waited {budget.waited:.0f} s in all for other processes to go quiet")
    contaminated = sum(c["machine_load"]["rounds_contaminated"] for c in cases)
    if contaminated:
        _note(notes, f"{contaminated} round(s) were kept although other processes used more than "
                     f"{max_foreign:g} cores (the wait budget ran out): treat those cases with care")
    settings = {"device": device, "repeats": repeats, "min_sample_ms": min_sample_s * 1e3,
                "warmup_ms": warmup_s * 1e3, "settle_ms": settle_s * 1e3, "order": order, "threads": th.count,
                "max_foreign_cores": max_foreign if math.isfinite(max_foreign) else None,
                "max_wait_s": max_wait_s,
                "batches_cycled": N_BATCHES, "dtype": "float32", "sgd_lr": SGD_LR, "adam_lr": ADAM_LR,
                "contenders": list(names)}
    result = {"schema": SCHEMA, "kind": "step", "command": list(argv) if argv is not None else None,
              "machine": machine, "settings": settings, "cases": cases, "notes": notes,
              "seconds": elapsed}
    result["targets"] = check_targets(result)
    return result


def _med(case: dict[str, Any], name: str) -> float | None:
    c = case["contenders"].get(name) or (case["contenders"].get("cupy-ref") if name == "numpy-ref" else None)
    return c["median_ms"] if c else None


def _add_ratios(case: dict[str, Any]) -> None:
    sgd, adam, ref = _med(case, "nnxp-sgd"), _med(case, "nnxp-adam"), _med(case, "numpy-ref")
    tsgd, tadam, floor = _med(case, "torch-sgd"), _med(case, "torch-adam"), _med(case, "gemm-floor")
    div = lambda a, b: a / b if a is not None and b else None
    case["ratios"] = {
        "nnxp_sgd_over_ref": div(sgd, ref),
        "torch_sgd_over_nnxp_sgd": div(tsgd, sgd),
        "torch_adam_over_nnxp_adam": div(tadam, adam),
        "floor_fraction": div(floor, sgd),
        "torch_sgd_graph_over_nnxp_sgd": div(_med(case, "torch-sgd-graph"), sgd),
        "torch_adam_graph_over_nnxp_adam": div(_med(case, "torch-adam-graph"), adam),
        "torch_floor_over_floor": div(_med(case, "torch-gemm-floor"), floor),
    }
    case["nnxp_sgd_gflops"] = case["flops"] / (sgd * 1e6) if sgd else None
    case["floor_gflops"] = case["flops"] / (floor * 1e6) if floor else None


def check_targets(result: dict[str, Any]) -> dict[str, Any]:
    """The project's targets, each with the measured value and whether it is met (None: not measured)."""
    t = TARGETS
    out: dict[str, Any] = {}
    main = [c for c in result["cases"] if c["sizes"] == t["sizes"] and c["batch"] == t["batch"]]
    r = main[0]["ratios"] if main else {}
    v = r.get("nnxp_sgd_over_ref")
    out["nnxp_over_ref"] = {"target": f"<= {t['nnxp_over_ref_max']}", "value": v,
                            "met": None if v is None else v <= t["nnxp_over_ref_max"]}
    v = r.get("torch_sgd_over_nnxp_sgd")
    out["torch_over_nnxp"] = {"target": f">= {t['torch_over_nnxp_min']}", "value": v,
                              "met": None if v is None else v >= t["torch_over_nnxp_min"]}
    fr = {f"{'-'.join(map(str, c['sizes']))}/{c['batch']}": c["ratios"]["floor_fraction"]
          for c in result["cases"] if c["batch"] >= t["floor_min_batch"]
          and c["ratios"].get("floor_fraction") is not None}
    out["floor_fraction"] = {"target": f">= {t['floor_fraction_min']} for batch >= {t['floor_min_batch']}",
                             "values": fr,
                             "met": None if not fr else all(x >= t["floor_fraction_min"] for x in fr.values())}
    return out


# -- output ----------------------------------------------------------------------------------------------

_COLUMNS = (("nnxp-sgd", "nnxp-sgd"), ("nnxp-adam", "nnxp-adam"), ("numpy-ref", "numpy-ref"),
            ("torch-sgd", "torch-sgd"), ("torch-adam", "torch-adam"), ("torch-sgd-graph", "torch-sgd-graph"),
            ("torch-adam-graph", "torch-adam-graph"), ("gemm-floor", "gemm-floor"),
            ("torch-gemm-floor", "torch-gemm-floor"))


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    present = [(key, title) for key, title in _COLUMNS
               if any(_med(c, key) is not None for c in result["cases"])]
    gpu = result["settings"]["device"] != "cpu"
    ref_title = "cupy-ref" if gpu else "numpy-ref"
    head = ["sizes", "batch"] + [(ref_title if k == "numpy-ref" else t) + " ms" for k, t in present]
    tfloor = any(_med(c, "torch-gemm-floor") is not None for c in result["cases"])
    head += ["nnxp/ref", "torch/nnxp sgd", "torch/nnxp adam", "% of GEMM floor", "nnxp GFLOP/s"]
    head += ["torch floor/floor"] if tfloor else []
    if gpu:
        head += ["torch graph/nnxp sgd", "CuPy pool MB", "torch peak MB"]
    head += ["peak RSS MB"]
    rows = []
    for c in result["cases"]:
        r = c["ratios"]
        row = ["-".join(map(str, c["sizes"])), str(c["batch"])]
        row += [_fmt(_med(c, k), ".3f") for k, _ in present]
        row += [_fmt(r["nnxp_sgd_over_ref"], ".2f"), _fmt(r["torch_sgd_over_nnxp_sgd"], ".2f"),
                _fmt(r["torch_adam_over_nnxp_adam"], ".2f"),
                _fmt(None if r["floor_fraction"] is None else 100 * r["floor_fraction"], ".0f"),
                _fmt(c["nnxp_sgd_gflops"], ".1f")]
        row += [_fmt(r.get("torch_floor_over_floor"), ".2f")] if tfloor else []
        if gpu:
            row += [_fmt(r.get("torch_sgd_graph_over_nnxp_sgd"), ".2f"), _fmt(c.get("cupy_pool_peak_mb"), ".0f"),
                    _fmt(c.get("torch_cuda_peak_mb"), ".0f")]
        row += [_fmt(c.get("peak_rss_mb"), ".0f")]
        rows.append(row)
    return head, rows


def _iqr_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    names = list(dict.fromkeys(n for c in result["cases"] for n in c["contenders"]))
    head = ["sizes", "batch"] + names
    rows = []
    for c in result["cases"]:
        row = ["-".join(map(str, c["sizes"])), str(c["batch"])]
        for n in names:
            s = c["contenders"].get(n)
            row.append("-" if s is None else f"{100 * s['iqr_ms'] / s['median_ms']:.1f}% k={s['k']}")
        rows.append(row)
    return head, rows


def _plain(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(
        (c.ljust(w) if i == 0 else c.rjust(w)) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _markdown_table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _target_lines(result: dict[str, Any]) -> list[str]:
    t = result.get("targets") or check_targets(result)
    word = lambda met: "not measured" if met is None else ("MET" if met else "NOT met")
    lines = []
    s = "-".join(map(str, TARGETS["sizes"]))
    a = t["nnxp_over_ref"]
    lines.append(f"nnxp-sgd / numpy-ref at {s} batch {TARGETS['batch']}: {_fmt(a['value'], '.2f')} "
                 f"(target {a['target']}): {word(a['met'])}")
    a = t["torch_over_nnxp"]
    lines.append(f"torch-sgd / nnxp-sgd at {s} batch {TARGETS['batch']}: {_fmt(a['value'], '.2f')} "
                 f"(target {a['target']}): {word(a['met'])}")
    a = t["floor_fraction"]
    vals = ", ".join(f"{k} {100 * v:.0f}%" for k, v in a["values"].items())
    lines.append(f"GEMM floor / nnxp-sgd (target {a['target']}): {vals or '-'}: {word(a['met'])}")
    return lines


def format_table(result: dict[str, Any]) -> str:
    """The plain-text report of a step benchmark result."""
    s = result["settings"]
    parts = _describe_machine(result["machine"])
    parts.append(f"settings: device {s['device']}, {s['threads']} threads, {s['repeats']} samples per "
                 f"contender ({s['order']}), each >= {s['min_sample_ms']:g} ms of k steps, "
                 f"{s['batches_cycled']} batches cycled, float32; run took {result['seconds']:.0f} s")
    parts += ["", "median ms per step:", _plain(*_rows(result)), "",
              "spread (IQR as % of median, k = steps per sample):", _plain(*_iqr_rows(result)), ""]
    parts += ["targets:"] + ["  " + x for x in _target_lines(result)]
    parts += [f"note: {n}" for n in result.get("notes", [])]
    return "\n".join(parts)


def format_markdown(result: dict[str, Any]) -> str:
    """The README section for a step benchmark (or race) result."""
    if result.get("kind") == "race":
        return _race_markdown(result)
    s = result["settings"]
    out = ["### Step benchmark", ""]
    if result.get("command"):
        out += ["```", "nnxp bench " + " ".join(result["command"]), "```", ""]
    out += [f"- {line}" for line in _describe_machine(result["machine"])]
    out.append(f"- settings: device {s['device']}, {s['threads']} threads (NumPy BLAS and torch), "
               f"{s['repeats']} samples per contender, round-robin ({s['order']}), each sample >= "
               f"{s['min_sample_ms']:g} ms (k consecutive steps), warm-up first, GC off, "
               f"{s['batches_cycled']} batches cycled, float32, SGD lr {s['sgd_lr']}, Adam lr {s['adam_lr']}; "
               f"run took {result['seconds']:.0f} s")
    out += ["", "Median milliseconds per training step (ratios are time ratios):", "",
            _markdown_table(*_rows(result)), "",
            "Spread: inter-quartile range as % of the median (k = steps per sample):", "",
            _markdown_table(*_iqr_rows(result)), "", "Targets (at the time of this run):", ""]
    out += [f"- {x}" for x in _target_lines(result)]
    out += [f"- note: {n}" for n in result.get("notes", [])]
    return "\n".join(out) + "\n"


# -- the race ----------------------------------------------------------------------------------------------

RACE_SIZES = (784, 256, 10)
RACE_LR = 0.1
RACE_BATCH = 512
RACE_TARGETS = {"mnist": 0.96, "fashion-mnist": 0.85}


class _Reached(Exception):
    """Raised by the stopping callback to end ``fit`` at the target."""


class _StopAtTarget:
    """Records when each epoch ended (from the first epoch's start) and stops ``fit`` at the target."""

    def __init__(self, target: float):
        self.target = target
        self.start: float | None = None
        self.epochs: list[dict[str, float]] = []

    def on_epoch_end(self, net, optimizer, record, history) -> None:
        now = time.perf_counter()
        if self.start is None:
            self.start = now - record["seconds"]  # fit's own clock started the epoch there
        self.epochs.append({"epoch": int(record["epoch"]), "val_accuracy": record["val_accuracy"],
                            "loss": record["loss"], "elapsed_s": now - self.start})
        if record["val_accuracy"] >= self.target:
            raise _Reached()


def _race_nnxp(data, target: float, max_epochs: int, device: str, seed: int) -> dict[str, Any]:
    from .network import Network
    from .optim import SGD

    net = Network(list(RACE_SIZES), hidden="relu", output="softmax", seed=seed, device=device)
    # The data goes to the device before the clock starts (data loading is not raced).
    x, y = net.backend.asarray(data["x_train"], net.dtype), net.backend.asarray(data["y_train"], net.xp.int64)
    xv, yv = net.backend.asarray(data["x_test"], net.dtype), net.backend.asarray(data["y_test"], net.xp.int64)
    net.backend.synchronize()
    stop = _StopAtTarget(target)
    t0 = time.perf_counter()
    try:
        net.fit(x, y, epochs=max_epochs, batch_size=RACE_BATCH, optimizer=SGD(lr=RACE_LR),
                validation_data=(xv, yv), seed=seed, verbose=0, progress=False, callbacks=[stop])
    except _Reached:
        pass
    t_end = time.perf_counter()
    reached = bool(stop.epochs) and stop.epochs[-1]["val_accuracy"] >= target
    return {"contender": "nnxp", "reached": reached, "epochs": len(stop.epochs),
            "seconds": stop.epochs[-1]["elapsed_s"] if stop.epochs else None,
            "seconds_incl_fit_setup": t_end - t0, "final_val_accuracy": stop.epochs[-1]["val_accuracy"],
            "per_epoch": stop.epochs, "how": "Network.fit(validation_data=..., callbacks=[stop at target])"}


def _race_torch(data, target: float, max_epochs: int, device: str, seed: int, weights) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from torch import nn

    dev = torch.device("cuda" if device == "cuda" else device)
    model = nn.Sequential(nn.Linear(RACE_SIZES[0], RACE_SIZES[1]), nn.ReLU(),
                          nn.Linear(RACE_SIZES[1], RACE_SIZES[2])).to(dev)
    if weights is not None:
        with torch.no_grad():
            for lin, (w, b) in zip([model[0], model[2]], weights):
                lin.weight.copy_(torch.as_tensor(w))
                lin.bias.copy_(torch.as_tensor(b))
    x = torch.as_tensor(data["x_train"], device=dev)
    y = torch.as_tensor(data["y_train"].astype(np.int64), device=dev)
    xv = torch.as_tensor(data["x_test"], device=dev)
    yv = torch.as_tensor(data["y_test"].astype(np.int64), device=dev)
    opt = torch.optim.SGD(model.parameters(), lr=RACE_LR)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    n, nv = x.shape[0], xv.shape[0]
    steps = math.ceil(n / RACE_BATCH)
    epochs: list[dict[str, float]] = []
    sync()
    start = time.perf_counter()
    for epoch in range(max_epochs):
        # The same shuffles as nnxp.fit: default_rng([seed, epoch]), moved over once per epoch.
        order = torch.as_tensor(np.random.default_rng([seed, epoch]).permutation(n), device=dev)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        model.train()
        for step in range(steps):
            lo, hi = step * RACE_BATCH, min(n, (step + 1) * RACE_BATCH)
            index = order[lo:hi]
            xb, yb = x.index_select(0, index), y.index_select(0, index)
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * float(hi - lo)  # like fit: running sums stay on the device
            correct += (out.detach().argmax(1) == yb).sum()
        train_loss = loss_sum.item() / n
        model.eval()
        with torch.no_grad():
            vcorrect = torch.zeros((), dtype=torch.int64, device=dev)
            vloss = torch.zeros((), device=dev)
            for lo in range(0, nv, 4096):
                out = model(xv[lo:lo + 4096])
                vloss += F.cross_entropy(out, yv[lo:lo + 4096], reduction="sum")
                vcorrect += (out.argmax(1) == yv[lo:lo + 4096]).sum()
            acc = vcorrect.item() / nv
            _ = vloss.item() / nv
        epochs.append({"epoch": epoch + 1, "val_accuracy": acc, "loss": train_loss,
                       "train_accuracy": correct.item() / n, "elapsed_s": time.perf_counter() - start})
        if acc >= target:
            break
    reached = epochs[-1]["val_accuracy"] >= target
    return {"contender": "torch", "reached": reached, "epochs": len(epochs),
            "seconds": epochs[-1]["elapsed_s"], "final_val_accuracy": epochs[-1]["val_accuracy"],
            "per_epoch": epochs,
            "how": "eager loop: index_select batches, F.cross_entropy, backward, torch.optim.SGD; "
                   "eval under no_grad in 4096-row chunks"}


def _race_data(dataset: str, data_dir: Path | None, download: bool = False) -> tuple[str, dict[str, np.ndarray]]:
    from .data import image_inputs, load_dataset

    if dataset == "auto":
        try:
            ds = load_dataset("mnist", data_dir)
        except DataError:
            ds = load_dataset("fashion-mnist", data_dir, download=download)
    else:
        ds = load_dataset(dataset, data_dir, download=download)
    return ds.name, {"x_train": image_inputs(ds.train_images), "y_train": ds.train_labels.astype(np.int64),
                     "x_test": image_inputs(ds.test_images), "y_test": ds.test_labels.astype(np.int64)}


def run_race(*, dataset: str = "auto", data_dir: Path | None = None, download: bool = False,
             target: float | None = None,
             max_epochs: int = 50, device: str = "cpu", repeats: int = 2, seed: int = 0,
             threads: int | None = None, torch_init: str = "same", max_foreign: float = 0.25,
             max_wait_s: float = 600.0, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The end-to-end race; runs alternate nnxp, torch, torch, nnxp, ... (ABBA) ``repeats`` times each.

    A run during which other processes used more than ``max_foreign`` cores is
    run again once the machine is quiet (while the ``max_wait_s`` budget lasts).
    """
    monitor, budget = CpuMonitor(), _Budget(max_wait_s)
    name, data = _race_data(dataset, data_dir, download)
    if target is None:
        target = RACE_TARGETS.get(name, RACE_TARGETS["mnist"])
    why_no_torch = _torch_usable(device)
    weights = None
    if torch_init == "same":
        weights = _initial_weights(RACE_SIZES) if seed == 0 else None
        if seed != 0:
            from .network import Network

            weights = Network(list(RACE_SIZES), seed=seed, device="cpu").get_weights()
    runs: list[dict[str, Any]] = []
    with _Threads(threads) as th:
        machine = machine_info(device)
        for r in range(repeats):
            order = ["nnxp", "torch"] if r % 2 == 0 else ["torch", "nnxp"]
            for who in order:
                if who == "torch" and why_no_torch:
                    continue
                _log(f"race run {r + 1}/{repeats}: {who} ...")
                retaken = 0
                while True:
                    gc.collect()
                    waited, _ = monitor.wait_idle(max_foreign, budget.left)
                    budget.spend(waited)
                    a = monitor.snapshot()
                    if who == "nnxp":
                        res = _race_nnxp(data, target, max_epochs, device, seed)
                    else:
                        res = _race_torch(data, target, max_epochs, device, seed, weights)
                    load = monitor.foreign_cores(a, monitor.snapshot())
                    if load is not None and load > max_foreign and budget.left > 0:
                        retaken += 1
                        _log(f"  other processes used {load:.2f} cores: running it again when quiet")
                        continue
                    break
                res.update(run=r + 1, foreign_cores=load, retaken=retaken,
                           contaminated=load is not None and load > max_foreign)
                _log(f"  {who}: {res['epochs']} epochs, {res['seconds']:.2f} s, "
                     f"test accuracy {100 * res['final_val_accuracy']:.2f}%"
                     + ("" if res["reached"] else " (target not reached)"))
                runs.append(res)
    summary: dict[str, Any] = {}
    for who in ("nnxp", "torch"):
        mine = [x for x in runs if x["contender"] == who]
        if mine:
            summary[who] = {"median_seconds": float(np.median([x["seconds"] for x in mine])),
                            "epochs": [x["epochs"] for x in mine],
                            "reached": all(x["reached"] for x in mine)}
    if "nnxp" in summary and "torch" in summary:
        summary["torch_over_nnxp"] = summary["torch"]["median_seconds"] / summary["nnxp"]["median_seconds"]
    notes = [f"torch skipped: {why_no_torch}"] if why_no_torch else []
    return {"schema": SCHEMA, "kind": "race", "command": list(argv) if argv is not None else None,
            "machine": machine,
            "settings": {"dataset": name, "target": target, "max_epochs": max_epochs, "device": device,
                         "sizes": list(RACE_SIZES), "lr": RACE_LR, "batch": RACE_BATCH, "seed": seed,
                         "threads": th.count, "repeats": repeats,
                         "torch_init": f"nnxp's initial weights (He, seed {seed})" if weights is not None
                         else "PyTorch's default init"},
            "runs": runs, "summary": summary, "notes": notes}


def format_race(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = _describe_machine(result["machine"])
    lines.append(f"race: {s['dataset']} to {100 * s['target']:.0f}% test accuracy, "
                 f"{'-'.join(map(str, s['sizes']))} ReLU/softmax CE, SGD lr {s['lr']}, batch {s['batch']}, "
                 f"max {s['max_epochs']} epochs, {s['device']}, {s['threads']} threads; torch init: {s['torch_init']}")
    for r in result["runs"]:
        lines.append(f"  run {r['run']} {r['contender']:5}: {r['epochs']:2d} epochs  {r['seconds']:7.2f} s  "
                     f"test acc {100 * r['final_val_accuracy']:.2f}%" + ("" if r["reached"] else "  NOT REACHED"))
    sm = result["summary"]
    for who in ("nnxp", "torch"):
        if who in sm:
            lines.append(f"{who}: median {sm[who]['median_seconds']:.2f} s to target, epochs {sm[who]['epochs']}")
    if "torch_over_nnxp" in sm:
        lines.append(f"torch time / nnxp time: {sm['torch_over_nnxp']:.2f}")
    lines += [f"note: {n}" for n in result.get("notes", [])]
    return "\n".join(lines)


def _race_markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    out = ["### Race to a test accuracy", ""]
    if result.get("command"):
        out += ["```", "nnxp bench " + " ".join(result["command"]), "```", ""]
    out += [f"- {line}" for line in _describe_machine(result["machine"])]
    out += [(f"- {s['dataset']}, target {100 * s['target']:.0f}% test accuracy, "
             f"{'-'.join(map(str, s['sizes']))} ReLU, softmax cross-entropy, SGD lr {s['lr']}, batch {s['batch']}, "
             f"max {s['max_epochs']} epochs, device {s['device']}, {s['threads']} threads; runs in ABBA order; "
             f"wall time from the first epoch's start to the end of the epoch that reached the target "
             f"(training + evaluation, data already in memory / on the device); torch init: {s['torch_init']}"),
            "", "| run | contender | epochs | seconds to target | test accuracy |", "|---:|---|---:|---:|---:|"]
    for r in result["runs"]:
        out.append(f"| {r['run']} | {r['contender']} | {r['epochs']} | {r['seconds']:.2f} | "
                   f"{100 * r['final_val_accuracy']:.2f}%{'' if r['reached'] else ' (not reached)'} |")
    sm = result["summary"]
    out.append("")
    for who in ("nnxp", "torch"):
        if who in sm:
            out.append(f"- {who}: median {sm[who]['median_seconds']:.2f} s, epochs {sm[who]['epochs']}")
    if "torch_over_nnxp" in sm:
        out.append(f"- torch time / nnxp time: **{sm['torch_over_nnxp']:.2f}**")
    out += [f"- note: {n}" for n in result.get("notes", [])]
    return "\n".join(out) + "\n"


# -- the command -----------------------------------------------------------------------------------------

def _sizes_list(text: str) -> list[list[int]]:
    """``"784-256-10,784-1024-1024-10"`` -> [[784, 256, 10], [784, 1024, 1024, 10]]."""
    out = []
    for part in text.split(","):
        try:
            sizes = [int(s) for s in part.strip().split("-")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not a dash-separated list of layer widths, e.g. 784-256-10") from None
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise argparse.ArgumentTypeError(f"{part!r}: give 2 or more positive widths, e.g. 784-256-10")
        out.append(sizes)
    return out


def _int_list(text: str) -> list[int]:
    try:
        values = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of whole numbers, e.g. 64,128") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: values must be at least 1")
    return values


def _names(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    names = ["numpy-ref" if n == "cupy-ref" else n for n in names]
    bad = [n for n in names if n not in CONTENDERS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown contender(s) {', '.join(bad) or text!r}: "
                                         f"choose from {', '.join(CONTENDERS)}")
    return names


def add_command(commands: Any) -> None:
    """Add the ``bench`` subcommand to the ``nnxp`` parser."""
    p = commands.add_parser(
        "bench", help="time a training step against NumPy, PyTorch and the GEMM floor; or race to an accuracy",
        description="Time ONE training step (forward, loss gradient, backward, update; float32) of nnxp "
                    "(SGD, Adam) side by side with a hand-written NumPy step, PyTorch eager and the GEMM "
                    "floor, interleaved, median of many samples. With --race: train 784-256-10 to a test "
                    "accuracy with nnxp and with PyTorch and compare wall times.")
    p.add_argument("--device", default="cpu", metavar="{cpu,cuda,cuda:N}",
                   help="cpu: NumPy vs torch CPU; cuda: nnxp on CuPy vs torch CUDA (default: cpu)")
    p.add_argument("--sizes", type=_sizes_list, metavar="A-B-C[,...]",
                   help="layer sizes to time (default: 784-128-10,784-256-10,784-800-10,784-1024-1024-10)")
    p.add_argument("--batches", type=_int_list, metavar="N[,N...]",
                   help="batch sizes (default: 64,128,1024; plus 4096 on a GPU)")
    p.add_argument("--contenders", type=_names, default=list(CONTENDERS), metavar="NAME[,...]",
                   help=f"which to time (default: all of {', '.join(CONTENDERS)}; graphs only on a GPU)")
    p.add_argument("--repeats", type=positive_int, default=None,
                   help="samples per contender (default: 31; 5 with --quick)")
    p.add_argument("--min-sample-ms", type=positive_float, default=None,
                   help="each sample times enough consecutive steps to last this long (default: 25; 3 with --quick)")
    p.add_argument("--warmup-ms", type=positive_float, default=None,
                   help="warm-up per contender before sampling (default: 200; 10 with --quick)")
    p.add_argument("--settle-ms", type=nonnegative_float, default=None,
                   help="untimed steps before a sample whenever the thread pool changes (NumPy <-> torch), "
                        "so the other library's idle threads have stopped spinning (default: 150; 20 with --quick)")
    p.add_argument("--order", choices=["interleaved", "blocked"], default="interleaved",
                   help="interleaved: round-robin within each repeat (the honest default); blocked: each "
                        "contender's samples together (to diagnose interference between contenders)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="threads for NumPy's BLAS and torch (default: the BLAS's current count)")
    p.add_argument("--max-foreign-load", type=nonnegative_float, default=0.25, metavar="CORES",
                   help="a round (race: a run) during which other processes used more than this many "
                        "cores is retaken once the machine is quiet; 'inf' never retakes (default: 0.25)")
    p.add_argument("--max-wait", type=nonnegative_float, default=600.0, metavar="SECONDS",
                   help="the most the whole run waits for other processes to go quiet (default: 600)")
    p.add_argument("--quick", action="store_true",
                   help="short smoke run: 784-128-10 at batch 64 (unless --sizes/--batches), few samples")
    p.add_argument("--json", type=Path, metavar="PATH", help="write raw samples, summary and machine info (atomically)")
    p.add_argument("--markdown", action="store_true",
                   help="print the README section (markdown) instead of the plain table")
    p.add_argument("--readme", type=Path, metavar="PATH",
                   help="also replace the step (or race) section of this markdown file, between the lines "
                        "<!-- nnxp-bench:step --> and <!-- /nnxp-bench:step --> (race: nnxp-bench:race)")
    p.add_argument("--from-json", type=Path, metavar="PATH",
                   help="do not run anything: print the report of a result file written by --json")
    race = p.add_argument_group("race (--race)")
    race.add_argument("--race", action="store_true", help="run the end-to-end race instead of the step benchmark")
    race.add_argument("--dataset", default="auto", choices=["auto", "mnist", "fashion-mnist", "bundled"],
                      help="auto: mnist if found, else fashion-mnist (default: auto)")
    race.add_argument("--data-dir", type=Path, metavar="DIR", help="directory holding the four IDX files")
    race.add_argument("--download", action="store_true",
                      help="download the dataset if it is not found (SHA-256 verified)")
    race.add_argument("--target", type=positive_float, default=None,
                      help="test accuracy to reach, as a fraction (default: 0.96 mnist, 0.85 fashion-mnist)")
    race.add_argument("--max-epochs", type=positive_int, default=50, help="(default: 50)")
    race.add_argument("--race-repeats", type=positive_int, default=2,
                      help="runs per contender, in ABBA order (default: 2)")
    race.add_argument("--torch-init", choices=["same", "default"], default="same",
                      help="same: torch starts from nnxp's initial weights; default: torch's own init")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.from_json is not None:
        try:
            result = json.loads(args.from_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {args.from_json}: {exc}") from None
        if result.get("schema") != SCHEMA:
            raise DataError(f"{args.from_json} is not an nnxp bench result ({SCHEMA})")
        if args.readme is not None:
            update_readme(args.readme, result)
        print(format_markdown(result) if args.markdown else
              (format_race(result) if result.get("kind") == "race" else format_table(result)))
        return 0

    device = _check_device(args.device)
    if args.json is not None:
        check_writable(args.json)
    if args.readme is not None:
        _readme_parts(args.readme, "race" if args.race else "step")  # fail now, not after the run
    argv = args.argv[args.argv.index("bench") + 1:]
    if args.race:
        result = run_race(dataset=args.dataset, data_dir=args.data_dir, download=args.download,
                          target=args.target,
                          max_epochs=args.max_epochs, device=device, repeats=args.race_repeats,
                          threads=args.threads, torch_init=args.torch_init,
                          max_foreign=args.max_foreign_load, max_wait_s=args.max_wait, argv=argv)
        text = _race_markdown(result) if args.markdown else format_race(result)
    else:
        gpu = device != "cpu"
        sizes = args.sizes or ([[784, 128, 10]] if args.quick else [list(s) for s in DEFAULT_SIZES])
        batches = args.batches or ([64] if args.quick else list(GPU_BATCHES if gpu else CPU_BATCHES))
        repeats = args.repeats or (5 if args.quick else 31)
        min_ms = args.min_sample_ms or (3.0 if args.quick else 25.0)
        warm_ms = args.warmup_ms or (10.0 if args.quick else 200.0)
        settle_ms = args.settle_ms if args.settle_ms is not None else (20.0 if args.quick else 150.0)
        result = run_step_bench(sizes, batches, device=device, names=args.contenders, repeats=repeats,
                                min_sample_s=min_ms / 1e3, warmup_s=warm_ms / 1e3, order=args.order,
                                threads=args.threads, max_foreign=args.max_foreign_load,
                                max_wait_s=args.max_wait, settle_s=settle_ms / 1e3, argv=argv)
        text = format_markdown(result) if args.markdown else format_table(result)
    if args.json is not None:
        _write_json(args.json, result)
    if args.readme is not None:
        update_readme(args.readme, result)
    print(text)
    if args.json is not None:
        _log(f"wrote {args.json}")
    return 0


def _check_device(spec: str) -> str:
    """'cpu' or 'cuda[:N]', failing with one clear line when the GPU is not there."""
    from .backend import get_backend

    text = spec.strip().lower()
    if text == "auto":
        from .backend import cuda_available

        text = "cuda" if cuda_available() else "cpu"
    if text != "cpu" and not (text == "cuda" or text.startswith("cuda:")):
        raise ConfigError(f"unknown device {spec!r} for nnxp bench: use cpu, cuda or cuda:N")
    backend = get_backend(text)  # raises BackendError("device 'cuda' is not available: ...")
    if backend.name == "cupy" and text.startswith("cuda:"):
        backend.device.use()  # CuPy's and torch's "current device" is then this one
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.set_device(backend.device.id)
        except ImportError:
            pass
    return text


def _readme_parts(path: Path, kind: str) -> tuple[str, str, str]:
    """(text before the section, the section, text after) of a markdown file with the markers."""
    start, end = f"<!-- nnxp-bench:{kind} -->", f"<!-- /nnxp-bench:{kind} -->"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    import re

    m1 = re.search(rf"^{re.escape(start)}[ \t]*$", text, re.MULTILINE)  # whole lines only, never quoted in prose
    m2 = re.search(rf"^{re.escape(end)}[ \t]*$", text, re.MULTILINE)
    if m1 is None or m2 is None or m2.start() < m1.end():
        raise DataError(f"{path} has no lines {start} ... {end} to put the {kind} results between: add them")
    i, j = m1.start(), m2.start()
    if not os.access(path, os.W_OK):
        raise DataError(f"cannot write {path}: permission denied")
    return text[:i + len(start)], text[i + len(start):j], text[j:]


def update_readme(path: Path, result: dict[str, Any]) -> None:
    """Replace the step or race section of ``path`` (between its markers) with this result's markdown."""
    from .data._atomic import atomic_open

    kind = "race" if result.get("kind") == "race" else "step"
    before, _, after = _readme_parts(path, kind)
    try:
        with atomic_open(path, "w") as f:
            f.write(before + "\n" + format_markdown(result) + after)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None
    _log(f"updated the {kind} section of {path}")


def _write_json(path: Path, result: dict[str, Any]) -> None:
    from .data._atomic import atomic_open

    try:
        with atomic_open(path, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``nnxp bench ARGS`` (what ``scripts/bench.py`` runs)."""
    from .cli import main as nnxp_main

    return nnxp_main(["bench", *(sys.argv[1:] if argv is None else argv)])


def race_main(argv: Sequence[str] | None = None) -> int:
    """``nnxp bench --race ARGS`` (what ``scripts/race.py`` runs)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return main(["--race", *[a for a in argv if a != "--race"]])
