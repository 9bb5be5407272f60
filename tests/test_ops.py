"""The backends' fast paths compute the same numbers as the generic Array-API path."""

from __future__ import annotations

import numpy as np
import pytest

import nnxp
from nnxp.activations import ACTIVATIONS
from nnxp.ops import ArrayAPIOps, ops_for

from conftest import OPTIMIZERS, RTOL, assert_on, host, make_backend


@pytest.fixture(params=["numpy", "cupy", "cupy-emulated"])
def backend(request):
    """The backends that have a fast path (the others always run the generic one)."""
    return make_backend(request.param)


def fast_ops(backend):
    if backend.name == "cupy":
        from nnxp._cupy_ops import CuPyOps

        return CuPyOps()  # tested whether or not NNXP_CUPY_FUSED turns it on by default
    ops = ops_for(backend)
    assert type(ops) is not ArrayAPIOps, f"{backend} should have a fast path"
    return ops


@pytest.mark.parametrize("hidden", sorted(ACTIVATIONS))
@pytest.mark.parametrize("loss,output", [("squared_error", "sigmoid"), ("cross_entropy", "softmax")])
def test_fast_backprop_equals_generic(backend, dtype_name, hidden, loss, output):
    ops = fast_ops(backend)
    rng = np.random.default_rng(0)
    net = nnxp.Network([6, 9, 7, 4], hidden=hidden, output=output, loss=loss, seed=2,
                       dtype=dtype_name, device=backend)
    for batch in (5, 3, 5):  # a smaller batch reuses the buffers' leading rows
        x = net.inputs(rng.normal(size=(batch, 6)))
        y = net.targets(rng.integers(0, 4, batch), batch)
        cost_ref, grads_ref, out_ref = net._backprop(x, y, ArrayAPIOps())
        cost, grads, out = net._backprop(x, y, ops)
        assert float(cost) == pytest.approx(float(cost_ref), rel=RTOL[dtype_name])
        np.testing.assert_allclose(host(out), host(out_ref), rtol=RTOL[dtype_name])
        for (gw, gb), (rw, rb) in zip(grads, grads_ref):
            assert_on(backend, gw, dtype_name)
            np.testing.assert_allclose(host(gw), host(rw), rtol=RTOL[dtype_name] * 10, atol=1e-7)
            np.testing.assert_allclose(host(gb), host(rb), rtol=RTOL[dtype_name] * 10, atol=1e-7)


def test_fast_take_rows_equals_generic(backend):
    ops = fast_ops(backend)
    dtype = backend.dtype("float32")
    x = backend.asarray(np.arange(20.0).reshape(10, 2), dtype)
    index = backend.asarray(np.array([3, 0, 9, 3]), backend.xp.int64)
    np.testing.assert_array_equal(host(ops.take_rows(x, index, "k")), host(ArrayAPIOps().take_rows(x, index, "k")))




@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_fast_training_equals_generic(backend, optimizer, monkeypatch):
    monkeypatch.setenv("NNXP_CUPY_FUSED", "1")
    fast_ops(backend)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 8)), rng.integers(0, 3, 50)
    nets = []
    for fast in (False, True):
        net = nnxp.Network([8, 16, 3], hidden="leaky_relu", seed=4, device=backend)
        net.fit(x, y, epochs=2, batch_size=16, optimizer=OPTIMIZERS[optimizer](), verbose=0, fast=fast)
        nets.append(net)
    for (w0, b0), (w1, b1) in zip(nets[0].get_weights(), nets[1].get_weights()):
        np.testing.assert_allclose(w1, w0, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b1, b0, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("contiguous", [True, False])
def test_gemm_update_into_equals_numpy(dtype, contiguous):
    from nnxp._blas import gemm_tn_into

    rng = np.random.default_rng(3)
    a = rng.normal(size=(7, 5)).astype(dtype)
    b = rng.normal(size=(7, 9)).astype(dtype) if contiguous else rng.normal(size=(9, 7)).astype(dtype).T
    c = rng.normal(size=(5, 9)).astype(dtype)
    want = 0.75 * c - 0.1 * (a.astype(np.float64).T @ b.astype(np.float64))
    gemm_tn_into(c, a, b, alpha=-0.1, beta=0.75)
    np.testing.assert_allclose(c, want, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_sgd_is_folded_into_the_gemm_where_numpy_has_its_blas():
    from nnxp import _blas
    from nnxp.ops import NumPyOps, WeightGradient

    cpu = nnxp.get_backend("cpu")
    ops = ops_for(cpu, optimizer=nnxp.SGD(lr=0.1))
    assert isinstance(ops, NumPyOps) and ops.fold_sgd == _blas.available()
    assert not ops_for(cpu, optimizer=nnxp.Adam()).fold_sgd
    assert not ops_for(cpu, optimizer=nnxp.SGD(lr=0.1, momentum=0.9, nesterov=True)).fold_sgd
    folded = NumPyOps(fold_sgd=True)
    delta, a_prev = np.ones((3, 2), np.float32), np.ones((3, 4), np.float32)
    grad = folded.weight_grad(delta, a_prev, "k")
    assert isinstance(grad, WeightGradient)
    np.testing.assert_array_equal(grad.materialise(), np.full((2, 4), 3.0))
