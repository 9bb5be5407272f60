"""The fused CuPy step captured as a CUDA graph: an epoch becomes a loop of graph launches.

What capture needs, and how it is met (cupy issues 6290 and 9655):

- ``cupy.matmul`` cannot be captured: products go through the raw cuBLAS
  binding (:func:`gemm`, on the current stream, which is the capture stream);
- memory the pool hands out during capture may be reused while the graph
  still writes there: every array the graph touches exists before capture
  (the fused step's buffers, the batch gathered into fixed buffers through a
  fixed index buffer);
- a host scalar passed to a kernel is baked into the graph: the per-step
  ones (learning rate, Adam's bias corrections, ...) live in a small device
  array, written before each replay, and the update kernel reads them from
  there (``T`` parameters bound to 1-element arrays, broadcast);
- the short last batch runs eagerly (other shapes).

Per step: one host-to-device copy of the step's scalars, one copy of the
step's indices into the index buffer, one graph launch.  The graph is
captured once per epoch (the epoch's totals are new arrays) after an eager
warm-up step.  Without a GPU this is run on the CPU EMULATION, which records
captured launches and replays them (tests/test_cupy_emulation.py); the real
capture has not been run.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np  # host-side only: the step's scalars and cuBLAS's alpha and beta

__all__ = ["GraphedStep", "gemm", "graphs_enabled"]

_OP_N, _OP_T = 0, 1  # cublasOperation_t


def graphs_enabled() -> bool:
    """CUDA graphs are on by default for the fused step; ``NNXP_CUDA_GRAPHS=0`` turns them off."""
    return os.environ.get("NNXP_CUDA_GRAPHS", "1") != "0"


def _pointer(x: Any) -> int:
    data = x.data
    return data.ptr if hasattr(data, "ptr") else x.ctypes.data  # CuPy memory; the EMULATION's host memory


def _cublas(cp: Any) -> Any:
    """CuPy's raw cuBLAS binding (the EMULATION has its own as ``cp.cuda.cublas``)."""
    binding = getattr(cp.cuda, "cublas", None)
    if binding is None:
        from cupy_backends.cuda.libs import cublas as binding
    return binding


def gemm(cp: Any, a: Any, b: Any, out: Any) -> Any:
    """``out = a @ b`` (2-D, out C-contiguous) through the raw cuBLAS binding, on the current stream.

    Row-major C (m, n) is column-major C^T, so cuBLAS computes C^T = B^T A^T.  A
    C-contiguous operand is its own transpose in column-major (op N, leading
    dimension its row length); a transposed view of one (``W.T``) is passed with
    op T.  Nothing is copied or allocated.
    """
    m, k = int(a.shape[0]), int(a.shape[1])
    n = int(b.shape[1])

    def operand(x):
        if x.flags.c_contiguous:
            return _OP_N, int(x.shape[1])
        if x.flags.f_contiguous:
            return _OP_T, int(x.shape[0])
        raise ValueError("gemm operands must be contiguous or a transposed contiguous array")

    op_a, lda = operand(a)
    op_b, ldb = operand(b)
    dtype = np.dtype(str(out.dtype))
    one, zero = np.ones((), dtype), np.zeros((), dtype)
    cublas = _cublas(cp)
    routine = cublas.sgemm if dtype == np.float32 else cublas.dgemm
    routine(cp.cuda.device.get_cublas_handle(), op_b, op_a, n, m, k, one.ctypes.data, _pointer(b), ldb,
            _pointer(a), lda, zero.ctypes.data, _pointer(out), n)
    return out


class GraphedStep:
    """Replays of one captured fused step for full batches; eager steps for the rest."""

    def __init__(self, fused: Any) -> None:
        self.fused = fused
        self.graph = None
        self.key: tuple | None = None
        cp = fused.cp
        self.scalars = cp.zeros((fused.scalar_count,), dtype=fused.flat_p.dtype)
        self.index = None

    def run(self, net: Any, x: Any, y: Any, index: Any, optimizer: Any, totals: Any) -> Any:
        """One step on rows ``index`` of (x, y); returns a_L (a buffer, valid until the next step)."""
        fused, cp, ops = self.fused, self.fused.cp, self.fused.ops
        rows = int(index.shape[0])
        key = (id(x), id(y), id(totals.loss), id(totals.correct), rows)
        if self.graph is not None and key == self.key:  # replay
            cp.copyto(self.index, index)
            optimizer.begin_step(fused.params, fused.grads)  # host only: counts the step
            self.scalars.set(np.asarray(fused.scalar_values(optimizer), dtype=str(self.scalars.dtype)))
            self.graph.launch()
            return self.a_out
        if self.graph is not None and key[:4] == self.key[:4]:  # the short last batch: eagerly
            return fused.step(net, ops.take_rows(x, index, "x_batch"), ops.take_rows(y, index, "y_batch"),
                              optimizer, totals)
        # A new epoch (new totals) or shape: an eager step (the warm-up: kernels compiled, buffers
        # made), then the capture of the next steps' work, which runs nothing now.
        self.index = ops.buffer(("graph_index",), (rows,), index.dtype)
        cp.copyto(self.index, index)
        a_out = fused.step(net, ops.take_rows(x, self.index, "x_batch"), ops.take_rows(y, self.index, "y_batch"),
                           optimizer, totals)
        self.graph = None
        stream = cp.cuda.Stream(non_blocking=True)
        with stream:
            stream.begin_capture()
            try:
                xb, yb = ops.take_rows(x, self.index, "x_batch"), ops.take_rows(y, self.index, "y_batch")
                self.a_out = fused.step(net, xb, yb, optimizer, totals, scalars=self.scalars)
            finally:
                graph = stream.end_capture()
        self.graph, self.key = graph, key
        return a_out
