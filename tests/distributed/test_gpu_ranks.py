"""One GPU per rank: each rank self-tests its own GPU, and more ranks than GPUs is one clear error.

No GPU here: CuPy's device count and self-test are stood in for (the real
self-test is tests/test_backend.py's), so what is checked is which GPU each
rank asks for and what it is told.
"""

from __future__ import annotations

import contextlib
import sys
import types

import pytest

from nnxp import backend as backend_module
from nnxp.distributed import launch
from nnxp.errors import BackendError


@pytest.fixture
def gpus(monkeypatch):
    """A machine with 2 GPUs that pass the self-test; the GPUs each call asked to test."""
    asked = []

    def count(gpu=0):
        asked.append(gpu)
        return 2, ""

    monkeypatch.setattr(backend_module, "_cupy_gpu_count", count)
    for name in launch._LOCAL_SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return asked


def test_each_rank_self_tests_its_own_gpu(gpus):
    assert launch.device_for_rank("cuda", 1, local_size=2) == "cuda:1"
    assert launch.device_for_rank("auto", 0, local_size=2) == "cuda:0"
    assert gpus == [1, 0]  # rank 1 never tests GPU 0
    assert launch.device_for_rank("cpu", 1, local_size=2) == "cpu"


@pytest.mark.parametrize("local_rank", [0, 1, 2])
def test_more_ranks_than_gpus_is_one_clear_error_on_every_rank(gpus, local_rank):
    with pytest.raises(BackendError, match=r"^3 ranks on this machine but CuPy sees 2 GPU\(s\): one GPU per rank"):
        launch.device_for_rank("cuda", local_rank, local_size=3)


def test_the_local_size_comes_from_the_launcher(gpus, monkeypatch):
    assert launch.local_size_from_env({"OMPI_COMM_WORLD_LOCAL_SIZE": "4"}) == 4
    assert launch.local_size_from_env({"MPI_LOCALNRANKS": "3"}) == 3
    assert launch.local_size_from_env({}) is None
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "3")
    with pytest.raises(BackendError, match="3 ranks"):
        launch.device_for_rank("cuda", 0)


def test_the_self_test_runs_on_the_gpu_asked_for(monkeypatch):
    """backend._cupy_gpu_count(gpu) makes GPU ``gpu`` current for the kernel and the product."""
    current = [0]

    @contextlib.contextmanager
    def device(index):
        saved, current[0] = current[0], index
        try:
            yield
        finally:
            current[0] = saved

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 2), Device=device))
    tested = []
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(backend_module, "cupy_self_test", lambda cp: tested.append(current[0]))
    backend_module._cupy_gpu_count.cache_clear()
    try:
        assert backend_module._cupy_gpu_count(1) == (2, "")
        assert backend_module._cupy_gpu_count(5) == (2, "")  # no GPU 5: not tested, the caller says so
        assert tested == [1]
    finally:
        backend_module._cupy_gpu_count.cache_clear()
