"""EMULATION of the CuPy subset nnxp uses, on the CPU: it proves arithmetic and plumbing, never speed.

No GPU is available to this project, so the CuPy fast path
(:class:`nnxp.kernels.cupy.CuPyOps`) is run in CI against this stand-in for the
``cupy`` module.  What is emulated, and how:

- ``ElementwiseKernel(in_params, out_params, operation, name)``: the
  operation (CUDA C++) is compiled *as C++* by the system compiler (``g++``
  or ``$CXX``) inside a loop written like CuPy's generated one: inputs bound as
  ``const T &b``, outputs as ``T &z``, the loop index ``i``, ``typedef`` for the
  placeholder ``T``.  Calls follow CuPy's rules: the number of arguments
  (inputs, or inputs and outputs), arrays of one library (a NumPy array is
  adopted but counted as
  ``untracked``: CuPy would refuse it), ``T`` bound by the array arguments (a mismatch is
  a ``TypeError``), typed array parameters needing that exact dtype, Python
  scalars cast to the parameter's type (``T`` or ``float64``...), broadcasting
  of every non-raw array, outputs of exactly the broadcast shape, missing
  outputs allocated.
- ``RawKernel(code, name)``: compiled as C++ with ``threadIdx``/``blockIdx``
  set by a serial loop over the grid and block; ``atomicAdd`` is a plain add
  (the loop is serial).  Kernels using ``__shared__`` or ``__syncthreads``
  are refused: a serial loop would not emulate them.  Arguments follow CuPy:
  arrays as pointers, Python ``float`` as ``double``, ``int`` as ``long long``,
  NumPy scalars as their dtype; a scalar whose type differs from the kernel's
  declared parameter type raises ``TypeError`` (on a GPU it is silently
  misread).
- ``matmul``, ``sum``, ``take``, ``empty``, ``zeros``, ``asarray``: by NumPy.

Arrays are :class:`DeviceArray` (an ``ndarray`` subclass standing for device
memory).  :data:`COUNTERS` counts kernel launches (one per ``ElementwiseKernel``
/ ``RawKernel`` call, per ``matmul``/``sum``/``take``, and per NumPy operation
run on device arrays by the generic code), allocations of device arrays, host
reads (``float(x)``, ``int(x)``, ``bool(x)``), and arrays that met a
device array without having been created as one (``untracked``).  Not emulated:
timing, streams, memory pools, denormal flushing (``-ftz=true``), fused
multiply-add contraction, thread-order effects of atomics.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["COUNTERS", "DeviceArray", "ElementwiseKernel", "RawKernel", "compiler", "cupy",
           "EmulationUnavailable"]


class EmulationUnavailable(RuntimeError):
    """No C++ compiler: the emulation cannot run (tests skip with this reason)."""


# -- counting ----------------------------------------------------------------------


@dataclass
class Counters:
    """What a GPU would have done: kernel launches, device allocations, host reads."""

    launches: int = 0
    allocations: int = 0
    host_reads: int = 0
    untracked: int = 0
    by_name: Counter = field(default_factory=Counter)

    def reset(self) -> None:
        self.launches = self.allocations = self.host_reads = self.untracked = 0
        self.by_name.clear()

    def launch(self, name: str) -> None:
        self.launches += 1
        self.by_name[name] += 1

    def snapshot(self) -> dict[str, Any]:
        return {"launches": self.launches, "allocations": self.allocations,
                "host_reads": self.host_reads, "untracked": self.untracked,
                "by_name": dict(self.by_name)}


COUNTERS = Counters()

#: Every ElementwiseKernel call seen, as (name, argument descriptions): an array is
#: ("array", dtype, ndim, c_contiguous) after CuPy's broadcasting and dimension
#: reduction (all contiguous operands of one shape become 1-D; otherwise the broadcast
#: dimensions stay), a scalar ("scalar", dtype) after the cast to its parameter's type.
#: tests/test_cupy_kernels.py compiles kernels for exactly these descriptions.
SIGNATURES: set[tuple[str, tuple]] = set()


# -- device arrays ------------------------------------------------------------------


def _plain(x: Any) -> Any:
    return x.view(np.ndarray) if isinstance(x, DeviceArray) else x


def _device(x: Any, allocated: bool) -> Any:
    if isinstance(x, np.ndarray) and not isinstance(x, DeviceArray):
        if allocated:
            COUNTERS.allocations += 1
        return x.view(DeviceArray)
    if isinstance(x, tuple):
        return tuple(_device(v, allocated) for v in x)
    return x


def _note_untracked(values: Any) -> None:
    for v in values:
        if isinstance(v, np.ndarray) and not isinstance(v, DeviceArray) and v.ndim > 0:
            COUNTERS.untracked += 1


def _adopt(args: tuple) -> tuple:
    """Plain NumPy arrays given where device arrays belong, as device arrays, counted as ``untracked``.

    CuPy would refuse a NumPy array (``TypeError: Unsupported type``).  Here one
    is usually a device array that lost its type inside a NumPy-based helper
    (array-api-compat's ``asarray(x, copy=True)`` returns a plain ``ndarray``),
    so it is adopted and counted; tests that care assert ``untracked == 0``.
    """
    _note_untracked(args)
    return tuple(a.view(DeviceArray) if isinstance(a, np.ndarray) and not isinstance(a, DeviceArray) else a
                 for a in args)


def _owns_data(result: Any, inputs: list[Any]) -> bool:
    """Whether ``result`` is new memory (not a view of an input)."""
    if not isinstance(result, np.ndarray):
        return False
    return not any(isinstance(a, np.ndarray) and np.may_share_memory(result, a) for a in inputs)


class DeviceArray(np.ndarray):
    """EMULATION: an array standing for GPU memory; every NumPy operation on it is one counted launch."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.get("out")
        _note_untracked(inputs)
        args = [_plain(a) for a in inputs]
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        COUNTERS.launch(f"numpy.{ufunc.__name__}.{method}" if method != "__call__" else f"numpy.{ufunc.__name__}")
        result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        if isinstance(result, tuple):
            return tuple(_device(_zero_d(r), True) for r in result)
        return _device(_zero_d(result), True)

    def __array_function__(self, func, types, args, kwargs):
        flat = list(args) + list(kwargs.values())
        _note_untracked(flat)
        plain_args = [_plain_tree(a) for a in args]
        plain_kwargs = {k: _plain_tree(v) for k, v in kwargs.items()}
        result = _zero_d(func(*plain_args, **plain_kwargs))
        inputs = [_plain(a) for a in _leaves(flat)]
        new = isinstance(result, np.ndarray) and _owns_data(result, inputs)
        if new or not isinstance(result, np.ndarray):
            COUNTERS.launch(f"numpy.{func.__name__}")
        if "out" in kwargs and kwargs["out"] is not None:
            return kwargs["out"]
        return _device(result, new) if isinstance(result, np.ndarray) else result

    def __getitem__(self, key):
        result = super().__getitem__(key)
        if isinstance(result, np.generic):  # CuPy gives a 0-d device array (a view), not a host scalar
            return super().__getitem__((key if isinstance(key, tuple) else (key,)) + (Ellipsis,))
        if isinstance(result, np.ndarray) and not np.may_share_memory(result.view(np.ndarray), self.view(np.ndarray)):
            COUNTERS.launch("numpy.gather")  # fancy indexing: a gather kernel and a new array
            COUNTERS.allocations += 1
        return result

    def astype(self, dtype, *args, **kwargs):
        copy = kwargs.get("copy", True)
        if not copy and np.dtype(dtype) == self.dtype:
            return self
        COUNTERS.launch("numpy.astype")
        COUNTERS.allocations += 1
        return np.ndarray.astype(self.view(np.ndarray), dtype, *args, **kwargs).view(DeviceArray)

    def copy(self, order="C"):
        COUNTERS.launch("numpy.copy")
        COUNTERS.allocations += 1
        return np.ndarray.copy(self.view(np.ndarray), order).view(DeviceArray)

    def _host_read(self, convert):
        COUNTERS.host_reads += 1
        return convert(self.view(np.ndarray))

    def __float__(self):
        return self._host_read(float)

    def __int__(self):
        return self._host_read(int)

    def __bool__(self):
        return self._host_read(bool)

    def __index__(self):
        return self._host_read(lambda a: a.__index__())

    def get(self) -> np.ndarray:
        """The host copy, as ``cupy.ndarray.get()``."""
        COUNTERS.host_reads += 1
        return np.array(self.view(np.ndarray))


def _zero_d(x: Any) -> Any:
    """A NumPy scalar result as a 0-d array (CuPy returns 0-d device arrays, never host scalars)."""
    return np.asarray(x) if isinstance(x, np.generic) else x


def _leaves(values):
    for v in values:
        if isinstance(v, (list, tuple)):
            yield from _leaves(v)
        else:
            yield v


def _plain_tree(v):
    if isinstance(v, (list, tuple)):
        return type(v)(_plain_tree(x) for x in v)
    return _plain(v)


def to_device(x: Any) -> DeviceArray:
    """A copy of host data as a device array (a transfer: counted as one allocation)."""
    COUNTERS.allocations += 1
    return np.array(x, copy=True).view(DeviceArray)


# -- the C++ compiler -----------------------------------------------------------------

_C_TYPES = {"float64": "double", "float32": "float", "bool": "bool", "int64": "long long",
            "int32": "int", "uint8": "unsigned char", "int8": "signed char", "uint32": "unsigned int",
            "uint64": "unsigned long long", "int16": "short", "uint16": "unsigned short"}
_DTYPES_BY_C = {v: k for k, v in _C_TYPES.items()}
_DTYPES_BY_C.update({"long": "int64", "unsigned long": "uint64", "size_t": "uint64", "ptrdiff_t": "int64"})

# What CUDA device code has and C++ needs told: qualifiers, the thread indices, atomics.
_PRELUDE = r"""
#include <math.h>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <algorithm>
using std::max; using std::min; using std::isnan; using std::isinf; using std::isfinite;
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__
struct nnxp_dim3 { unsigned int x, y, z; };
static nnxp_dim3 threadIdx, blockIdx, blockDim, gridDim;
template <typename T> static inline T atomicAdd(T* address, T value) { T old = *address; *address += value; return old; }
"""

_lock = threading.Lock()
_libraries: dict[str, ctypes.CDLL] = {}


def compiler() -> str:
    """The C++ compiler the emulation uses; :class:`EmulationUnavailable` if there is none."""
    for candidate in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    raise EmulationUnavailable("no C++ compiler (g++, c++ or clang++; or set CXX): apt-get install g++")


def _cache_dir() -> str:
    path = os.path.join(tempfile.gettempdir(), f"nnxp-cupy-emulation-{os.getuid()}")
    os.makedirs(path, exist_ok=True)
    return path


def _compile(source: str) -> ctypes.CDLL:
    """Compile ``source`` to a shared library (cached by its hash) and load it."""
    cxx = compiler()
    flags = ["-O1", "-std=c++17", "-shared", "-fPIC", "-fno-fast-math"]
    key = hashlib.sha256((cxx + " ".join(flags) + source).encode()).hexdigest()[:24]
    with _lock:
        if key in _libraries:
            return _libraries[key]
        path = os.path.join(_cache_dir(), f"k{key}.so")
        if not os.path.exists(path):
            src = os.path.join(_cache_dir(), f"k{key}.{os.getpid()}.cpp")
            with open(src, "w") as f:
                f.write(source)
            tmp = f"{path}.{os.getpid()}.tmp"
            done = subprocess.run([cxx, *flags, src, "-o", tmp], capture_output=True, text=True,
                                  env={**os.environ, "LC_ALL": "C"})
            os.unlink(src)
            if done.returncode != 0:
                raise CompileException(done.stderr, source)
            os.replace(tmp, path)
        lib = ctypes.CDLL(path)
        _libraries[key] = lib
        return lib


class CompileException(Exception):
    """The kernel does not compile (as ``cupy.cuda.compiler.CompileException``)."""

    def __init__(self, log: str, source: str) -> None:
        super().__init__(f"EMULATION: the kernel does not compile as C++:\n{log}")
        self.source = source


# -- ElementwiseKernel ------------------------------------------------------------------


@dataclass(frozen=True)
class _Param:
    name: str
    ctype: str          # "T" (a placeholder) or a dtype name
    is_const: bool

    @property
    def placeholder(self) -> bool:
        return len(self.ctype) == 1


def _params(text: str, is_const: bool) -> tuple[_Param, ...]:
    out = []
    for part in text.split(","):
        words = part.split()
        if not words:
            continue
        if len(words) != 2:
            raise NotImplementedError(f"EMULATION: parameter {part.strip()!r} (raw and other keywords are not emulated)")
        ctype, name = words
        if len(ctype) != 1:
            ctype = np.dtype(ctype).name
        out.append(_Param(name, ctype, is_const))
    return tuple(out)


class ElementwiseKernel:
    """EMULATION of ``cupy.ElementwiseKernel``: the body compiled as C++ and run over NumPy buffers."""

    def __init__(self, in_params: str, out_params: str, operation: str, name: str = "kernel",
                 reduce_dims: bool = True, preamble: str = "", no_return: bool = False,
                 return_tuple: bool = False, **kwargs: Any) -> None:
        self.in_params = _params(in_params, True)
        self.out_params = _params(out_params, False)
        self.params = self.in_params + self.out_params
        if "i" in {p.name for p in self.params}:
            raise ValueError("Can not use 'i' as a parameter name")
        self.nin, self.nout = len(self.in_params), len(self.out_params)
        self.operation, self.name, self.preamble = operation, name, preamble
        self.no_return, self.return_tuple = no_return, return_tuple
        self._compiled: dict[tuple, Any] = {}

    def __call__(self, *args: Any, size: int | None = None, block_size: int = 128, stream: Any = None) -> Any:
        if len(args) not in (self.nin, self.nin + self.nout):
            raise TypeError(f"Wrong number of arguments for {self.name!r}. It must be either {self.nin} or "
                            f"{self.nin + self.nout} (with outputs), but given {len(args)}.")
        if size is not None:
            raise NotImplementedError("EMULATION: size= (raw arrays) is not emulated")
        args = _adopt(args)
        ins, outs = list(args[: self.nin]), list(args[self.nin:])
        types: dict[str, np.dtype] = {}
        for p, a in list(zip(self.out_params, outs)) + list(zip(self.in_params, ins)):
            if not isinstance(a, DeviceArray):
                if p in self.out_params:
                    raise TypeError("Output arguments must be cupy.ndarray")
                continue
            if not p.placeholder:
                if a.dtype != np.dtype(p.ctype):
                    raise TypeError(f"Type is mismatched. {p.name} {a.dtype} {p.ctype}")
            elif p.ctype in types and types[p.ctype] != a.dtype:
                raise TypeError(f"Type is mismatched. {p.name} {a.dtype} {types[p.ctype]} {p.ctype}")
            else:
                types[p.ctype] = a.dtype
        arrays = [a for a in ins + outs if isinstance(a, DeviceArray)]
        if not arrays:
            raise ValueError("Loop size is undecided.")
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        for p, a in zip(self.out_params, outs):
            if a.shape != shape:
                raise ValueError("Out shape is mismatched")

        def dtype_of(p: _Param) -> np.dtype:
            if p.placeholder:
                if p.ctype not in types:
                    raise TypeError(f"EMULATION: the type of {p.ctype} is undecided (no array binds it)")
                return types[p.ctype]
            return np.dtype(p.ctype)

        for p in self.out_params[len(outs):]:
            outs.append(_device(np.empty(shape, dtype=dtype_of(p)), True))
        values = []
        for p, a in zip(self.params, ins + outs):
            if isinstance(a, DeviceArray):
                values.append(np.broadcast_to(a.view(np.ndarray), shape) if p.is_const else a.view(np.ndarray))
            else:
                values.append(np.asarray(a).astype(dtype_of(p)))  # CScalar.apply_dtype
        COUNTERS.launch(self.name)
        SIGNATURES.add((self.name, _describe(values, [isinstance(a, DeviceArray) for a in ins + outs], shape)))
        if int(np.prod(shape)) > 0:
            self._run(shape, values, [dtype_of(p) for p in self.params], [isinstance(a, DeviceArray) for a in ins + outs])
        if self.no_return:
            return None
        if self.nout == 1 and not self.return_tuple:
            return outs[0]
        return tuple(outs)

    def _source(self, ndim: int, dtypes: list[np.dtype], is_array: list[bool], types: dict[str, np.dtype]) -> str:
        fn = f"nnxp_emulated_{self.name}"
        typedefs = "".join(f"typedef {_C_TYPES[d.name]} {k};\n" for k, d in sorted(types.items()))
        bind = []
        for k, (p, d, arr) in enumerate(zip(self.params, dtypes, is_array)):
            ctype = p.ctype if p.placeholder else _C_TYPES[d.name]
            if arr:
                bind.append(f"{'const ' if p.is_const else ''}{ctype} &{p.name} = "
                            f"*({'const ' if p.is_const else ''}{ctype}*)(data[{k}] + off[{k}]);")
            else:
                bind.append(f"const {ctype} {p.name} = *(const {ctype}*)data[{k}];")
        n = len(self.params)
        return (_PRELUDE + typedefs + self.preamble + f"""
extern "C" void {fn}(char** data, const long long* strides, const long long* shape, long long size) {{
  for (ptrdiff_t i = 0; i < size; ++i) {{
    long long off[{n}] = {{0}};
    long long rest = i;
    for (int d = {ndim} - 1; d >= 0; --d) {{
      long long idx = rest % shape[d]; rest /= shape[d];
      for (int k = 0; k < {n}; ++k) off[k] += idx * strides[k * {max(ndim, 1)} + d];
    }}
    {chr(10).join(bind)}
    {self.operation};
  }}
}}
""")

    def _run(self, shape, values, dtypes, is_array) -> None:
        ndim = len(shape)
        key = (ndim, tuple(dtypes), tuple(is_array))
        fn = self._compiled.get(key)
        if fn is None:
            types = {p.ctype: d for p, d in zip(self.params, dtypes) if p.placeholder}
            fn = getattr(_compile(self._source(ndim, dtypes, is_array, types)), f"nnxp_emulated_{self.name}")
            fn.restype = None
            self._compiled[key] = fn
        n = len(values)
        data = (ctypes.c_void_p * n)(*[v.ctypes.data for v in values])
        width = max(ndim, 1)
        strides = np.zeros((n, width), dtype=np.int64)
        for k, (v, arr) in enumerate(zip(values, is_array)):
            if arr and ndim:
                strides[k, :] = v.strides
        shp = np.array(shape or (1,), dtype=np.int64)
        fn(data, strides.ctypes.data_as(ctypes.c_void_p), shp.ctypes.data_as(ctypes.c_void_p),
           ctypes.c_longlong(int(np.prod(shape))))


def _describe(values: list[np.ndarray], is_array: list[bool], shape: tuple[int, ...]) -> tuple:
    arrays = [v for v, arr in zip(values, is_array) if arr]
    reduced = len(shape) > 1 and all(v.flags.c_contiguous for v in arrays)
    return tuple(
        ("array", v.dtype.name, 1 if reduced else len(shape), True if reduced else bool(v.flags.c_contiguous))
        if arr else ("scalar", v.dtype.name) for v, arr in zip(values, is_array))


# -- RawKernel ---------------------------------------------------------------------------

_SIGNATURE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)


