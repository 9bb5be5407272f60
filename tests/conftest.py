"""The backend fixture: every numeric test runs on every available backend.

- ``numpy``: the CPU backend users get with ``device="cpu"``.
- ``strict``: array-api-strict on its non-default ``device1``: mixing arrays
  of two devices, NumPy scalars leaking in, or any function outside the
  standard fails here, on a CPU, as it would (or worse) on a GPU.
- ``strict-nof64``: array-api-strict's ``no_float64`` device (like Apple's
  MPS): float64 does not exist, so float64-only habits fail.
- ``strict-2023``: array-api-strict limited to the 2023.12 standard, the
  oldest nnxp supports (no Python scalars in ``where``/``maximum``).
- ``dask``: dask.array, whose arrays cannot be changed in place (no
  ``__isub__``) and are lazy: nnxp must rebind updated parameters, never
  rely on ``p -= u`` being seen through other references.
- ``jax``: JAX, immutable arrays (when installed).
- ``torch``: PyTorch on the CPU through array-api-compat, when installed.
- ``cupy``: CuPy on a CUDA GPU, when one is present (skipped otherwise,
  with the reason).
- ``cupy-emulated``: EMULATION of CuPy on the CPU (tests/support/cupy_emulation):
  NumPy buffers standing for GPU memory, run by nnxp's CuPy fast path with
  its kernels compiled as C++ by the system compiler (skipped without one).
  It proves the CuPy path's arithmetic and plumbing, not its speed.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnxp
from nnxp.backend import _cupy_gpu_count

# array-api-strict's default standard version in these tests; "strict-2023" checks the oldest.
STRICT_API_VERSION = "2024.12"

BACKEND_NAMES = ["numpy", "strict", "strict-nof64", "strict-2023", "dask", "jax", "torch", "cupy", "cupy-emulated"]


def make_backend(name: str) -> nnxp.Backend:
    if name == "numpy":
        return nnxp.get_backend("cpu")
    if name.startswith("strict"):
        import array_api_strict as xps

        xps.set_array_api_strict_flags(api_version="2023.12" if name == "strict-2023" else STRICT_API_VERSION)
        device = xps.Device("no_float64" if name == "strict-nof64" else "device1")
        return nnxp.get_backend((xps, device))
    if name == "dask":
        da = pytest.importorskip("dask.array", reason="dask is not installed")
        return nnxp.get_backend(da)
    if name == "jax":
        jax = pytest.importorskip("jax", reason="JAX is not installed")
        jax.config.update("jax_enable_x64", True)
        return nnxp.get_backend(jax.numpy)
    if name == "torch":
        torch = pytest.importorskip("torch", reason="PyTorch is not installed")
        return nnxp.get_backend((torch, "cpu"))
    if name == "cupy":
        count, reason = _cupy_gpu_count()
        if count == 0:
            pytest.skip(f"CuPy backend: {reason}")
        return nnxp.get_backend("cuda")
    if name == "cupy-emulated":
        from support.cupy_emulation import EmulationUnavailable, emulated_cupy_backend

        try:
            return emulated_cupy_backend()
        except EmulationUnavailable as exc:
            pytest.skip(f"CuPy EMULATION: {exc}")
    raise ValueError(name)


@pytest.fixture(params=BACKEND_NAMES)
def backend(request) -> nnxp.Backend:
    """An nnxp Backend for each available array library and device."""
    return make_backend(request.param)


@pytest.fixture(params=["float32", "float64"])
def dtype_name(request, backend) -> str:
    """Each floating dtype the backend's device supports."""
    if not backend.supports(request.param):
        pytest.skip(f"{backend} has no {request.param}")
    return request.param


def assert_on(backend: nnxp.Backend, x, dtype_name: str | None = None) -> None:
    """Assert that ``x`` lives on ``backend`` (namespace and device) with the given dtype."""
    assert backend.owns(x), f"array is not on {backend}: {type(x)}"
    if dtype_name is not None:
        assert x.dtype == backend.dtype(dtype_name), f"dtype {x.dtype} != {dtype_name}"


def host(x) -> np.ndarray:
    return nnxp.to_numpy(x)


def pytest_collection_modifyitems(items):
    """Runs of hundreds of steps (``@pytest.mark.many_steps``) are skipped on dask only:
    dask builds a task graph per operation (about 3 ms each), so 2,000 steps take
    minutes.  Training on dask is checked against NumPy by tests/test_libraries.py."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if item.get_closest_marker("many_steps") and callspec and callspec.params.get("backend") == "dask":
            item.add_marker(pytest.mark.skip(
                reason="dask: hundreds of steps at ~3 ms of graph building per operation "
                       "(dask training is compared with NumPy in test_libraries.py)"))


def pytest_terminal_summary(terminalreporter):
    """Skipped tests counted by reason: one line per reason, not one per test."""
    from collections import Counter

    reasons = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    if reasons:
        terminalreporter.section("skipped, by reason")
        for reason, count in reasons.most_common():
            terminalreporter.line(f"{count:5d}  {reason}")


# Optimizers the fast paths are compared on (each fused update against the generic one).
OPTIMIZERS = {  # name: factory
    "sgd": lambda: nnxp.SGD(lr=0.05),
    "sgd-wd": lambda: nnxp.SGD(lr=0.05, weight_decay=0.01),
    "momentum": lambda: nnxp.SGD(lr=0.05, momentum=0.9),
    "momentum-wd": lambda: nnxp.SGD(lr=0.05, momentum=0.9, weight_decay=0.01),
    "nesterov-wd": lambda: nnxp.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda: nnxp.Adam(lr=0.01),
    "adam-wd": lambda: nnxp.Adam(lr=0.01, weight_decay=0.01),
    "adamw": lambda: nnxp.AdamW(lr=0.01, weight_decay=0.1),
}


# Tolerances for comparing with float64 references.
RTOL = {"float64": 1e-9, "float32": 2e-5}


def run_cli(capsys, *argv):
    """Run ``nnxp`` in-process: (exit code, stdout, stderr)."""
    from nnxp.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    """The single ``nnxp: error: ...`` (or ``nnxp: ...``) line a failed command printed."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    assert lines[0].startswith("nnxp"), lines[0]
    return lines[0]
