"""BLAS providers: ``c <- alpha a @ b + beta c`` through a CBLAS library loaded with ctypes.

NumPy's ``matmul`` always computes a fresh product; BLAS's ``gemm`` can also
scale and add it into an existing matrix.  That turns an SGD update
``W <- W - lr delta^T a`` into the one matrix product that computes the
gradient, with no gradient array written and read back.  Which library does
the product is a *provider*:

``openblas``
    NumPy's own bundled OpenBLAS (``numpy.libs/libscipy_openblas*`` in the
    PyPI wheels), already loaded by NumPy: the same library and thread pool
    as ``np.matmul``.  Plain products (``beta = 0``) go through
    ``np.matmul(..., out=)``, scaled ones through ``cblas_?gemm``.  Where the
    library is not found (other NumPy builds) products fall back to NumPy.
``mkl``
    Intel MKL from the ``mkl`` wheel on PyPI (``pip install 'nnxp[mkl]'``):
    ``libmkl_rt`` found among the wheel's files and loaded with ctypes, LP64
    interface, ``cblas_sgemm`` / ``cblas_dgemm``.  Threading layer: Intel
    OpenMP (``libiomp5`` from the ``intel-openmp`` wheel, a dependency of
    ``mkl``; MKL's own default, and what the 0.71-0.88x GEMM times of issue 14
    were measured with), else GNU OpenMP (``libgomp``), else sequential;
    ``MKL_THREADING_LAYER=GNU|INTEL|SEQUENTIAL|TBB`` in the environment
    overrides this.  The choice is passed through the environment
    (``MKL_THREADING_LAYER``, ``MKL_INTERFACE_LAYER=LP64`` when unset), read
    when MKL starts: calling ``MKL_Set_Threading_Layer`` instead gave wrong
    products in a process that had loaded PyTorch first (its libtorch_cpu
    exports ~23,000 symbols of its own, statically linked MKL).  Intel OpenMP's idle threads spin for ``KMP_BLOCKTIME``
    (200 ms) after a product, GNU's for well under a millisecond; with 2
    threads on 2 cores either leaves NumPy's single-threaded elementwise passes
    their core.  MKL's thread count is set, when it is loaded, to NumPy's BLAS
    thread count, so it follows whatever limit the thread policy put on
    NumPy's BLAS; threadpoolctl also sees ``libmkl_rt`` once it is loaded.

Operands are 2-D arrays whose rows or columns are contiguous (a transpose is a
flag, never a copy); anything else falls back to NumPy with the same result.
"""

from __future__ import annotations

import ctypes
import glob
import os
from functools import lru_cache
from typing import Any, Callable

import numpy as np

from ...errors import BackendError

__all__ = ["Provider", "PROVIDERS", "openblas", "mkl", "mkl_missing", "provider"]

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
MKL_HINT = "pip install 'nnxp[mkl]'"


def _operand(x: np.ndarray) -> tuple[int, int] | None:
    """(transpose flag, leading dimension) of a 2-D array for row-major BLAS, or None."""
    if x.flags.c_contiguous:
        return _NO_TRANS, max(1, x.shape[1])
    if x.flags.f_contiguous:
        return _TRANS, max(1, x.shape[0])
    return None


def _numpy_gemm(c: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """The same result without BLAS flags: a product array, then scale and add."""
    if alpha == 1.0 and beta == 0.0:
        return np.matmul(a, b, out=c)
    product = a @ b
    if beta == 0.0:
        c[...] = 0.0  # BLAS semantics: c is not read when beta is 0 (NaN in c does not leak)
    elif beta != 1.0:
        c *= beta
    if alpha != 1.0:
        product *= alpha
    c += product
    return c


class Provider:
    """One BLAS library's ``gemm`` for float32 and float64 (row-major CBLAS)."""

    def __init__(self, name: str, funcs: dict[Any, Callable[..., None]], version: str = "",
                 matmul_plain: bool = False, threads: Callable[[], int | None] | None = None):
        self.name = name
        self._funcs = funcs
        self.version = version
        # NumPy's own BLAS: np.matmul(out=) is already the plain product through it
        self.uses_numpy_matmul = matmul_plain
        self._threads = threads

    @property
    def native(self) -> bool:
        """Whether the library was found (else every product falls back to NumPy)."""
        return bool(self._funcs)

    def threads(self) -> int | None:
        return self._threads() if self._threads else None

    def describe(self) -> str:
        threads = self.threads()
        return f"{self.name} {self.version}".strip() + (f", {threads} threads" if threads else "")

    def gemm(self, c: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: float = 1.0,
             beta: float = 0.0) -> np.ndarray:
        """c <- alpha a @ b + beta c in place; returns c.

        a: (M, K), b: (K, N), c: (M, N), one dtype; a and b each C- or
        F-contiguous (``w.T`` of a C-contiguous w is fine), c C-contiguous.
        With ``beta = 0`` c is written, not read.
        """
        if self.uses_numpy_matmul and alpha == 1.0 and beta == 0.0:
            return np.matmul(a, b, out=c)
        gemm = self._funcs.get(c.dtype)
        m, k = a.shape
        n = b.shape[1]
        fa, fb = _operand(a), _operand(b)
        if (gemm is None or fa is None or fb is None or not (a.dtype == b.dtype == c.dtype)
                or c.shape != (m, n) or b.shape[0] != k or not c.flags.c_contiguous
                or not c.flags.writeable or 0 in (m, n, k)):
            return _numpy_gemm(c, a, b, alpha, beta)
        gemm(_ROW_MAJOR, fa[0], fb[0], m, n, k, alpha, a.ctypes.data, fa[1], b.ctypes.data, fb[1],
             beta, c.ctypes.data, max(1, n))
        return c

    def __repr__(self) -> str:
        return f"<BLAS provider {self.describe()}>"


def _bind(lib: Any, sgemm: str, dgemm: str, index: Any) -> dict[Any, Callable[..., None]]:
    funcs = {np.dtype(np.float32): getattr(lib, sgemm), np.dtype(np.float64): getattr(lib, dgemm)}
    for dtype, f in funcs.items():
        real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
        f.restype = None
        f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, index, index, index, real,
                      ctypes.c_void_p, index, ctypes.c_void_p, index, real, ctypes.c_void_p, index]
    return funcs


