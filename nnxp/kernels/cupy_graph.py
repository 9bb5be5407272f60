"""The fused CuPy step captured as a CUDA graph: an epoch becomes a loop of graph launches.

What capture needs, and how it is met:

- CuPy's cuBLAS wrappers (``cupy.matmul``, ``dot``, the raw ``sgemm``) refuse
  to run while a stream captures (cupy issue 6290): the products go through
  :class:`~nnxp.kernels.cublas_capture.CaptureBlas`, a cuBLAS handle of
  nnxp's own bound to the capture stream and a workspace *before* capture,
  calling ``cublasGemmEx`` with the compute type eager ``matmul`` uses (TF32
  where ``CUPY_TF32=1``);
- memory the pool hands out during capture may be reused while the graph
  still writes there (cupy issue 9655): every array the graph touches exists
  before capture (the fused step's buffers, the batch gathered into fixed
  buffers through a fixed index buffer);
- a host scalar passed to a kernel is baked into the graph: the per-step
  ones (learning rate, Adam's bias corrections, ...) live in a small device
  array, written before each replay, and the update kernel reads them from
  there (``T`` parameters bound to 1-element arrays, broadcast); cuBLAS's
  alpha and beta are the constants 1 and 0;
- no host sync and no pageable copy inside the capture (CuPy refuses both);
- the short last batch runs eagerly (other shapes).

Per step: one host-to-device copy of the step's scalars, one copy of the
step's indices into the index buffer, one graph launch.  The graph is
captured once per epoch (the epoch's totals are new arrays) after an eager
warm-up step.  If capture fails on a machine (a driver, a cuBLAS without
capture support), one line on stderr says why and the fused step runs
eagerly from then on: training never stops for it.

Without a GPU this runs on the CPU EMULATION (tests/support/cupy_emulation,
tests/test_cupy_emulation.py), which refuses in capture what CuPy refuses;
tests/test_cublas_stub.py runs CaptureBlas and CuPy's compiled wrappers
against a stub libcublas.  A real capture has not been run yet.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np  # host-side only: the step's scalars

__all__ = ["GraphedStep", "graphs_enabled"]


def graphs_enabled() -> bool:
    """CUDA graphs are on by default for the fused step; ``NNXP_CUDA_GRAPHS=0`` turns them off."""
    return os.environ.get("NNXP_CUDA_GRAPHS", "1") != "0"


class GraphedStep:
    """Replays of one captured fused step for full batches; eager steps for the rest."""

    def __init__(self, fused: Any) -> None:
        self.fused = fused
        self.graph = None
        self.key: tuple | None = None
        cp = fused.cp
        self.scalars = cp.zeros((fused.scalar_count,), dtype=fused.flat_p.dtype)
        self.index = None
        self.blas: Any = None  # nnxp's cuBLAS handle for capture, made on the first capture
        self.failed: str | None = None  # why capture failed, once it has: eager steps from then on

    def run(self, net: Any, x: Any, y: Any, index: Any, optimizer: Any, totals: Any) -> Any:
        """One step on rows ``index`` of (x, y); returns a_L (a buffer, valid until the next step)."""
        fused, cp, ops = self.fused, self.fused.cp, self.fused.ops
        rows = int(index.shape[0])
        if self.failed is not None:
            return fused.step(net, ops.take_rows(x, index, "x_batch"), ops.take_rows(y, index, "y_batch"),
                              optimizer, totals)
        key = (id(x), id(y), id(totals.loss), id(totals.correct), rows)
        if self.graph is not None and key == self.key:  # replay
            cp.copyto(self.index, index)
            optimizer.begin_step(fused.params, fused.grads)  # host only: counts the step
            self.scalars.set(np.asarray(fused.scalar_values(optimizer), dtype=str(self.scalars.dtype)))
            try:
                self.graph.launch()
            except Exception as exc:  # noqa: BLE001  (the step is counted: run it eagerly, reading the scalars set)
                self._give_up(exc)
                return fused.step(net, ops.take_rows(x, self.index, "x_batch"),
                                  ops.take_rows(y, self.index, "y_batch"), optimizer, totals, scalars=self.scalars)
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
        try:
            self.graph, self.key = self._capture(net, x, y, optimizer, totals), key
        except Exception as exc:  # noqa: BLE001  (any failure: the eager fused step is always correct)
            self._give_up(exc)
        return a_out

    def _give_up(self, exc: Exception) -> None:
        """No more graphs for this step: one line on stderr says why; eager fused steps from now on."""
        self.graph, self.failed = None, f"{type(exc).__name__}: {exc}".splitlines()[0]
        print(f"nnxp: CUDA graphs off ({self.failed}); the fused step runs eagerly", file=sys.stderr)

    def _capture(self, net: Any, x: Any, y: Any, optimizer: Any, totals: Any) -> Any:
        """The graph of one fused step on the rows in the index buffer (nothing runs now)."""
        from .cublas_capture import CaptureBlas

        fused, cp, ops = self.fused, self.fused.cp, self.fused.ops
        if self.blas is None:
            self.blas = CaptureBlas(cp)
        stream = cp.cuda.Stream(non_blocking=True)
        self.blas.bind(stream.ptr)  # before capture: cuBLAS's stream and workspace are set outside the graph
        with stream:
            stream.begin_capture()
            try:
                xb, yb = ops.take_rows(x, self.index, "x_batch"), ops.take_rows(y, self.index, "y_batch")
                self.a_out = fused.step(net, xb, yb, optimizer, totals, scalars=self.scalars, gemm=self.blas.gemm)
            except BaseException:
                try:
                    stream.end_capture()  # the partial graph is dropped; the first error is the one reported
                except Exception:  # noqa: BLE001
                    pass
                raise
            return stream.end_capture()
