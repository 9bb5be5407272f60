"""Where arrays live: choosing an array library and device, and moving arrays.

A :class:`Backend` is the pair ``(xp, device)``: ``xp`` is the Array-API
namespace (always the ``array_api_compat`` wrapper, never bare ``numpy`` or
``cupy``) and ``device`` the device object that library uses.  All of nnxp's
numeric code is written once against ``xp``; the backend only decides where it
runs.

``get_backend("cpu")`` gives NumPy, ``get_backend("cuda")`` CuPy on the
current GPU, ``"cuda:N"`` GPU N and ``"auto"`` CUDA when CuPy sees a GPU, else
the CPU.  An array library module (``numpy``, ``cupy``, ``array_api_strict``,
``torch``) or an array also names a backend.

NumPy is imported here only to move data between the host and the device.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from .errors import BackendError, ConfigError

__all__ = ["Backend", "get_backend", "backend_of", "cuda_available", "cupy_self_test", "DTYPES"]

#: The name of the CPU EMULATION of the CuPy backend (tests only: proves arithmetic, not speed).
EMULATED_CUPY = "cupy-emulated"

#: Floating-point dtypes a network may use, by name.
DTYPES = ("float32", "float64")

_CUDA_INSTALL_HINT = (
    "pip install 'nnxp[cuda12]' (CUDA 12) or 'nnxp[cuda13]' (CUDA 13)"
)


@dataclass(frozen=True)
class Backend:
    """An array namespace and a device on it.

    Attributes
    ----------
    xp : the Array-API (``array_api_compat``) namespace.
    device : the device arrays are created on (``"cpu"`` for NumPy,
        ``cupy.cuda.Device`` for CuPy, ``torch.device``, ...).
    name : the library's name: ``"numpy"``, ``"cupy"``, ``"torch"``,
        ``"array_api_strict"``.
    """

    xp: Any
    device: Any
    name: str

    def __str__(self) -> str:
        return f"{self.name} on {_device_label(self)}"

    def __hash__(self) -> int:  # cupy.cuda.Device is unhashable; its str names it
        return hash((self.name, id(self.xp), str(self.device)))

    # -- dtypes -----------------------------------------------------------
    def dtype(self, name: str) -> Any:
        """The namespace's floating dtype called ``name`` ("float32" or "float64").

        Raises a clear error if the device cannot hold it (an MPS-like device
        without float64, for example).
        """
        if name not in DTYPES:
            raise ConfigError(
                f"unknown dtype {name!r}: choose one of {', '.join(DTYPES)}"
            )
        if not self.supports(name):
            raise BackendError(
                f"{self} has no {name}: use dtype='float32' or another device"
            )
        return getattr(self.xp, name)

    def supports(self, dtype_name: str) -> bool:
        """Whether this device can hold arrays of ``dtype_name`` ("float64", "int64", ...)."""
        try:
            info = self.xp.__array_namespace_info__()
            return dtype_name in info.dtypes(device=self.device)
        except (AttributeError, TypeError):  # a namespace without the inspection API
            return True

    # -- creating and moving arrays ----------------------------------------
    def asarray(self, data: Any, dtype: Any, *, copy: bool = False) -> Any:
        """``data`` as an array of ``dtype`` on this backend's device.

        Arrays already here are cast if needed (not copied when they match,
        unless ``copy``); host data (NumPy arrays, lists, scalars) is copied
        to the device once; arrays of another library are brought over
        through the host.  This is an explicit transfer, meant for API
        boundaries, never for inner loops.  Use ``copy=True`` for arrays that
        will be updated in place, so they never alias the caller's data.
        """
        if array_api_compat.is_array_api_obj(data) and not isinstance(data, np.ndarray):
            if self.owns(data):
                if data.dtype != dtype:
                    return self.xp.astype(data, dtype)  # astype copies
                return self.xp.asarray(data, copy=True) if copy else data
            data = to_numpy(data)
        with self.context():  # CuPy creates on the current GPU whatever device= says (compat issue 337)
            out = self.xp.asarray(data, dtype=dtype, device=self.device, copy=True if copy else None)
        return self._emulated_device(out)

    @property
    def index_dtype(self) -> Any:
        """The integer dtype for indices and counts on this device (int64, or int32 where that is all)."""
        return index_dtype(self.xp, self.device)

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> Any:
        with self.context():
            return self._emulated_device(self.xp.zeros(shape, dtype=dtype, device=self.device))

    def _emulated_device(self, x: Any) -> Any:
        """``x`` as the CuPy EMULATION's device array on the ``cupy-emulated`` backend (else ``x``)."""
        if self.name != EMULATED_CUPY or isinstance(x, _emulation().DeviceArray):
            return x
        return _emulation().to_device(x)

    def owns(self, x: Any) -> bool:
        """Whether ``x`` is an array of this namespace on this device."""
        try:
            same_library = array_api_compat.array_namespace(x) is self.xp
        except TypeError:
            return False
        return same_library and _same_device(array_api_compat.device(x), self.device)

    def to_numpy(self, x: Any) -> np.ndarray:
        """Copy ``x`` to a NumPy array on the host (a synchronising transfer)."""
        return to_numpy(x)

    def context(self) -> Any:
        """A ``with`` block in which this device is the current one.

        CuPy launches kernels and allocates on its *current* GPU, not on the
        GPU of the arrays; for ``cuda:N`` with N > 0 work must run inside this.
        Other libraries follow their arrays' device, so this does nothing there.
        """
        if self.name == "cupy":
            return self.device  # cupy.cuda.Device is a context manager
        return contextlib.nullcontext()

    def synchronize(self) -> None:
        """Wait for queued device work (for timing); a no-op on the CPU."""
        if self.name == "cupy":
            import cupy

            cupy.cuda.get_current_stream().synchronize()
        elif self.name == "torch" and getattr(self.device, "type", "cpu") == "cuda":
            import torch

            torch.cuda.synchronize(self.device)


