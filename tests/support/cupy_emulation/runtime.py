"""EMULATION: the ``cupy`` functions nnxp calls (products and reductions by NumPy), streams and graphs."""

from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np

from .compiler import ElementwiseKernel, RawKernel
from .device import (COUNTERS, SYNC_IN_CAPTURE, DeviceArray, _adopt, _device, _plain, begin_capture, capture_stream,
                     capturing, end_capture, record, refuse_cublas_in_capture)

# -- the cupy module --------------------------------------------------------------------


class _EmulatedCuPy:
    """EMULATION of the ``cupy`` functions nnxp calls; products and reductions by NumPy."""

    ElementwiseKernel = ElementwiseKernel
    RawKernel = RawKernel
    ndarray = DeviceArray
    float32, float64, int64 = np.float32, np.float64, np.int64
    emulated = True

    def _alloc(self, array: np.ndarray) -> DeviceArray:
        return _device(array, True)

    def empty(self, shape, dtype=np.float64) -> DeviceArray:
        return self._alloc(np.empty(shape, dtype=dtype))

    def zeros(self, shape, dtype=np.float64) -> DeviceArray:
        COUNTERS.launch("cupy.zeros")  # a memset
        return self._alloc(np.zeros(shape, dtype=dtype))

    def asarray(self, a, dtype=None) -> DeviceArray:
        if isinstance(a, DeviceArray) and (dtype is None or a.dtype == dtype):
            return a
        COUNTERS.launch("cupy.asarray")
        return self._alloc(np.array(_plain(a), dtype=dtype))

    def _op(self, name: str, fn, args, out):
        args = _adopt(args)
        if out is None:
            COUNTERS.launch(f"cupy.{name}")
            return self._alloc(fn(*(_plain(a) for a in args)))
        if not isinstance(out, DeviceArray):
            raise TypeError("Output arguments must be cupy.ndarray")
        plain_args, plain_out = [_plain(a) for a in args], _plain(out)
        if capturing():
            record(f"cupy.{name}", lambda: fn(*plain_args, out=plain_out))
        else:
            COUNTERS.launch(f"cupy.{name}")
            fn(*plain_args, out=plain_out)
        return out

    def matmul(self, a, b, out=None):
        refuse_cublas_in_capture()  # CuPy's matmul calls its cuBLAS wrapper, which refuses (cupy issue 6290)
        return self._op("matmul", _tf32_matmul, (a, b), out)

    def dot(self, a, b, out=None):
        refuse_cublas_in_capture()
        return self._op("dot", _tf32_matmul, (a, b), out)

    def copyto(self, dst, src):
        return self._op("copyto", lambda s, out: np.copyto(out, s), (src,), dst)

    def sum(self, a, axis=None, out=None):
        return self._op("sum", lambda x, out=None: np.sum(x, axis=axis, out=out), (a,), out)

    def take(self, a, indices, axis=None, out=None):
        return self._op("take", lambda x, i, out=None: np.take(x, i, axis=axis, out=out), (a, indices), out)


def _tf32_matmul(a, b, out=None):
    """``a @ b`` as CuPy's matmul computes it: float32 inputs rounded to TF32 where ``CUPY_TF32=1``."""
    if a.dtype == np.float32 and _Linalg.get_compute_type(a.dtype) == _Linalg.COMPUTE_TYPE_TF32:
        a, b = tf32(a), tf32(b)
    return np.matmul(a, b, out=out)


