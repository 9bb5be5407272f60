"""How the formulas run: one reference executor and optional backend fast paths.

- :mod:`~nnxp.kernels.reference`: :class:`ArrayAPIOps`, the formulas as plain
  Array-API expressions; correct on every library.
- :mod:`~nnxp.kernels.numpy`: :class:`NumPyOps`, the same formulas into
  reused buffers, in place, through BLAS (SGD folded into a GEMM).
- :mod:`~nnxp.kernels.cupy`: CuPy, cuBLAS into buffers and fused kernels.
- :mod:`~nnxp.kernels.blas`: ``C <- alpha A B + beta C`` through a BLAS provider
  (NumPy's OpenBLAS, or MKL from the ``mkl`` wheel), chosen by calibration.

:func:`ops_for` picks the executor for a backend; every fast entry is keyed
by the exact class of the formula it runs, so anything without an entry (a
user's subclass included) runs the reference.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from ..backend import EMULATED_CUPY
from .reference import ArrayAPIOps, EpochTotals

__all__ = ["ArrayAPIOps", "EpochTotals", "ops_for"]


def ops_for(backend: Any, fast: bool = True, cuda_graphs: bool = True, blas: str | None = None) -> ArrayAPIOps:
    """The fastest correct executor for ``backend`` (the reference if ``fast`` is False).

    ``cuda_graphs``: on CuPy, replay ``fit``'s fused step as a CUDA graph (also off
    with ``NNXP_CUDA_GRAPHS=0``).  ``blas`` (NumPy only): ``auto``, ``openblas`` or
    ``mkl`` for the products of training steps (None: the process setting,
    :func:`nnxp.set_blas`).
    """
    if blas is not None:
        from .blas import check_setting

        blas = check_setting(blas)  # a bad name or a missing library fails here, whatever the backend
    if not fast:
        return ArrayAPIOps()
    if backend.name == EMULATED_CUPY:  # the CuPy fast path on a stand-in for CuPy (tests/support)
        from .cupy import CuPyOps

        return CuPyOps(backend.cupy_module, graphs=cuda_graphs)
    if array_api_compat.is_numpy_namespace(backend.xp):
        from .numpy import NumPyOps

        return NumPyOps(blas=blas)
    if array_api_compat.is_cupy_namespace(backend.xp):
        from .cupy import CuPyOps, fused_enabled

        if fused_enabled():
            return CuPyOps(graphs=cuda_graphs)
    return ArrayAPIOps()
