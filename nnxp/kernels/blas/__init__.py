"""The matrix products of the NumPy fast path, through a chosen BLAS library.

- :mod:`.providers`: ``openblas`` (NumPy's own) and ``mkl`` (the ``mkl`` wheel,
  ``pip install 'nnxp[mkl]'``), each a :class:`Provider` whose
  :meth:`~Provider.gemm` does ``c <- alpha a @ b + beta c`` in place;
- :mod:`.choice`: the setting (``auto``, ``openblas``, ``mkl``;
  :func:`set_blas`) and ``auto``'s calibration on the step's own shapes,
  cached per machine.
"""

from __future__ import annotations

import numpy as np

from .choice import SETTINGS, blas_setting, cache_path, check_setting, resolve, set_blas
from .providers import PROVIDERS, Provider, mkl_missing, openblas, provider

__all__ = ["PROVIDERS", "SETTINGS", "Provider", "available", "blas_setting", "cache_path", "check_setting",
           "gemm_tn_into", "mkl_missing", "openblas", "provider", "resolve", "set_blas"]


def available() -> bool:
    """Whether NumPy's own OpenBLAS was found (scaled products then need no extra pass)."""
    return openblas().native


def gemm_tn_into(c: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: float, beta: float,
                 blas: Provider | None = None) -> None:
    """c <- alpha * a.T @ b + beta * c, in place (a: (K, M), b: (K, N), c: (M, N)), through
    ``blas`` (default NumPy's OpenBLAS); NumPy does it where BLAS cannot take the operands."""
    (blas or openblas()).gemm(c, a.T, b, alpha, beta)
