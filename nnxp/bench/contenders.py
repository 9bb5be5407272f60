"""The contenders of the step benchmark: ways of doing one training step, each timed alike.

:class:`ReferenceMLP` is the step written by hand with plain ``@`` (the thing
nnxp is measured against): on purpose a separate copy of the maths, not nnxp's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .report import log

__all__ = ["ADAM_LR", "CONTENDERS", "N_BATCHES", "SGD_LR", "Contender", "GemmFloor", "NnxpStep",
           "ReferenceMLP", "ReferenceStep", "TorchGemmFloor", "TorchStep", "build_contenders",
           "initial_weights", "torch_usable"]

SGD_LR = 0.01
ADAM_LR = 0.001
N_BATCHES = 4  # pre-made batches, cycled by every contender


CONTENDERS = ("nnxp-sgd", "nnxp-adam", "nnxp-sgd-graph", "nnxp-adam-graph", "numpy-ref", "torch-sgd", "torch-adam",
              "torch-sgd-graph", "torch-adam-graph", "gemm-floor", "torch-gemm-floor")


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


class Contender:
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


class NnxpStep(Contender):
    """``Network.train_step`` on the fast ops, data already on the device; with ``graph`` (CuPy),
    the step ``fit`` runs: ``train_batch`` on index batches into epoch totals, a CUDA-graph replay."""

    def __init__(self, name: str, sizes: Sequence[int], weights, batches, optimizer: str,
                 device: Any = "cpu", dtype: str = "float32", blas: str | None = None, graph: bool = False):
        super().__init__()
        from ..network import Network
        from ..kernels import ops_for
        from ..optim import SGD, Adam

        self.name = name
        self.net = Network(list(sizes), hidden="relu", output="softmax", loss="cross_entropy",
                           dtype=dtype, device=device, seed=0)
        self.net.set_weights(weights)
        self._initial = [self.net.backend.asarray(p, p.dtype, copy=True) for p in self.net.parameters()]
        self.batches = [(self.net.inputs(x), self.net.targets(labels, len(labels))) for x, labels in batches]
        self.optimizer = SGD(lr=SGD_LR) if optimizer == "sgd" else Adam(lr=ADAM_LR)
        self.ops_note = ""
        try:
            self.ops = ops_for(self.net.backend, blas=blas)
        except ImportError as exc:  # a fast path that is not importable: say so, use the generic one
            self.ops = ops_for(self.net.backend, fast=False)
            self.ops_note = f"fast path unavailable ({exc}); generic ops used"
        self.graph = graph
        if graph:  # fit's shape of a step: rows of fixed arrays picked by an index batch
            from ..kernels import EpochTotals

            backend = self.net.backend
            host_x = np.concatenate([x for x, _ in batches])
            host_y = np.concatenate([labels for _, labels in batches])
            self.all_x, self.all_y = self.net.inputs(host_x), self.net.targets(host_y, len(host_y))
            rows = len(batches[0][1])
            self.indices = [backend.asarray(np.arange(i * rows, (i + 1) * rows), backend.index_dtype)
                            for i in range(len(batches))]
            self.totals = EpochTotals.zeros(backend, self.net.dtype)

    def step(self) -> None:
        i = self._i
        self._i = (self._i + 1) % len(self.batches)
        if self.graph:
            self.ops.train_batch(self.net, self.all_x, self.all_y, self.indices[i], self.optimizer,
                                 totals=self.totals)
            return
        x, y = self.batches[i]
        self.net.train_step(x, y, self.optimizer, self.ops)

    def reset(self) -> None:
        self._i = 0
        for p, p0 in zip(self.net.parameters(), self._initial):
            p[...] = p0

    def sync(self) -> None:
        self.net.backend.synchronize()

    def info(self) -> dict[str, Any]:
        out = {"ops": type(self.ops).__name__, "optimizer": repr(self.optimizer)}
        if self.graph:
            graphed = getattr(self.ops, "_graph", None)
            out["cuda_graph"] = graphed is not None and graphed.graph is not None
            if graphed is not None and graphed.failed:
                out["note"] = f"CUDA graphs off: {graphed.failed}"
        provider = getattr(self.ops, "provider", None)
        if provider is not None:
            out["blas"] = provider.describe()
        if self.ops_note:
            out["note"] = self.ops_note
        return out


class ReferenceStep(Contender):
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


class TorchStep(Contender):
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


class GemmFloor(Contender):
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


class TorchGemmFloor(Contender):
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


#: PyTorch's own install line for its CPU build (pytorch.org, "Get Started": pip, CPU).
TORCH_CPU_INSTALL = "pip install torch --index-url https://download.pytorch.org/whl/cpu"


def torch_usable(device: str) -> str:
    """'' when PyTorch can run on ``device``, else why not (with the install line when it is missing)."""
    try:
        import torch
    except ImportError:
        return f"PyTorch is not installed; its CPU build: {TORCH_CPU_INSTALL}"
    if device != "cpu" and not torch.cuda.is_available():
        return "PyTorch has no CUDA here"
    return ""


def _make_batches(sizes: Sequence[int], batch: int, seed: int = 0):
    """N_BATCHES (x, labels) pairs on the host: pixel-like inputs in [0, 1), random labels."""
    rng = np.random.default_rng([seed, batch, *sizes])
    return [(rng.uniform(0.0, 1.0, (batch, sizes[0])).astype(np.float32),
             rng.integers(0, sizes[-1], batch)) for _ in range(N_BATCHES)]


def initial_weights(sizes: Sequence[int]):
    """nnxp's own initial network (He init, seed 0) as host float32 (W, b) pairs, shared by all."""
    from ..network import Network

    net = Network(list(sizes), hidden="relu", output="softmax", device="cpu", seed=0, dtype="float32")
    return net.get_weights()


