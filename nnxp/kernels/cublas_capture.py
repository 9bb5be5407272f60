"""cuBLAS products that a CUDA-graph capture can record, through the libcublas CuPy already loaded.

CuPy's cuBLAS wrappers (``cupy_backends.cuda.libs.cublas``: ``sgemm``,
``gemmEx``, ... and so ``cupy.matmul`` and ``dot``) first bind their handle
to the current stream, and that refuses while the stream captures:
``NotImplementedError: calling cuBLAS API during stream capture is currently
unsupported`` (cupy issue 6290).  cuBLAS itself can be captured (its
documentation's "CUDA Graphs Support"), so nnxp calls the library directly
(ctypes, on the libcublas CuPy's wrapper linked, found in the process's
memory map and opened with ``RTLD_NOLOAD``: no second copy is loaded), with
a handle of its own (CuPy's handle and its settings are left alone):

- before ``begin_capture``: ``cublasSetStream`` binds the handle to the
  capture stream and ``cublasSetWorkspace`` gives it a preallocated
  workspace, so nothing is bound or allocated during capture;
- during capture: ``cublasGemmEx`` with an explicit compute type, the one
  CuPy's own ``matmul`` uses (``CUBLAS_COMPUTE_32F``, or
  ``CUBLAS_COMPUTE_32F_FAST_TF32`` where ``CUPY_TF32=1`` asks for TF32 on
  float32; ``CUBLAS_COMPUTE_64F``): graph and eager products round alike,
  whatever the handle's math mode;
- alpha and beta are host scalars (pointer mode host), read at capture and
  frozen into the graph: they are the constants 1 and 0 here, never a
  learning rate (the update kernel reads those from device memory).

A stand-in for CuPy (tests/support/cupy_emulation) provides its own library
object as ``cupy.cuda.cublas_library``; with real CuPy that attribute does not
exist and the loaded libcublas is used.  tests/test_cublas_stub.py runs this
module and CuPy's compiled wrappers against a stub libcublas that logs calls.
"""

from __future__ import annotations

import ctypes
import os
import re
from typing import Any

import numpy as np  # host-side only: alpha and beta

__all__ = ["CaptureBlas", "compute_type", "loaded_cublas"]

CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
CUDA_R_32F, CUDA_R_64F = 0, 1
CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_COMPUTE_64F = 68, 77, 70
CUBLAS_GEMM_DEFAULT = -1
#: Workspace given to nnxp's handle before capture (cuBLAS recommends 32 MiB on Hopper).
WORKSPACE_BYTES = 32 * 1024 * 1024

_DATA_TYPE = {"float32": CUDA_R_32F, "float64": CUDA_R_64F}
_LIBRARY = re.compile(r"/libcublas\.so(\.\d+)*$")
_P, _I, _S = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
_SIGNATURES = {
    "cublasCreate_v2": [_P],
    "cublasSetStream_v2": [_P, _P],
    "cublasSetWorkspace_v2": [_P, _P, _S],
    "cublasGemmEx": [_P, _I, _I, _I, _I, _I, _P, _P, _I, _I, _P, _I, _I, _P, _P, _I, _I, _I, _I],
}


def _mapped_cublas() -> str:
    """The path of the libcublas mapped into this process (CuPy's wrapper links it)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split(maxsplit=5)[-1].strip() if len(line.split()) >= 6 else ""
            if _LIBRARY.search(path):
                return path
    raise OSError("no libcublas is loaded in this process")


def loaded_cublas(cp: Any) -> Any:
    """The cuBLAS library CuPy uses: its stand-in's, or the loaded libcublas through ctypes."""
    stand_in = getattr(cp.cuda, "cublas_library", None)
    if stand_in is not None:
        return stand_in
    from cupy_backends.cuda.libs import cublas as _wrapper  # noqa: F401  (loads libcublas by its soname)

    library = ctypes.CDLL(_mapped_cublas(), mode=os.RTLD_NOLOAD | ctypes.RTLD_GLOBAL)
    for name, argtypes in _SIGNATURES.items():
        function = getattr(library, name)
        function.argtypes, function.restype = argtypes, ctypes.c_int
    return library


