"""``C <- alpha A^T B + beta C`` through the BLAS NumPy itself uses.

NumPy's ``matmul`` always computes a fresh product; BLAS's ``gemm`` can also
scale and add it into an existing matrix.  That turns an SGD update
``W <- W - lr * delta^T a`` into the one matrix product that computes the
gradient, with no gradient array written and read back (on 784-256-10 that
is about 5% of a training step).

Only NumPy's own bundled OpenBLAS (``numpy.libs/libscipy_openblas*``, in the
PyPI wheels) is used, so there is one BLAS and one thread pool in the
process.  Where it is not found (other NumPy builds), :func:`available` is
False and nnxp computes the gradient and updates in two steps, as before.
"""

from __future__ import annotations

import ctypes
import glob
import os
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["available", "gemm_tn_into"]

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


@lru_cache(maxsize=None)
def _gemms() -> dict[Any, Any] | None:
    """{np.float32: sgemm, np.float64: dgemm} from NumPy's bundled OpenBLAS, or None."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas*"))):
        ilp64 = "openblas64_" in os.path.basename(path)
        suffix, index = ("64_", ctypes.c_int64) if ilp64 else ("", ctypes.c_int32)
        try:
            lib = ctypes.CDLL(path)  # already loaded by NumPy: the same library, the same threads
            funcs = {np.dtype(np.float32): getattr(lib, f"scipy_cblas_sgemm{suffix}"),
                     np.dtype(np.float64): getattr(lib, f"scipy_cblas_dgemm{suffix}")}
        except (OSError, AttributeError):
            continue
        for dtype, f in funcs.items():
            real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
            f.restype = None
            f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, index, index, index, real,
                          ctypes.c_void_p, index, ctypes.c_void_p, index, real, ctypes.c_void_p, index]
        return funcs
    return None


def available() -> bool:
    return _gemms() is not None


def gemm_tn_into(c: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: float, beta: float) -> None:
    """c <- alpha * a.T @ b + beta * c, in place.

    a: (K, M), b: (K, N), c: (M, N); all C-contiguous, of one dtype (float32 or
    float64).  Falls back to NumPy (same result, more memory traffic) when
    the BLAS is not available or an operand does not fit.
    """
    gemm = (_gemms() or {}).get(c.dtype)
    k, m = a.shape
    n = b.shape[1]
    fits = (gemm is not None and a.dtype == b.dtype == c.dtype and c.shape == (m, n) and b.shape[0] == k
            and all(x.flags.c_contiguous for x in (a, b, c)) and c.flags.writeable)
    if not fits:
        product = a.T @ b
        if beta != 1.0:
            c *= beta
        product *= alpha
        c += product
        return
    gemm(_ROW_MAJOR, _TRANS, _NO_TRANS, m, n, k, alpha, a.ctypes.data, m, b.ctypes.data, n,
         beta, c.ctypes.data, n)
