"""EMULATION: CuPy's ElementwiseKernel and RawKernel, their CUDA bodies compiled as C++ by the system compiler."""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .device import COUNTERS, SIGNATURES, DeviceArray, EmulationUnavailable, _adopt, _device, capturing, record

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
static inline void __threadfence() {}
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
        SIGNATURES.add((self.name, _describe(values, [isinstance(a, DeviceArray) for a in ins + outs], shape)))
        run_args = (shape, values, [dtype_of(p) for p in self.params], [isinstance(a, DeviceArray) for a in ins + outs])
        if capturing():  # host scalars are baked in now, as in a CUDA graph
            if len(args) < self.nin + self.nout:
                raise RuntimeError("EMULATION: an output allocated during CUDA-graph capture")
            self._compiled_for(*run_args)
            record(self.name, lambda: self._run(*run_args))
        else:
            COUNTERS.launch(self.name)
            if int(np.prod(shape)) > 0:
                self._run(*run_args)
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

    def _compiled_for(self, shape, values, dtypes, is_array) -> Any:
        ndim = len(shape)
        key = (ndim, tuple(dtypes), tuple(is_array))
        fn = self._compiled.get(key)
        if fn is None:
            types = {p.ctype: d for p, d in zip(self.params, dtypes) if p.placeholder}
            fn = getattr(_compile(self._source(ndim, dtypes, is_array, types)), f"nnxp_emulated_{self.name}")
            fn.restype = None
            self._compiled[key] = fn
        return fn

    def _run(self, shape, values, dtypes, is_array) -> None:
        ndim = len(shape)
        fn = self._compiled_for(shape, values, dtypes, is_array)
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


class _ThreadOrder:
    """The order RawKernel threads run in: in index order, or shuffled (``rng`` set) as a GPU may
    schedule them, so that a result depending on the order of atomic adds shows it."""

    rng: np.random.Generator | None = None

    def shuffle(self, seed: int | None) -> None:
        """Shuffle every later launch's threads with this seed (None: index order again)."""
        self.rng = None if seed is None else np.random.default_rng(seed)


THREAD_ORDER = _ThreadOrder()

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
        if self._fn is None:
            self._fn = getattr(_compile(self._source()), f"nnxp_launch_{self.name}")
            self._fn.restype = None
        fn, dims = self._fn, [ctypes.c_uint(v) for v in grid + block]
        total = int(np.prod(grid)) * int(np.prod(block))

        def launch() -> None:
            order = None if THREAD_ORDER.rng is None else THREAD_ORDER.rng.permutation(total).astype(np.uint64)
            fn(pointers, *dims, ctypes.c_void_p(None if order is None else order.ctypes.data))

        if capturing():  # the holders (scalars baked in now) live as long as the graph
            record(self.name, lambda: (holders, launch()))
            return
        COUNTERS.launch(self.name)
        launch()

    def _source(self) -> str:
        call = ", ".join(
            f"*({ctype}{'*' if pointer else ''}*)args[{k}]" for k, (ctype, pointer) in enumerate(self.param_types))
        return _PRELUDE + self.code + f"""
extern "C" void nnxp_launch_{self.name}(void** args, unsigned gx, unsigned gy, unsigned gz,
                                        unsigned bx, unsigned by, unsigned bz, const unsigned long long* order) {{
  gridDim = {{gx, gy, gz}}; blockDim = {{bx, by, bz}};
  unsigned long long threads = (unsigned long long)bx * by * bz, total = threads * gx * gy * gz;
  for (unsigned long long t = 0; t < total; ++t) {{  /* in order, or in the order given */
    unsigned long long n = order ? order[t] : t, in_block = n % threads, block = n / threads;
    threadIdx = {{(unsigned)(in_block % bx), (unsigned)(in_block / bx % by), (unsigned)(in_block / bx / by)}};
    blockIdx = {{(unsigned)(block % gx), (unsigned)(block / gx % gy), (unsigned)(block / gx / gy)}};
    {self.name}({call});
  }}
}}
"""


