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
    "pip install 'nnxp[cuda12]' (CUDA 12) or 'nnxp[cuda13]' (CUDA 13); "
    "in a clone: pip install '.[cuda12]' or '.[cuda13]'"
)


class Backend:
    """An array namespace and a device on it.

    Attributes
    ----------
    xp : the Array-API namespace (the ``array_api_compat`` wrapper where
        there is one, else the library's own namespace, e.g. ``jax.numpy``).
    device : the device arrays are created on (``"cpu"`` for NumPy,
        ``cupy.cuda.Device`` for CuPy, ``torch.device``, ...).
    name : the library's name: ``"numpy"``, ``"cupy"``, ``"torch"``,
        ``"array_api_strict"``, ``"jax"``, ``"dask"``, ``"ndonnx"``, ...
    inplace : whether an in-place operator (``p -= u``) on an array is seen
        through every reference to it.  The standard leaves this open
        ("copy-view behaviour and mutability"): NumPy, CuPy, PyTorch and
        array-api-strict do; JAX, dask and ndonnx do not, and there nnxp
        rebinds new arrays instead.

    Backends compare and hash by library and device, so they can key caches.
    """

    __slots__ = ("xp", "device", "name", "_inplace", "lazy")

    def __init__(self, xp: Any, device: Any, name: str, inplace: bool | None = None):
        self.xp = xp
        self.device = device
        self.name = name
        self._inplace = inplace
        #: whether arrays are lazy (dask): work waits until a result is needed
        self.lazy = array_api_compat.is_dask_namespace(xp)

    @property
    def inplace(self) -> bool:
        """Whether in-place updates are visible through other references (probed once per library)."""
        if self._inplace is None:
            self._inplace = _visible_inplace(self.xp, self.device)
        return self._inplace

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Backend) and self.xp is other.xp and self.name == other.name
                and _same_device(self.device, other.device))

    def __hash__(self) -> int:  # str(device): cupy.cuda.Device is unhashable
        return hash((id(self.xp), self.name, str(self.device)))

    def __repr__(self) -> str:
        return f"Backend({self.name!r}, {self.device!r})"

    def __str__(self) -> str:
        return f"{self.name} on {_device_label(self)}"

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
            return self.xp.asarray(data, dtype=dtype, device=self.device, copy=True if copy else None)

    @property
    def index_dtype(self) -> Any:
        """The integer dtype for indices and counts on this device (int64, or int32 where that is all)."""
        return index_dtype(self.xp, self.device)

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> Any:
        with self.context():
            return self.xp.zeros(shape, dtype=dtype, device=self.device)

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

    def persist(self, arrays: list[Any]) -> list[Any]:
        """Compute a lazy library's pending work for ``arrays`` and return arrays holding
        the results (dask's ``persist``); eager libraries return ``arrays`` unchanged.

        A training loop on a lazy library calls this once per step, or every step's
        graph would be chained into one that grows all epoch."""
        if not self.lazy:
            return list(arrays)
        import dask

        return list(dask.persist(*arrays, scheduler="sync", optimize_graph=False))

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
    """Copy an array of any Array-API library to a host NumPy array.

    Tries the library's own way first (CuPy ``.get()``, PyTorch ``.cpu()``,
    array-api-strict's CPU device, dask's ``compute``, ndonnx's
    ``unwrap_numpy``), then DLPack, then ``numpy.asarray``.
    """
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
    if array_api_compat.is_dask_array(x):
        return np.asarray(x.compute())
    if hasattr(x, "unwrap_numpy"):  # ndonnx
        try:
            return np.asarray(x.unwrap_numpy())
        except Exception as exc:  # noqa: BLE001 - a lazy array without values
            raise BackendError(f"cannot copy a {type(x).__name__} to the host ({exc})") from None
    errors = []
    for convert in (np.from_dlpack, np.asarray):
        try:
            out = convert(x)
        except Exception as exc:  # noqa: BLE001 - any library-specific failure
            errors.append(str(exc))
            continue
        if out.dtype != object:
            return out
    raise BackendError(
        f"cannot copy a {type(x).__name__} to the host ({'; '.join(errors) or 'no numeric data'}); "
        "convert it to a NumPy array first"
    )


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
            "expected an array of an Array API library (NumPy, CuPy, PyTorch, JAX, dask, ...), "
            f"got {type(x).__name__}"
        ) from None
    own = getattr(type(x), "__nnxp_backend__", None)  # an array type that names its backend (the CuPy EMULATION's)
    if own is not None:
        return own()
    return Backend(_checked(xp), array_api_compat.device(x), _library_name(xp))


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
        count, reason = _cupy_gpu_count(index)
        if count == 0:
            raise BackendError(f"device {spec!r} is not available: {reason}")
        if index >= count:
            raise BackendError(
                f"device {spec!r} is not available: CuPy sees {count} GPU(s), "
                f"numbered 0 to {count - 1}"
            )
        import cupy

        with cupy.cuda.Device(index):  # nothing made on GPU 0 for a rank that uses another
            return Backend(array_api_compat.array_namespace(cupy.empty(0)), cupy.cuda.Device(index), "cupy")
    if text in ("numpy", "cupy", "torch", "array_api_strict", "jax", "jax.numpy", "dask",
                "dask.array", "ndonnx"):
        module = {"jax": "jax.numpy", "dask": "dask.array"}.get(text, text)
        return _backend_from_module(_import_library(module))
    raise ConfigError(
        f"unknown device {spec!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'"
    )