def tf32(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to TF32 (10 mantissa bits, to nearest even), as tensor cores read them."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0xFFF) + ((bits >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)
    return np.where(np.isfinite(x), rounded.view(np.float32), x).astype(np.float32)


class _Linalg:
    """EMULATION of ``cupy._core._routines_linalg``'s compute-type setting: TF32 for float32 where
    ``CUPY_TF32`` is a positive integer (CuPy reads it once, at the first product; here at every one)."""

    COMPUTE_TYPE_DEFAULT, COMPUTE_TYPE_TF32 = 1, 7

    @staticmethod
    def get_compute_type(dtype) -> int:
        tf32 = np.dtype(dtype).char in "fF" and int(os.environ.get("CUPY_TF32", "0")) > 0
        return _Linalg.COMPUTE_TYPE_TF32 if tf32 else _Linalg.COMPUTE_TYPE_DEFAULT


class _Core:
    _routines_linalg = _Linalg


cupy = _EmulatedCuPy()
cupy._core = _Core()



# -- streams, graphs and the raw cuBLAS binding ---------------------------------------------


class _Graph:
    """EMULATION of ``cupy.cuda.Graph``: the recorded launches, run in order by each replay."""

    def __init__(self, nodes: list) -> None:
        self.nodes = nodes

    def launch(self, stream: Any = None) -> None:
        COUNTERS.launch("cuda_graph")
        COUNTERS.graph_nodes += len(self.nodes)
        for _, run in self.nodes:
            run()


class _Stream:
    """EMULATION of ``cupy.cuda.Stream``: a no-op context with a pointer; capture records launches into a graph."""

    _next_ptr = 0x5000

    def __init__(self, non_blocking: bool = False) -> None:
        self.non_blocking = non_blocking
        _Stream._next_ptr += 0x10
        self.ptr = _Stream._next_ptr

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def begin_capture(self, mode: Any = None) -> None:
        begin_capture(self.ptr)

    def end_capture(self) -> _Graph:
        return _Graph(end_capture())

    def is_capturing(self) -> bool:
        return capture_stream() == self.ptr

    def synchronize(self) -> None:
        if capturing():  # cudaStreamSynchronize on a capturing stream
            raise RuntimeError(SYNC_IN_CAPTURE)


_CTYPES = {np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double}


def _column_major(pointer: int, rows: int, cols: int, ld: int, dtype: np.dtype) -> np.ndarray:
    """The (rows, cols) column-major matrix at ``pointer`` with leading dimension ``ld``, as a NumPy view."""
    flat = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(_CTYPES[dtype])), shape=(cols * ld,))
    return flat.reshape(cols, ld)[:, :rows].T


def _gemm_now(dtype, transa, transb, m, n, k, alpha_v, a, lda, b, ldb, beta_v, c, ldc, tf32_inputs=False):
    """A column-major GEMM on host memory, as cuBLAS reads its arguments; a closure that runs it."""
    def run() -> None:
        op_a = _column_major(a, m, k, lda, dtype) if transa == 0 else _column_major(a, k, m, lda, dtype).T
        op_b = _column_major(b, k, n, ldb, dtype) if transb == 0 else _column_major(b, n, k, ldb, dtype).T
        if tf32_inputs:
            op_a, op_b = tf32(op_a), tf32(op_b)
        out = _column_major(c, m, n, ldc, dtype)
        product = alpha_v * (op_a @ op_b)
        out[...] = product if beta_v == 0 else product + beta_v * out
    return run