def compute_type(cp: Any, dtype: str) -> int:
    """The cuBLAS compute type CuPy's eager ``matmul`` uses for ``dtype`` (TF32 where CuPy's setting asks)."""
    if dtype == "float64":
        return CUBLAS_COMPUTE_64F
    linalg = cp._core._routines_linalg
    tf32 = linalg.get_compute_type(np.dtype(dtype)) == linalg.COMPUTE_TYPE_TF32
    return CUBLAS_COMPUTE_32F_FAST_TF32 if tf32 else CUBLAS_COMPUTE_32F


def _pointer(x: Any) -> int:
    data = x.data
    return data.ptr if hasattr(data, "ptr") else x.ctypes.data  # CuPy memory; a stand-in's host memory


class CaptureBlas:
    """nnxp's own cuBLAS handle for CUDA-graph capture: bound before capture, then ``cublasGemmEx``."""

    def __init__(self, cp: Any, library: Any = None, workspace: Any = None) -> None:
        """``library``: the cuBLAS library (default :func:`loaded_cublas`); ``workspace``: a byte
        array for cuBLAS (default :data:`WORKSPACE_BYTES` on the device)."""
        self.cp = cp
        self.library = library if library is not None else loaded_cublas(cp)
        handle = ctypes.c_void_p()
        self._check("cublasCreate_v2", self.library.cublasCreate_v2(ctypes.byref(handle)))
        self.handle = handle.value
        self.workspace = workspace if workspace is not None else cp.empty((WORKSPACE_BYTES,), dtype=np.uint8)
        self._scalars = {d: (np.ones((), d), np.zeros((), d)) for d in _DATA_TYPE}  # alive as long as the handle

    @staticmethod
    def _check(name: str, status: int) -> None:
        if status != 0:
            raise RuntimeError(f"cuBLAS {name} returned status {status}")

    def bind(self, stream_ptr: int) -> None:
        """Before ``begin_capture``: the handle runs on the capture stream, in the preallocated workspace."""
        self._check("cublasSetStream_v2", self.library.cublasSetStream_v2(self.handle, stream_ptr))
        self._check("cublasSetWorkspace_v2", self.library.cublasSetWorkspace_v2(
            self.handle, _pointer(self.workspace), int(self.workspace.nbytes)))

    def gemm(self, a: Any, b: Any, out: Any) -> Any:
        """``out = a @ b`` (2-D, ``out`` C-contiguous) by ``cublasGemmEx`` on the bound stream.

        Row-major C (m, n) is column-major C^T, so cuBLAS computes C^T = B^T A^T.  A
        C-contiguous operand is its own transpose in column-major (op N, leading
        dimension its row length); a transposed view of one (``W.T``) is passed with
        op T.  Nothing is copied or allocated.
        """
        m, k = int(a.shape[0]), int(a.shape[1])
        n = int(b.shape[1])
        if int(b.shape[0]) != k or tuple(out.shape) != (m, n) or not out.flags.c_contiguous:
            raise ValueError(f"gemm: {tuple(a.shape)} @ {tuple(b.shape)} into {tuple(out.shape)}")
        op_a, lda = _operand(a)
        op_b, ldb = _operand(b)
        dtype = str(out.dtype)
        if str(a.dtype) != dtype or str(b.dtype) != dtype or dtype not in _DATA_TYPE:
            raise TypeError(f"gemm: {a.dtype} @ {b.dtype} into {out.dtype}")
        kind = _DATA_TYPE[dtype]
        one, zero = self._scalars[dtype]
        self._check("cublasGemmEx", self.library.cublasGemmEx(
            self.handle, op_b, op_a, n, m, k, one.ctypes.data, _pointer(b), kind, ldb, _pointer(a), kind, lda,
            zero.ctypes.data, _pointer(out), kind, n, compute_type(self.cp, dtype), CUBLAS_GEMM_DEFAULT))
        return out


def _operand(x: Any) -> tuple[int, int]:
    """(cuBLAS operation, leading dimension) of a row-major operand read as column-major."""
    if x.flags.c_contiguous:
        return CUBLAS_OP_N, max(int(x.shape[1]), 1)
    if x.flags.f_contiguous:
        return CUBLAS_OP_T, max(int(x.shape[0]), 1)
    raise ValueError("gemm operands must be contiguous or a transposed contiguous array")