def _numpy_backend() -> Backend:
    import array_api_compat.numpy as xp_numpy

    return Backend(xp_numpy, "cpu", "numpy")


def _backend_from_module(module: Any) -> Backend:
    """The backend of an array library given as a module or namespace, on its default device.

    Anything that array-api-compat recognises works: numpy, cupy, torch,
    array_api_strict, jax.numpy, dask.array, ndonnx, their compat wrappers,
    or another library whose arrays have ``__array_namespace__``.
    """
    name = getattr(module, "__name__", "")
    if name.startswith("array_api_compat."):
        name = name.split(".", 1)[1]
    library = name.split(".")[0]
    if library == "numpy":
        return _numpy_backend()
    if library == "cupy" and not cuda_available():
        raise BackendError(f"CuPy is not usable: {_cupy_gpu_count()[1]}")
    if library in ("cupy", "torch"):
        module = _import_library(library)  # the bare module, whatever wrapper was given
    probe = _probe(module, name)
    xp = _checked(array_api_compat.array_namespace(probe))
    return Backend(xp, array_api_compat.device(probe), _library_name(xp))


def _probe(module: Any, name: str) -> Any:
    """A small float array made by ``module``, or a clear error if it is not an array library."""
    make = getattr(module, "asarray", None)
    try:
        probe = make([0.0, 1.0]) if callable(make) else None
    except Exception:  # noqa: BLE001 - whatever a foreign module raises
        probe = None
    if probe is None or not array_api_compat.is_array_api_obj(probe):
        raise ConfigError(
            f"{name or module!r} is not an Array API array library: give numpy, cupy, torch, "
            "jax.numpy, dask.array, array_api_strict, or another library whose arrays have "
            "__array_namespace__"
        )
    return probe


#: The oldest standard nnxp's generic code is written for (``clip``, ``isdtype``,
#: ``__array_namespace_info__`` came with 2023.12).
MIN_API_VERSION = "2023.12"


def _checked(xp: Any) -> Any:
    """``xp``, after checking it implements the standard version nnxp needs."""
    version = getattr(xp, "__array_api_version__", None)
    if isinstance(version, str) and version < MIN_API_VERSION:
        raise BackendError(
            f"{getattr(xp, '__name__', xp)} implements the Array API standard {version}; nnxp "
            f"needs {MIN_API_VERSION} or newer (for array_api_strict: "
            f"set_array_api_strict_flags(api_version='{MIN_API_VERSION}'))"
        )
    return xp


_INPLACE: dict[str, bool] = {}  # by library name: a property of the library, not of a device


def _visible_inplace(xp: Any, device: Any) -> bool:
    """Whether ``p -= u`` on this library's arrays is visible through other references."""
    name = getattr(xp, "__name__", repr(xp))
    if name not in _INPLACE:
        _INPLACE[name] = _probe_inplace(xp, device)
    return _INPLACE[name]


def _probe_inplace(xp: Any, device: Any) -> bool:
    try:
        probe = xp.zeros((1,), dtype=xp.float32, device=device)
    except Exception:  # noqa: BLE001 - a library that cannot even make a probe rebinds
        return False
    return (array_api_compat.is_writeable_array(probe) and not array_api_compat.is_lazy_array(probe)
            and hasattr(type(probe), "__isub__"))


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
        package = name.split(".")[0].replace("_", "-")
        hint = _CUDA_INSTALL_HINT if name == "cupy" else f"pip install {package}"
        raise BackendError(f"{name} is not installed: {hint}") from None


@functools.lru_cache(maxsize=None)
def _cupy_gpu_count(gpu: int = 0) -> tuple[int, str]:
    """(number of GPUs CuPy sees and can use, why there are none); computed once per ``gpu``.

    The self-test (a kernel and a product) runs on GPU ``gpu`` (each rank of a
    data-parallel run tests its own GPU: GPU 0 is not touched by the others);
    a ``gpu`` beyond the count is not tested (the caller reports it)."""
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
    if gpu >= count:
        return count, ""
    try:
        with cupy.cuda.Device(gpu):
            problem = cupy_self_test(cupy)
    except Exception as exc:  # noqa: BLE001 - selecting the GPU failed
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        return 0, (f"CuPy sees {count} GPU(s) but cannot run a kernel and a matrix product ({problem}); "
                   f"CuPy 14 needs NVRTC and cuBLAS: {_CUDA_INSTALL_HINT}, or use --device cpu")
    return count, ""


def _library_name(xp: Any) -> str:
    name = getattr(xp, "__name__", type(xp).__name__)
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
