"""nnxp.threads: the thread policy and the limit it applies."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import nnxp
from nnxp.threads import SMALL_GEMM, check_threads, choose_threads, idle_cores, thread_limit


def _blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_small_products_get_one_thread_whatever_is_idle():
    # 784-256 at batch 32: 6.4 M multiply-adds, below the measured break-even.
    assert 32 * 784 * 256 < SMALL_GEMM
    assert choose_threads(32, [784, 256, 10], cores=16, idle=16.0) == 1
    assert choose_threads(10_000, [784, 256, 10], cores=1, idle=1.0) == 1


def test_large_products_get_the_idle_cores():
    assert 128 * 784 * 256 >= SMALL_GEMM
    assert choose_threads(128, [784, 256, 10], cores=8, idle=8.0) == 8
    assert choose_threads(128, [784, 256, 10], cores=8, idle=2.6) == 3
    assert choose_threads(128, [784, 256, 10], cores=2, idle=0.1) == 1  # a busy machine
    assert choose_threads(128, [784, 256, 10], cores=2, idle=5.0) == 2  # never more than the cores


def test_idle_cores_is_a_measurement_within_the_machine():
    idle = idle_cores(0.02)
    import os

    assert 0.0 <= idle <= (os.cpu_count() or 1) + 1e-9


@pytest.mark.skipif(not _blas_threads(), reason="threadpoolctl finds no BLAS in this process")
def test_thread_limit_sets_and_restores_the_blas_pool():
    before = _blas_threads()
    with thread_limit(1, 32, [784, 256, 10]) as n:
        assert n == 1 and _blas_threads() == {1}
    with thread_limit(None, 32, [784, 256, 10]) as n:  # the default for a small product
        assert n == 1 and _blas_threads() == {1}
    assert _blas_threads() == before


def test_thread_limit_sets_torch_threads_too():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    before = torch.get_num_threads()
    with thread_limit(1, 32, [4, 2]):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -1, 2.5, "two", [1]])
def test_bad_thread_counts_are_clear_errors(bad):
    with pytest.raises(nnxp.ConfigError, match="threads must be a positive integer or 'auto'"):
        check_threads(bad)


def test_good_thread_counts(monkeypatch):
    import nnxp.threads

    monkeypatch.setattr(nnxp.threads, "usable_cores", lambda: 8)  # none of these is capped
    assert check_threads(None) is None and check_threads("auto") is None
    assert check_threads(3) == 3 and check_threads("2") == 2 and check_threads(np.int64(4)) == 4


@pytest.mark.skipif(not _blas_threads(), reason="threadpoolctl finds no BLAS in this process")
def test_fit_trains_under_the_thread_limit():
    seen = []

    class Watch(nnxp.Callback):
        def on_epoch_end(self, net, optimizer, record, history):
            seen.append(_blas_threads())

    before = _blas_threads()
    x = np.random.default_rng(0).normal(size=(64, 4))
    net = nnxp.Network([4, 3, 2], device="cpu")
    net.fit(x, (x[:, 0] > 0).astype(int), epochs=2, threads=1, callbacks=[Watch()], verbose=0)
    assert seen == [{1}, {1}] and _blas_threads() == before
    with pytest.raises(nnxp.ConfigError, match="threads must be"):
        net.fit(x, (x[:, 0] > 0).astype(int), threads=0)