@lru_cache(maxsize=None)
def openblas() -> Provider:
    """NumPy's own BLAS; products fall back to NumPy where its OpenBLAS is not found."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas*"))):
        ilp64 = "openblas64_" in os.path.basename(path)
        suffix, index = ("64_", ctypes.c_int64) if ilp64 else ("", ctypes.c_int32)
        try:
            lib = ctypes.CDLL(path)  # already loaded by NumPy: the same library, the same threads
            funcs = _bind(lib, f"scipy_cblas_sgemm{suffix}", f"scipy_cblas_dgemm{suffix}", index)
        except (OSError, AttributeError):
            continue
        version, threads = "", None
        try:
            get_config = getattr(lib, f"scipy_openblas_get_config{suffix}")
            get_config.restype = ctypes.c_char_p
            version = get_config().decode(errors="replace").split()[1]
        except (AttributeError, IndexError):
            pass
        try:
            threads = getattr(lib, f"scipy_openblas_get_num_threads{suffix}")
            threads.restype = ctypes.c_int
        except AttributeError:
            threads = None
        return Provider("openblas", funcs, version, matmul_plain=True, threads=threads)
    return Provider("openblas", {}, "not found: NumPy's matmul", matmul_plain=True)


def _mkl_rt_path() -> str | None:
    """libmkl_rt.so.* from the installed ``mkl`` distribution's files (None if absent)."""
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        dist = distribution("mkl")
    except (ImportError, PackageNotFoundError):
        return None
    for f in dist.files or ():
        name = os.path.basename(str(f))
        if name.startswith("libmkl_rt.so") or name in ("mkl_rt.dll", "libmkl_rt.dylib") or \
                (name.startswith("mkl_rt.") and name.endswith(".dll")):
            path = str(dist.locate_file(f))
            if os.path.exists(path):
                return os.path.realpath(path)
    return None


def mkl_missing() -> str:
    """'' when the MKL provider can be loaded, else why not (one line, with the fix)."""
    try:
        mkl()
    except BackendError as exc:
        return str(exc)
    return ""


def _threading_layer(lib_dir: str) -> str:
    """MKL_THREADING_LAYER if set, else INTEL where libiomp5 is beside MKL, else GNU, else SEQUENTIAL."""
    wanted = os.environ.get("MKL_THREADING_LAYER", "").strip().upper()
    if wanted:
        return wanted
    if glob.glob(os.path.join(lib_dir, "libiomp5.so*")) or glob.glob(os.path.join(lib_dir, "libiomp5md.dll")):
        return "INTEL"
    try:
        ctypes.CDLL("libgomp.so.1")
        return "GNU"
    except OSError:
        return "SEQUENTIAL"


@lru_cache(maxsize=None)
def mkl() -> Provider:
    """Intel MKL from the ``mkl`` wheel; raises BackendError (with the install hint) when absent."""
    path = _mkl_rt_path()
    if path is None:
        raise BackendError(f"the mkl BLAS is not installed: {MKL_HINT}, or use --blas openblas")
    lib_dir = os.path.dirname(path)
    layer = _threading_layer(lib_dir)
    # Through the environment, read when MKL initialises: calling MKL_Set_Threading_Layer instead
    # gave wrong products in a process that had loaded PyTorch (its own MKL) first.
    os.environ.setdefault("MKL_THREADING_LAYER", layer)
    os.environ.setdefault("MKL_INTERFACE_LAYER", "LP64")
    try:
        lib = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
        funcs = _bind(lib, "cblas_sgemm", "cblas_dgemm", ctypes.c_int32)
        buf = ctypes.create_string_buffer(256)
        lib.MKL_Get_Version_String(buf, 256)
        version = buf.value.decode(errors="replace")
        version = version.split("Version ")[-1].split("-Product")[0].split(" Product")[0]
        lib.MKL_Get_Max_Threads.restype = ctypes.c_int
        numpy_threads = openblas().threads()
        if numpy_threads:
            lib.MKL_Set_Num_Threads(ctypes.c_int(numpy_threads))
    except (OSError, AttributeError) as exc:
        raise BackendError(f"the mkl BLAS at {path} cannot be loaded ({exc}); reinstall it "
                           f"({MKL_HINT}) or use --blas openblas") from None
    provider = Provider("mkl", funcs, f"{version} ({layer.lower()} threading)",
                        threads=lambda: int(lib.MKL_Get_Max_Threads()))
    return provider


#: provider loaders by name (``auto`` chooses among them, see :mod:`.choice`)
PROVIDERS: dict[str, Callable[[], Provider]] = {"openblas": openblas, "mkl": mkl}


def provider(name: str) -> Provider:
    """The provider called ``name`` (``openblas`` or ``mkl``); BackendError if it cannot load."""
    try:
        load = PROVIDERS[name]
    except KeyError:
        from ...errors import ConfigError

        raise ConfigError(f"unknown BLAS {name!r}: choose one of auto, {', '.join(PROVIDERS)}") from None
    return load()
