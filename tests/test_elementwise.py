"""Optimizer updates run chunk by chunk on a thread pool (nnxp.kernels.elementwise) give the
optimizer's own formula: every entry, several parameters of odd sizes, edge values, 1-3 threads."""

from __future__ import annotations

import numpy as np
import pytest

from nnxp.kernels import elementwise
from nnxp.kernels.elementwise import ChunkRunner
from nnxp.kernels.numpy import UPDATES, _descend

from test_kernels import EDGES, OPTIMIZERS


def parameters(dtype, rng):
    """Three parameters (a matrix, a vector, one with every edge value) and their gradients."""
    edges = np.array(EDGES, dtype=dtype)
    ps = [rng.normal(size=(13, 11)).astype(dtype), rng.normal(size=(29,)).astype(dtype),
          np.repeat(edges, len(edges)).reshape(len(edges), len(edges))]
    gs = [rng.normal(size=p.shape).astype(dtype) for p in ps[:2]] + [np.tile(edges, (len(edges), 1))]
    return ps, gs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_chunked_threaded_updates_equal_the_formula(monkeypatch, dtype, threads, optimizer):
    monkeypatch.setattr(elementwise, "CHUNK", 7)         # many chunks, split across parameters
    monkeypatch.setattr(elementwise, "PARALLEL_MIN", 0)  # threads even for tiny updates
    rng = np.random.default_rng(4)
    ps, gs = parameters(dtype, rng)
    opt_ref, opt_fast = OPTIMIZERS[optimizer](), OPTIMIZERS[optimizer]()
    p_ref, p_fast = [p.copy() for p in ps], [p.copy() for p in ps]
    runner = ChunkRunner(threads)
    kernel = UPDATES[type(opt_fast)]
    with np.errstate(all="ignore"):
        for step in range(3):
            grads = [g * (1.0 + step) for g in gs]
            p_ref = opt_ref.step(p_ref, [g.copy() for g in grads])
            opt_fast.begin_step(p_fast, grads)
            runner.run(opt_fast, [(kernel, p, g.copy(), opt_fast.slot(i)) for i, (p, g) in enumerate(zip(p_fast, grads))])
    tol = 1e-6 if dtype == np.float32 else 1e-12
    for f, r in zip(p_fast, p_ref):
        np.testing.assert_allclose(f, r, rtol=tol, atol=0, equal_nan=True)
    for name, bufs in opt_ref.state.items():
        for f, r in zip(opt_fast.state[name], bufs):
            np.testing.assert_allclose(f, r, rtol=tol, atol=0, equal_nan=True)


def test_non_contiguous_parameters_are_updated_whole(monkeypatch):
    monkeypatch.setattr(elementwise, "PARALLEL_MIN", 0)
    base = np.arange(40.0, dtype=np.float32).reshape(5, 8)
    p = base[:, ::2]  # a strided view: not cut into chunks, still updated in place
    v = np.ones_like(p)

    class Opt:
        lr = 0.5

    ChunkRunner(2).run(Opt(), [(_descend, p, v, {}), (_descend, np.zeros(3, np.float32), np.ones(3, np.float32), {})])
    np.testing.assert_array_equal(base[:, ::2], np.arange(40.0, dtype=np.float32).reshape(5, 8)[:, ::2] - 0.5)
    np.testing.assert_array_equal(base[:, 1::2], np.arange(40.0, dtype=np.float32).reshape(5, 8)[:, 1::2])


def test_the_thread_count_is_chosen_once_per_size_without_touching_the_arrays(monkeypatch):
    monkeypatch.setattr(elementwise, "PARALLEL_MIN", 0)
    monkeypatch.setattr(elementwise, "CHUNK", 50)
    monkeypatch.setattr(elementwise, "_default_threads", lambda: 2)

    class Opt:
        lr = 0.5

    p, v = np.zeros(200, np.float32), np.ones(200, np.float32)
    runner = ChunkRunner()
    runner.run(Opt(), [(_descend, p, v, {})])
    assert runner.chosen.keys() == {200} and runner.chosen[200] in (1, 2)
    np.testing.assert_array_equal(p, -0.5)  # timing ran on copies: exactly one update applied
    runner.run(Opt(), [(_descend, p, v, {})])
    np.testing.assert_array_equal(p, -1.0)
    assert len(runner.chosen) == 1
