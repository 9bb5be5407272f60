"""CuPy fast path: cuBLAS products into reused buffers and fused elementwise kernels.

The generic Array-API step launches one kernel per operator: ``z = x @ W.T``,
``z + b``, the activation, and three to eight more per parameter update.  Here:

- hidden layer forward: one GEMM (``cupy.matmul(..., out=)``) and one kernel
  ``a = f(z + b)`` computed in place;
- hidden layer backward: one GEMM for dC/da and one kernel ``g *= f'(a)``;
- optimizer: one kernel per parameter updating p (and its momentum or
  moments) in a single pass.

The kernels are the same maths as :mod:`nnxp.activations` and
:mod:`nnxp.optim`, written as CUDA C expressions and registered by the
formula's exact class (a subclass runs the reference); ``tests/test_kernels.py``
checks that this path and the reference give the same numbers,
``tests/test_cupy_kernels.py`` compiles every kernel with CuPy's code
generator and NVRTC for sm_90 and sm_80 (no GPU needed), so a typo cannot
wait for a GPU to show up, and ``tests/test_cupy_emulation.py`` runs this
class on a CPU EMULATION of CuPy (tests/support/cupy_emulation, test support).

The whole step of ``fit`` is fused further (:mod:`nnxp.kernels.cupy_fused`)
and captured as a CUDA graph (:mod:`nnxp.kernels.cupy_graph`).  All of it is
the default on CuPy (``NNXP_CUPY_FUSED=0`` runs the reference instead) and
none of it has run on a GPU yet (none was available); ``scripts/gpu_check.sh``
runs its tests and benchmarks on one.
"""

from __future__ import annotations

import os
from typing import Any, Hashable

from ..activations import Activation, Identity
from ..optim import SGD, Adam, AdamW
from .buffers import BufferedOps
from .cupy_kernels import _BACKWARD_OF, _FORWARD_OF
from .cupy_kernels import kernel as _kernel

__all__ = ["CuPyOps", "fused_enabled"]


def fused_enabled() -> bool:
    """The fused CuPy path is the default; ``NNXP_CUPY_FUSED=0`` runs the reference on CuPy."""
    return os.environ.get("NNXP_CUPY_FUSED", "1") != "0"