def to_numpy(x: Any) -> np.ndarray:
    """Copy an array of any supported library to a host NumPy array."""
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return np.asarray(x)
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if _is_strict_array(x):
        import array_api_strict

        x = array_api_compat.to_device(x, array_api_strict.Device("CPU_DEVICE"))
        return np.asarray(x)
    try:
        return np.from_dlpack(x)
    except Exception as exc:  # noqa: BLE001 - any library-specific failure
        raise BackendError(
            f"cannot copy a {type(x).__name__} to the host ({exc}); "
            "convert it to a NumPy array first"
        ) from None


def index_dtype(xp: Any, device: Any = None) -> Any:
    """The namespace's default integer dtype for indexing on ``device``."""
    try:
        return xp.__array_namespace_info__().default_dtypes(device=device)["indexing"]
    except (AttributeError, TypeError):  # a namespace without the inspection API
        return xp.int64


def backend_of(x: Any) -> Backend:
    """The backend an array lives on."""
    try:
        xp = array_api_compat.array_namespace(x)
    except TypeError:
        raise BackendError(
            f"expected an array (NumPy, CuPy, PyTorch, array-api-strict), got {type(x).__name__}"
        ) from None
    if type(x).__module__ == f"{__package__}._cupy_emulation":
        return Backend(xp, "cpu", EMULATED_CUPY)  # a device array of the CuPy EMULATION
    return Backend(xp, array_api_compat.device(x), _library_name(xp))


def get_backend(device: Any = "auto") -> Backend:
    """Resolve a device selector to a :class:`Backend`.

    ``device`` may be:

    - ``"auto"`` (or ``None``): CUDA when CuPy is installed and sees a GPU,
      else the CPU;
    - ``"cpu"``: NumPy;
    - ``"cuda"`` / ``"cuda:N"``: CuPy on the current GPU / GPU ``N``;
    - an array library module or compat namespace (``numpy``, ``cupy``,
      ``array_api_strict``, ``torch``): that library on its default device;
    - a ``(namespace, device)`` pair, e.g. ``(array_api_strict,
      array_api_strict.Device("device1"))``;
    - a :class:`Backend` (returned as is) or an array (its backend).
    """
    if isinstance(device, Backend):
        return device
    if device is None:
        device = "auto"
    if isinstance(device, tuple) and len(device) == 2:
        namespace, dev = device
        backend = _backend_from_module(namespace)
        return Backend(backend.xp, _library_device(backend, dev), backend.name)
    if isinstance(device, str):
        return _backend_from_string(device)
    if hasattr(device, "__name__") and not array_api_compat.is_array_api_obj(device):
        return _backend_from_module(device)
    if array_api_compat.is_array_api_obj(device):
        return backend_of(device)
    raise ConfigError(
        f"unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or an array library module"
    )


def cuda_available() -> bool:
    """True when CuPy sees a CUDA GPU *and* runs a small kernel and a matrix product on it.

    Counting devices is not enough: with only the NVIDIA driver installed CuPy
    14 sees the GPU, then fails at the first kernel (no NVRTC) or product (no
    cuBLAS).  The check runs once per process.
    """
    return _cupy_gpu_count()[0] > 0


def cupy_self_test(cupy: Any) -> str | None:
    """Run one elementwise kernel and one matrix product with ``cupy``; None if both give the right numbers.

    Otherwise a short description of what failed.  (The CPU EMULATION of CuPy
    passes it too: tests/test_backend.py.)
    """
    try:
        x = cupy.asarray([[1.0, 2.0], [3.0, 4.0]], dtype=cupy.float32)
        y = cupy.ElementwiseKernel("T x", "T y", "y = x * (T)2 + (T)1", "nnxp_self_test")(x)
        product = cupy.matmul(y, x)
        got = product.get().tolist()
    except Exception as exc:  # noqa: BLE001 - a missing NVRTC/cuBLAS raises anything
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    if got != [[18.0, 26.0], [34.0, 50.0]]:  # (2x+1) @ x
        return f"a 2x2 product gave {got}, not [[18.0, 26.0], [34.0, 50.0]]"
    return None


# -- helpers ------------------------------------------------------------------