def build_contenders(sizes: Sequence[int], batch: int, names: Sequence[str], device: str,
                     notes: list[str], blas: str | None = None) -> list[Contender]:
    weights = initial_weights(sizes)
    batches = _make_batches(sizes, batch)
    gpu = device != "cpu"
    xp: Any = np
    if gpu:
        import cupy as xp
    torch_device = "cuda" if device == "cuda" else device
    why_no_torch = torch_usable(device)
    out: list[Contender] = []
    for name in names:
        if name in ("nnxp-sgd", "nnxp-adam"):
            out.append(NnxpStep(name, sizes, weights, batches, name.split("-")[1], device=device, blas=blas))
        elif name in ("nnxp-sgd-graph", "nnxp-adam-graph"):
            if gpu:  # CUDA graphs exist only on a GPU
                out.append(NnxpStep(name, sizes, weights, batches, name.split("-")[1], device=device, graph=True))
        elif name == "numpy-ref":
            out.append(ReferenceStep("cupy-ref" if gpu else "numpy-ref", weights, batches, xp, sizes[-1]))
        elif name == "gemm-floor":
            out.append(GemmFloor(sizes, batches, xp))
        elif name == "torch-gemm-floor":
            if why_no_torch:
                note(notes, f"PyTorch not timed: {why_no_torch}")  # one note for all its contenders
                continue
            out.append(TorchGemmFloor(sizes, batches, torch_device))
        elif name.startswith("torch-"):
            graph = name.endswith("-graph")
            if why_no_torch:
                note(notes, f"PyTorch not timed: {why_no_torch}")
                continue
            if graph and not gpu:
                continue  # CUDA graphs exist only on a GPU
            try:
                out.append(TorchStep(name, sizes, weights, batches, name.split("-")[1],
                                     device=torch_device, graph=graph))
            except Exception as exc:
                if not graph:
                    raise
                note(notes, f"{name} skipped: CUDA graph capture failed ({type(exc).__name__}: {exc})")
    # Each thread pool's contenders together: the round-robin then changes pool twice a round.
    return sorted(out, key=lambda c: c.pool != "numpy")


def note(notes: list[str], text: str) -> None:
    if text not in notes:
        notes.append(text)
        log(f"note: {text}")
