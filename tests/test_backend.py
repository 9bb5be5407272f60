"""Backend selection for CUDA: a GPU is usable only if it runs a kernel and a product; cuda:N creates on GPU N."""

from __future__ import annotations

import pytest

from nnxp import backend as backend_module
from nnxp.backend import Backend, cupy_self_test

from conftest import make_backend


def test_the_cupy_self_test_passes_on_the_emulation_and_fails_on_wrong_numbers(monkeypatch):
    make_backend("cupy-emulated")  # skips without a C++ compiler
    from support.cupy_emulation import cupy as emulated

    assert cupy_self_test(emulated) is None
    monkeypatch.setattr(type(emulated), "matmul", lambda self, a, b, out=None: emulated.asarray(a) * 0)
    assert "not [[18.0, 26.0], [34.0, 50.0]]" in cupy_self_test(emulated)


def test_cuda_available_needs_a_kernel_and_a_product_not_only_a_device(monkeypatch):
    """CuPy sees a GPU (as with the driver alone) but cannot compile or multiply: not available, with the reason."""
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    monkeypatch.setattr(cupy.cuda.runtime, "getDeviceCount", lambda: 1)
    backend_module._cupy_gpu_count.cache_clear()
    try:
        if cupy_self_test(cupy) is None:
            pytest.skip("this machine's GPU works: the failure cannot be shown here")
        assert not backend_module.cuda_available()
        assert "cannot run a kernel and a matrix product" in backend_module._cupy_gpu_count()[1]
    finally:
        monkeypatch.undo()
        backend_module._cupy_gpu_count.cache_clear()


class _CurrentDevice:
    """A CuPy-like current device: the one creation functions use."""

    index = 0


class _DeviceIgnoringNamespace:
    """Like array-api-compat's CuPy wrapper (compat issue 337): ``device=`` is ignored, the current GPU is used."""

    __name__ = "cupy"

    def asarray(self, data, dtype=None, device=None, copy=None):
        return ("created on", _CurrentDevice.index)

    def zeros(self, shape, dtype=None, device=None):
        return ("created on", _CurrentDevice.index)


class _Device:
    """Like ``cupy.cuda.Device(1)``: a context manager making GPU 1 current."""

    id = 1

    def __enter__(self):
        self.previous, _CurrentDevice.index = _CurrentDevice.index, self.id

    def __exit__(self, *exc):
        _CurrentDevice.index = self.previous


def test_cuda_n_creates_arrays_on_gpu_n_although_device_is_ignored():
    backend = Backend(_DeviceIgnoringNamespace(), _Device(), "cupy")
    assert backend.asarray([1.0, 2.0], "float32") == ("created on", 1)
    assert backend.zeros((2,), "float32") == ("created on", 1)
    assert _CurrentDevice.index == 0


def test_a_backend_on_a_cupy_device_is_hashable():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    import array_api_compat.cupy as xp

    backends = {Backend(xp, cupy.cuda.Device(1), "cupy"), Backend(xp, cupy.cuda.Device(1), "cupy")}
    assert len(backends) == 1
