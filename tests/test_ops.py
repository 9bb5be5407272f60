"""The backends' fast paths compute the same numbers as the generic Array-API path."""

from __future__ import annotations

import numpy as np
import pytest

import nnxp
from nnxp.activations import ACTIVATIONS
from nnxp.ops import ArrayAPIOps, ops_for

from conftest import RTOL, assert_on, host, make_backend


@pytest.fixture(params=["numpy", "cupy"])
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


OPTIMIZERS = {
    "sgd": lambda: nnxp.SGD(lr=0.05),
    "sgd-wd": lambda: nnxp.SGD(lr=0.05, weight_decay=0.01),
    "momentum": lambda: nnxp.SGD(lr=0.05, momentum=0.9),
    "nesterov-wd": lambda: nnxp.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda: nnxp.Adam(lr=0.01),
    "adam-wd": lambda: nnxp.Adam(lr=0.01, weight_decay=0.01),
    "adamw": lambda: nnxp.AdamW(lr=0.01, weight_decay=0.1),
}


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
