"""Tolerances for comparing two evaluations of the same formula that may round differently.

Two runs of one network can sum the same products in different orders: another
BLAS kernel (``OPENBLAS_CORETYPE``, MKL), another thread count (each thread sums
a block), or another batch split (a GEMM of 64 rows is not blocked like one of
1,000).  Each length-``k`` dot product then differs by rounding alone, and the
usual estimate of that difference (Higham, *Accuracy and Stability of Numerical
Algorithms*, section 3.1, with random rounding errors) grows like
``eps * sqrt(k)``; every further layer adds its own share.  So a bit-for-bit
comparison of float32 results is only right when the same code runs the same
kernel with the same threads on the same batch; otherwise use
:func:`reordering_tolerance`.
"""

from __future__ import annotations

import math

import numpy as np

#: margin on the statistical estimate (a few standard deviations of the rounding walk)
SAFETY = 8.0


def reordering_tolerance(dtype, reduction_length: int, layers: int = 1, scale: float = 1.0) -> dict[str, float]:
    """``assert_allclose`` keywords for two results that differ only in summation order.

    ``dtype`` is the computation's floating dtype (a name or a NumPy dtype);
    ``reduction_length`` the longest dot product (a layer's fan-in); ``layers``
    how many such products are chained; ``scale`` the typical magnitude of the
    compared values (1 for probabilities), which sets the absolute floor for
    values near zero.
    """
    eps = float(np.finfo(np.dtype(dtype)).eps)
    rtol = SAFETY * eps * math.sqrt(max(reduction_length, 1)) * max(layers, 1)
    return {"rtol": rtol, "atol": rtol * scale}
