"""EMULATION: the ``cupy`` functions nnxp calls (products and reductions by NumPy), streams and graphs."""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from .compiler import ElementwiseKernel, RawKernel
from .device import COUNTERS, DeviceArray, _adopt, _device, _plain, begin_capture, capturing, end_capture, record

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
        if capturing():
            raise RuntimeError("EMULATION: cupy.matmul cannot be captured in a CUDA graph (cupy issue 6290): "
                               "use the raw cuBLAS binding")
        return self._op("matmul", np.matmul, (a, b), out)

    def copyto(self, dst, src):
        return self._op("copyto", lambda s, out: np.copyto(out, s), (src,), dst)

    def sum(self, a, axis=None, out=None):
        return self._op("sum", lambda x, out=None: np.sum(x, axis=axis, out=out), (a,), out)

    def take(self, a, indices, axis=None, out=None):
        return self._op("take", lambda x, i, out=None: np.take(x, i, axis=axis, out=out), (a, indices), out)


cupy = _EmulatedCuPy()



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
    """EMULATION of ``cupy.cuda.Stream``: a no-op context; capture records launches into a graph."""

    def __init__(self, non_blocking: bool = False) -> None:
        self.non_blocking = non_blocking

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def begin_capture(self, mode: Any = None) -> None:
        begin_capture()

    def end_capture(self) -> _Graph:
        return _Graph(end_capture())


_CTYPES = {np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double}


def _column_major(pointer: int, rows: int, cols: int, ld: int, dtype: np.dtype) -> np.ndarray:
    """The (rows, cols) column-major matrix at ``pointer`` with leading dimension ``ld``, as a NumPy view."""
    flat = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(_CTYPES[dtype])), shape=(cols * ld,))
    return flat.reshape(cols, ld)[:, :rows].T


class _Cublas:
    """EMULATION of the raw cuBLAS GEMMs (``cupy_backends.cuda.libs.cublas``): pointers, column-major, host alpha/beta."""

    def _gemm(self, dtype, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) -> None:
        dtype = np.dtype(dtype)
        ctype = _CTYPES[dtype]
        alpha_v, beta_v = ctype.from_address(alpha).value, ctype.from_address(beta).value  # read now, as cuBLAS

        def run() -> None:
            op_a = _column_major(a, m, k, lda, dtype) if transa == 0 else _column_major(a, k, m, lda, dtype).T
            op_b = _column_major(b, k, n, ldb, dtype) if transb == 0 else _column_major(b, n, k, ldb, dtype).T
            out = _column_major(c, m, n, ldc, dtype)
            product = alpha_v * (op_a @ op_b)
            out[...] = product if beta_v == 0 else product + beta_v * out

        if capturing():
            record("cublas.gemm", run)
        else:
            COUNTERS.launch("cublas.gemm")
            run()

    def sgemm(self, handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) -> None:
        self._gemm(np.float32, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def dgemm(self, handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) -> None:
        self._gemm(np.float64, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


class _Device:
    @staticmethod
    def get_cublas_handle() -> int:
        return 0


class _Cuda:
    """EMULATION of the parts of ``cupy.cuda`` nnxp uses."""

    Stream = _Stream
    Graph = _Graph
    cublas = _Cublas()
    device = _Device()


cupy.cuda = _Cuda()