class CuPyOps(BufferedOps):
    """CuPy: GEMMs into reused buffers, fused bias+activation and update kernels."""

    name = "cupy"

    def __init__(self, cupy: Any = None, graphs: bool = True) -> None:
        """``cupy``: the module running the kernels (CuPy; its CPU EMULATION in tests);
        ``graphs``: replay fit's fused step as a CUDA graph where it can."""
        if cupy is None:
            import cupy

        super().__init__()
        self._cp = cupy
        self._fused: Any = None  # the fused step's flat buffers, built on its first call
        self._scratch: Any = None
        self._graph: Any = None  # its CUDA-graph replays (nnxp.kernels.cupy_graph)
        self.graphs = graphs

    def _empty(self, shape, dtype):
        return self._cp.empty(shape, dtype=dtype)

    def _gemm(self, a: Any, b: Any, key: Hashable) -> Any:
        out = self.buffer(key, (a.shape[0], b.shape[1]), a.dtype)
        return self._cp.matmul(a, b, out=out)

    def linear(self, x, w, b, key):
        z = self._gemm(x, w.T, key)
        z += b
        return z

    def linear_activate(self, x, w, b, act, key):
        kind = _FORWARD_OF.get(type(act))
        if kind is None:
            return super().linear_activate(x, w, b, act, key)
        z = self._gemm(x, w.T, key)
        args = (b, act.alpha) if kind == "leaky_relu" else (b,)
        _kernel(self._cp, f"nnxp_forward_{kind}")(*args, z)
        return z

    def activation_backward(self, act: Activation, a, g):
        if type(act) is Identity:
            return g
        kind = _BACKWARD_OF.get(type(act))
        if kind is None:
            return act.backward(a, g)
        args = (a, act.alpha, 1.0 - act.alpha) if kind == "leaky_relu" else (a,)
        _kernel(self._cp, f"nnxp_backward_{kind}")(*args, g)
        return g

    def weight_grad(self, delta, a_prev, key):
        return self._gemm(delta.T, a_prev, key)

    def bias_grad(self, delta, key):
        out = self.buffer(key, (delta.shape[1],), delta.dtype)
        return self._cp.sum(delta, axis=0, out=out)

    def input_grad(self, delta, w, key):
        return self._gemm(delta, w, key)

    def take_rows(self, x, index, key):
        out = self.buffer(key, (index.shape[0],) + tuple(x.shape[1:]), x.dtype)
        return self._cp.take(x, index, axis=0, out=out)

    def optimizer_step(self, optimizer, params, grads):
        """A fused kernel per parameter for exactly SGD, Adam and AdamW; others run their own rule."""
        kind = type(optimizer)
        if kind not in (SGD, Adam, AdamW):
            return optimizer.step(params, grads)
        optimizer.begin_step(params, grads)
        for i, (p, g) in enumerate(zip(params, grads)):
            state = optimizer.slot(i)
            if kind is SGD and not optimizer.momentum:
                _kernel(self._cp, "nnxp_update_sgd")(g, optimizer.lr, optimizer.weight_decay, p)
            elif kind is SGD:
                _kernel(self._cp, "nnxp_update_momentum")(g, optimizer.lr, optimizer.weight_decay, optimizer.momentum,
                                                optimizer.nesterov, p, state["velocity"])
            else:
                wd = 0.0 if optimizer.decoupled else optimizer.weight_decay
                _kernel(self._cp, "nnxp_update_adam")(
                    g, optimizer.step_size, optimizer.beta1, 1.0 - optimizer.beta1, optimizer.beta2,
                    1.0 - optimizer.beta2, optimizer.eps_hat, optimizer.inv_sqrt_bc2, wd, optimizer.decay_factor,
                    p, state["m"], state["v"])
        return list(params)

    # -- the whole step, fused -------------------------------------------------------
    def train_step(self, net, x, y, optimizer, *, rng=None, reduce=None, totals=None):
        """The fused step (:mod:`nnxp.kernels.cupy_fused`) where it runs the reference's formulas
        exactly; otherwise the per-operation path.  The fused step returns None for the cost:
        the batch's loss and hits went into ``totals`` on the device."""
        from .cupy_fused import FusedStep, fuses

        if not fuses(net, optimizer, reduce, x):
            return super().train_step(net, x, y, optimizer, rng=rng, reduce=reduce, totals=totals)
        if self._fused is None or not self._fused.belongs_to(net, optimizer):
            self._fused, self._graph = FusedStep(self, net, optimizer), None
        return None, self._fused.step(net, x, y, optimizer, totals)

    def train_batch(self, net, x, y, index, optimizer, *, rng=None, reduce=None, totals=None):
        """With CUDA graphs (the default; ``NNXP_CUDA_GRAPHS=0`` turns them off) a fused step is a
        graph replay (:mod:`nnxp.kernels.cupy_graph`); otherwise as the reference."""
        from .cupy_fused import FusedStep, fuses
        from .cupy_graph import GraphedStep, graphs_enabled

        if totals is None or not (self.graphs and graphs_enabled()) or not fuses(net, optimizer, reduce, x):
            return super().train_batch(net, x, y, index, optimizer, rng=rng, reduce=reduce, totals=totals)
        if self._fused is None or not self._fused.belongs_to(net, optimizer):
            self._fused, self._graph = FusedStep(self, net, optimizer), None
        if self._graph is None:
            self._graph = GraphedStep(self._fused)
        return None, self._graph.run(net, x, y, index, optimizer, totals)

    def scratch_totals(self, dtype: Any) -> Any:
        """Totals for a fused step whose caller keeps none (summed, never read)."""
        from .reference import EpochTotals

        if self._scratch is None or self._scratch.loss.dtype != dtype:
            self._scratch = EpochTotals(self._cp.zeros((), dtype=dtype), self._cp.zeros((), dtype=self._cp.int64))
        return self._scratch
