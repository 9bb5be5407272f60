"""EMULATION: device arrays (NumPy memory standing for GPU memory) and the counters of what a GPU would do."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from nnxp.backend import EMULATED_CUPY, Backend

class EmulationUnavailable(RuntimeError):
    """No C++ compiler: the emulation cannot run (tests skip with this reason)."""


# -- counting ----------------------------------------------------------------------


@dataclass
class Counters:
    """What a GPU would have done: kernel launches, device allocations, host reads."""

    launches: int = 0
    allocations: int = 0
    host_reads: int = 0
    host_writes: int = 0
    untracked: int = 0
    graph_nodes: int = 0  # launches run by CUDA-graph replays (each replay is one launch)
    by_name: Counter = field(default_factory=Counter)

    def reset(self) -> None:
        self.launches = self.allocations = self.host_reads = self.host_writes = self.untracked = 0
        self.graph_nodes = 0
        self.by_name.clear()

    def launch(self, name: str) -> None:
        self.launches += 1
        self.by_name[name] += 1

    def snapshot(self) -> dict[str, Any]:
        return {"launches": self.launches, "allocations": self.allocations, "host_reads": self.host_reads,
                "host_writes": self.host_writes, "untracked": self.untracked, "graph_nodes": self.graph_nodes,
                "by_name": dict(self.by_name)}


COUNTERS = Counters()

#: Every ElementwiseKernel call seen, as (name, argument descriptions): an array is
#: ("array", dtype, ndim, c_contiguous) after CuPy's broadcasting and dimension
#: reduction (all contiguous operands of one shape become 1-D; otherwise the broadcast
#: dimensions stay), a scalar ("scalar", dtype) after the cast to its parameter's type.
#: tests/test_cupy_kernels.py compiles kernels for exactly these descriptions.
SIGNATURES: set[tuple[str, tuple]] = set()


# -- device arrays ------------------------------------------------------------------


# -- CUDA-graph capture ----------------------------------------------------------------

_capture: list[tuple[str, Callable[[], None]]] | None = None
_capture_stream: int | None = None  # the pointer of the stream that captures


def capturing() -> bool:
    """Whether a stream is capturing: launches are then recorded, not run."""
    return _capture is not None


def record(name: str, run: Callable[[], None]) -> None:
    """Record a launch into the graph being captured."""
    _capture.append((name, run))


def capture_stream() -> int | None:
    """The pointer of the stream that captures (None when none does)."""
    return _capture_stream


def begin_capture(stream_ptr: int) -> None:
    global _capture, _capture_stream
    if _capture is not None:
        raise RuntimeError("EMULATION: a capture is already under way")
    _capture, _capture_stream = [], stream_ptr


def end_capture() -> list[tuple[str, Callable[[], None]]]:
    global _capture, _capture_stream
    nodes, _capture, _capture_stream = _capture, None, None
    return nodes


# What CuPy raises in capture (cupy_backends/cuda/libs/cublas.pyx setStream; cupy/cuda/memory.pyx).
CUBLAS_IN_CAPTURE = "calling cuBLAS API during stream capture is currently unsupported"
H2D_IN_CAPTURE = "the current stream is capturing, so H2D transfers are disallowed"
D2H_IN_CAPTURE = "the current stream is capturing, so D2H transfers are disallowed"
SYNC_IN_CAPTURE = "cudaErrorStreamCaptureUnsupported: operation not permitted when stream is capturing"


def refuse_cublas_in_capture() -> None:
    """CuPy's cuBLAS wrappers (raw bindings, ``matmul``, ``dot``) refuse while a stream captures."""
    if _capture is not None:
        raise NotImplementedError(CUBLAS_IN_CAPTURE)


def _refuse_in_capture(what: str) -> None:
    if _capture is not None:
        raise RuntimeError(f"EMULATION: {what} during CUDA-graph capture (stricter than CuPy, which allows it: "
                           "memory the pool gives out then may be reused while the graph runs, cupy issue 9655)")


def _plain(x: Any) -> Any:
    return x.view(np.ndarray) if isinstance(x, DeviceArray) else x


def _device(x: Any, allocated: bool) -> Any:
    if isinstance(x, np.ndarray) and not isinstance(x, DeviceArray):
        if allocated:
            _refuse_in_capture("an allocation")
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
        _refuse_in_capture(f"numpy.{ufunc.__name__} on device arrays")
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
        _refuse_in_capture(f"numpy.{func.__name__} on device arrays")
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
        if _capture is not None:  # a device-to-host copy and a sync: CuPy refuses them in capture
            raise RuntimeError(D2H_IN_CAPTURE)
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

    def set(self, host: Any) -> None:
        """Copy host data in, as ``cupy.ndarray.set`` (a host-to-device copy)."""
        if not isinstance(host, np.ndarray) or host.shape != self.shape or host.dtype != self.dtype:
            raise TypeError("EMULATION: set() takes a NumPy array of the same shape and dtype (as CuPy)")
        if _capture is not None:  # a pageable host-to-device copy: CuPy refuses it in capture
            raise RuntimeError(H2D_IN_CAPTURE)
        COUNTERS.host_writes += 1
        np.copyto(self.view(np.ndarray), host)

    @staticmethod
    def __nnxp_backend__() -> Any:
        """The backend these arrays belong to (nnxp.backend.backend_of asks)."""
        import array_api_compat.numpy as xp_numpy

        return EmulatedBackend(xp_numpy, "cpu", EMULATED_CUPY)

    def get(self) -> np.ndarray:
        """The host copy, as ``cupy.ndarray.get()``."""
        if _capture is not None:
            raise RuntimeError(D2H_IN_CAPTURE)
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


class EmulatedBackend(Backend):
    """NumPy's namespace on the CPU, its arrays :class:`DeviceArray`; ``kernels.ops_for`` gives it
    CuPy's executor running on this EMULATION."""

    __slots__ = ()

    @property
    def cupy_module(self) -> Any:
        """The stand-in ``cupy`` module that ``nnxp.kernels.ops_for`` gives to ``CuPyOps``."""
        from .runtime import cupy

        return cupy

    def asarray(self, data: Any, dtype: Any, *, copy: bool = False) -> Any:
        return _on_device(super().asarray(data, dtype, copy=copy))

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return _on_device(super().zeros(shape, dtype))


def _on_device(x: Any) -> Any:
    return x if isinstance(x, DeviceArray) else to_device(x)