def _backend_from_string(spec: str) -> Backend:
    text = spec.strip().lower()
    if text == "auto":
        return _backend_from_string("cuda") if cuda_available() else _numpy_backend()
    if text == "cpu":
        return _numpy_backend()
    if text == "cuda" or text.startswith("cuda:"):
        index = 0
        if text != "cuda":
            try:
                index = int(text.split(":", 1)[1])
            except ValueError:
                index = -1
            if index < 0:
                raise ConfigError(
                    f"unknown device {spec!r}: write cuda:N with N a GPU number, e.g. cuda:0"
                )
        count, reason = _cupy_gpu_count()
        if count == 0:
            raise BackendError(f"device {spec!r} is not available: {reason}")
        if index >= count:
            raise BackendError(
                f"device {spec!r} is not available: CuPy sees {count} GPU(s), "
                f"numbered 0 to {count - 1}"
            )
        import cupy

        return Backend(array_api_compat.array_namespace(cupy.empty(0)), cupy.cuda.Device(index), "cupy")
    if text in ("numpy", "cupy", "torch", "array_api_strict"):
        return _backend_from_module(_import_library(text))
    raise ConfigError(
        f"unknown device {spec!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'"
    )


def emulated_cupy_backend() -> Backend:
    """EMULATION: NumPy arrays standing for GPU memory, run by nnxp's CuPy fast path (see nnxp._cupy_emulation)."""
    import array_api_compat.numpy as xp_numpy

    _emulation().compiler()  # EmulationUnavailable (with the reason) when there is no C++ compiler
    return Backend(xp_numpy, "cpu", EMULATED_CUPY)


def _emulation() -> Any:
    from . import _cupy_emulation

    return _cupy_emulation


def _numpy_backend() -> Backend:
    import array_api_compat.numpy as xp_numpy

    return Backend(xp_numpy, "cpu", "numpy")


def _backend_from_module(module: Any) -> Backend:
    name = getattr(module, "__name__", "")
    if name.startswith("array_api_compat."):
        name = name.split(".", 1)[1]
    library = name.split(".")[0]
    if library not in ("numpy", "cupy", "torch", "array_api_strict"):
        raise ConfigError(
            f"unsupported array library {name!r}: use numpy, cupy, torch or array_api_strict"
        )
    if library == "numpy":
        return _numpy_backend()
    if library == "cupy" and not cuda_available():
        raise BackendError(f"CuPy is not usable: {_cupy_gpu_count()[1]}")
    mod = _import_library(library)
    probe = mod.zeros(0) if library != "array_api_strict" else mod.asarray([0.0])
    xp = array_api_compat.array_namespace(probe)
    return Backend(xp, array_api_compat.device(probe), library)


def _library_device(backend: Backend, dev: Any) -> Any:
    """Turn a user's device spelling into the library's device object."""
    if backend.name == "torch":
        import torch

        return torch.device(dev)
    if backend.name == "cupy" and isinstance(dev, (int, str)):
        import cupy

        return cupy.cuda.Device(int(str(dev).split(":")[-1]) if str(dev) != "cuda" else 0)
    if backend.name == "array_api_strict" and isinstance(dev, str):
        import array_api_strict

        return array_api_strict.Device(dev)
    return dev


def _import_library(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        hint = _CUDA_INSTALL_HINT if name == "cupy" else f"pip install {name.replace('_', '-')}"
        raise BackendError(f"{name} is not installed: {hint}") from None


@functools.lru_cache(maxsize=1)
def _cupy_gpu_count() -> tuple[int, str]:
    """(number of GPUs CuPy sees and can use, why there are none); computed once."""
    try:
        import cupy
    except ImportError:
        return 0, f"CuPy is not installed; {_CUDA_INSTALL_HINT}, or use --device cpu"
    except Exception as exc:  # noqa: BLE001 - a broken CUDA install raises anything
        return 0, f"CuPy failed to import ({exc}); check the CUDA install, or use --device cpu"
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # noqa: BLE001
        return 0, f"CuPy finds no CUDA GPU ({exc}); use --device cpu"
    if count == 0:
        return 0, "CuPy finds no CUDA GPU; use --device cpu"
    problem = cupy_self_test(cupy)
    if problem is not None:
        return 0, (f"CuPy sees {count} GPU(s) but cannot run a kernel and a matrix product ({problem}); "
                   f"CuPy 14 needs NVRTC and cuBLAS: {_CUDA_INSTALL_HINT}, or use --device cpu")
    return count, ""


def _library_name(xp: Any) -> str:
    name = xp.__name__
    if name.startswith("array_api_compat."):
        name = name.split(".", 1)[1]
    return name.split(".")[0]


def _is_strict_array(x: Any) -> bool:
    return type(x).__module__.startswith("array_api_strict")


def _same_device(a: Any, b: Any) -> bool:
    if a == b:
        return True
    return str(a) == str(b)


def _device_label(backend: Backend) -> str:
    device = backend.device
    if backend.name == "cupy":
        return f"cuda:{device.id}"
    if backend.name == "array_api_strict":
        return f"device {device._device}" if hasattr(device, "_device") else str(device)
    return str(device)