class RawKernel:
    """EMULATION of ``cupy.RawKernel``: the CUDA source compiled as C++, the grid run serially."""

    def __init__(self, code: str, name: str, options: tuple = (), **kwargs: Any) -> None:
        if "__shared__" in code or "__syncthreads" in code or "__shfl" in code:
            raise NotImplementedError("EMULATION: shared memory, __syncthreads and warp shuffles are not emulated")
        self.code, self.name = code, name
        self._fn = None
        signatures = {m.group(1): m.group(2) for m in _SIGNATURE.finditer(code)}
        if name not in signatures:
            raise ValueError(f"EMULATION: no extern \"C\" __global__ void {name}(...) in the source")
        typedefs = {alias: ctype.strip() for ctype, alias in re.findall(r"typedef\s+([\w ]+?)\s+(\w+)\s*;", code)}
        self.param_types = []
        for part in signatures[name].split(","):
            words = part.replace("*", " * ").split()
            words = [w for w in words if w not in ("const", "__restrict__")]
            pointer = "*" in words
            ctype = " ".join(w for w in words[:-1] if w != "*")
            self.param_types.append((typedefs.get(ctype, ctype), pointer))

    def __call__(self, grid: tuple, block: tuple, args: tuple, shared_mem: int = 0, stream: Any = None) -> None:
        grid = tuple(grid) + (1,) * (3 - len(tuple(grid)))
        block = tuple(block) + (1,) * (3 - len(tuple(block)))
        if len(args) != len(self.param_types):
            raise TypeError(f"EMULATION: {self.name} takes {len(self.param_types)} arguments, given {len(args)}")
        holders = []
        for k, ((ctype, pointer), a) in enumerate(zip(self.param_types, args)):
            if pointer:
                if not isinstance(a, DeviceArray):
                    raise TypeError(f"EMULATION: argument {k} of {self.name} must be a device array, got {type(a).__name__}")
                if ctype in _DTYPES_BY_C and a.dtype != np.dtype(_DTYPES_BY_C[ctype]):
                    raise TypeError(f"EMULATION: argument {k} of {self.name} is {a.dtype}, the kernel reads {ctype}")
                holders.append(ctypes.c_void_p(a.ctypes.data))
            else:
                if isinstance(a, np.ndarray):
                    raise TypeError(f"EMULATION: argument {k} of {self.name} is an array, the kernel takes {ctype}")
                dtype = np.asarray(a).dtype if isinstance(a, np.generic) else (
                    np.dtype("bool") if isinstance(a, bool) else
                    np.dtype("int64") if isinstance(a, int) else np.dtype("float64"))
                if _DTYPES_BY_C.get(ctype) != dtype.name:
                    raise TypeError(f"EMULATION: argument {k} of {self.name} is passed as {dtype.name} but the "
                                    f"kernel declares {ctype} (on a GPU it would be misread)")
                holders.append(np.array(a, dtype=dtype))
        pointers = (ctypes.c_void_p * len(holders))(*[
            ctypes.addressof(h) if isinstance(h, ctypes.c_void_p) else h.ctypes.data for h in holders])
        COUNTERS.launch(self.name)
        if self._fn is None:
            self._fn = getattr(_compile(self._source()), f"nnxp_launch_{self.name}")
            self._fn.restype = None
        self._fn(pointers, *(ctypes.c_uint(v) for v in grid + block))

    def _source(self) -> str:
        call = ", ".join(
            f"*({ctype}{'*' if pointer else ''}*)args[{k}]" for k, (ctype, pointer) in enumerate(self.param_types))
        return _PRELUDE + self.code + f"""
extern "C" void nnxp_launch_{self.name}(void** args, unsigned gx, unsigned gy, unsigned gz,
                                        unsigned bx, unsigned by, unsigned bz) {{
  gridDim = {{gx, gy, gz}}; blockDim = {{bx, by, bz}};
  for (unsigned z = 0; z < gz; ++z) for (unsigned y = 0; y < gy; ++y) for (unsigned x = 0; x < gx; ++x)
    for (unsigned tz = 0; tz < bz; ++tz) for (unsigned ty = 0; ty < by; ++ty) for (unsigned tx = 0; tx < bx; ++tx) {{
      blockIdx = {{x, y, z}}; threadIdx = {{tx, ty, tz}};
      {self.name}({call});
    }}
}}
"""


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
        COUNTERS.launch(f"cupy.{name}")
        if out is None:
            return self._alloc(fn(*(_plain(a) for a in args)))
        if not isinstance(out, DeviceArray):
            raise TypeError("Output arguments must be cupy.ndarray")
        fn(*(_plain(a) for a in args), out=_plain(out))
        return out

    def matmul(self, a, b, out=None):
        return self._op("matmul", np.matmul, (a, b), out)

    def sum(self, a, axis=None, out=None):
        return self._op("sum", lambda x, out=None: np.sum(x, axis=axis, out=out), (a,), out)

    def take(self, a, indices, axis=None, out=None):
        return self._op("take", lambda x, i, out=None: np.take(x, i, axis=axis, out=out), (a, indices), out)


cupy = _EmulatedCuPy()