class _Cublas:
    """EMULATION of CuPy's raw cuBLAS wrappers (``cupy_backends.cuda.libs.cublas``): each refuses in capture,
    as the real ``setStream`` they call first does (cupy issue 6290)."""

    def _gemm(self, dtype, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) -> None:
        refuse_cublas_in_capture()
        dtype = np.dtype(dtype)
        ctype = _CTYPES[dtype]
        alpha_v, beta_v = ctype.from_address(alpha).value, ctype.from_address(beta).value
        COUNTERS.launch("cublas.gemm")
        _gemm_now(dtype, transa, transb, m, n, k, alpha_v, a, lda, b, ldb, beta_v, c, ldc)()

    def sgemm(self, handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) -> None:
        self._gemm(np.float32, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def dgemm(self, handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) -> None:
        self._gemm(np.float64, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def gemmEx(self, *args) -> None:  # noqa: N802  (CuPy's name)
        refuse_cublas_in_capture()
        raise NotImplementedError("EMULATION: the gemmEx wrapper outside capture is not emulated")


# cuBLAS's enums (cublas_api.h, library_types.h) and the statuses the library returns.
_OK, _INVALID_VALUE, _NOT_SUPPORTED = 0, 7, 15
_DATA = {0: np.dtype(np.float32), 1: np.dtype(np.float64)}  # CUDA_R_32F, CUDA_R_64F
_COMPUTE = {68: np.dtype(np.float32), 77: np.dtype(np.float32), 70: np.dtype(np.float64)}  # 32F, 32F_FAST_TF32, 64F
_TF32 = 77


class _CublasLibrary:
    """EMULATION of the libcublas C functions nnxp calls through ctypes (:mod:`nnxp.kernels.cublas_capture`).

    Each returns a cuBLAS status.  A handle runs on the stream ``cublasSetStream``
    bound it to: a GEMM on a handle bound to another stream than the capturing one
    runs now and is not in the graph (as on a GPU); ``cublasGemmEx`` refuses data
    and compute types cuBLAS does not pair (NOT_SUPPORTED) and reads alpha and beta
    from host memory at the call (pointer mode host: frozen into a graph).  Stricter
    than cuBLAS (EMULATION): a GEMM in capture needs a workspace set before.  ``calls``
    logs (function, arguments) for tests.
    """

    def __init__(self) -> None:
        self.handles: dict[int, dict[str, Any]] = {}
        self.calls: list[tuple[str, tuple]] = []

    def cublasCreate_v2(self, handle_ref) -> int:  # noqa: N802
        handle = 0x100 + len(self.handles)
        self.handles[handle] = {"stream": 0, "workspace": None}
        handle_ref._obj.value = handle
        self.calls.append(("cublasCreate_v2", (handle,)))
        return _OK

    def cublasSetStream_v2(self, handle, stream) -> int:  # noqa: N802
        if handle not in self.handles:
            return _INVALID_VALUE
        self.handles[handle]["stream"] = int(stream or 0)
        self.calls.append(("cublasSetStream_v2", (handle, stream)))
        return _OK

    def cublasSetWorkspace_v2(self, handle, pointer, size) -> int:  # noqa: N802
        if handle not in self.handles or (size and not pointer):
            return _INVALID_VALUE
        self.handles[handle]["workspace"] = (pointer, size)
        self.calls.append(("cublasSetWorkspace_v2", (handle, pointer, size)))
        return _OK

    def cublasGemmEx(self, handle, transa, transb, m, n, k, alpha, a, a_type, lda, b, b_type, ldb, beta,  # noqa: N802
                     c, c_type, ldc, compute, algo) -> int:
        self.calls.append(("cublasGemmEx", (handle, transa, transb, m, n, k, a_type, lda, b_type, ldb, c_type, ldc,
                                            compute, algo)))
        state = self.handles.get(handle)
        if state is None or transa not in (0, 1) or transb not in (0, 1) or min(m, n, k) < 0:
            return _INVALID_VALUE
        if lda < max(1, m if transa == 0 else k) or ldb < max(1, k if transb == 0 else n) or ldc < max(1, m):
            return _INVALID_VALUE
        dtype = _DATA.get(a_type)
        if dtype is None or b_type != a_type or c_type != a_type or _COMPUTE.get(compute) != dtype:
            return _NOT_SUPPORTED
        ctype = _CTYPES[dtype]
        alpha_v, beta_v = ctype.from_address(alpha).value, ctype.from_address(beta).value  # read now
        run = _gemm_now(dtype, transa, transb, m, n, k, alpha_v, a, lda, b, ldb, beta_v, c, ldc,
                        tf32_inputs=compute == _TF32)
        if capturing() and state["stream"] == capture_stream():
            if state["workspace"] is None:
                raise RuntimeError("EMULATION: cublasGemmEx in capture without a workspace set before capture")
            record("cublas.gemm", run)
        else:  # another stream: runs now, outside any graph
            COUNTERS.launch("cublas.gemm")
            run()
        return _OK


class _Device:
    @staticmethod
    def get_cublas_handle() -> int:
        return 0


class _Cuda:
    """EMULATION of the parts of ``cupy.cuda`` nnxp uses, and the cuBLAS library (``cublas_library``)."""

    Stream = _Stream
    Graph = _Graph
    cublas = _Cublas()
    device = _Device()
    cublas_library = _CublasLibrary()


cupy.cuda = _Cuda()
