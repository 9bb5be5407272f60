"""Activations and losses against closed forms, including their numerically hard corners."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnxp
from nnxp.activations import ACTIVATIONS, get_activation
from nnxp.losses import CrossEntropy, SquaredError, log_softmax

from conftest import RTOL, assert_on, host

Z = np.array([[-3.0, -0.5, 0.0, 0.25, 4.0], [10.0, -10.0, 1.5, -2.0, 0.5]])

CLOSED_FORM = {
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.2 * z),
    "identity": lambda z: z,
    "softmax": lambda z: np.exp(z) / np.exp(z).sum(axis=1, keepdims=True),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_forward_closed_form(backend, dtype_name, name):
    act = get_activation(name)
    z = backend.asarray(Z, backend.dtype(dtype_name))
    a = act.forward(z)
    assert_on(backend, a, dtype_name)
    np.testing.assert_allclose(host(a), CLOSED_FORM[name](Z), rtol=RTOL[dtype_name], atol=1e-7)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_backward_matches_finite_differences(backend, dtype_name, name):
    # dC/dz for C = sum(g * f(z)): compare backward(a, g) with central differences
    # of the closed form in float64 on the host (away from the ReLU kink at 0).
    act = get_activation(name)
    z_host = Z + 0.0123
    g_host = np.random.default_rng(4).normal(size=Z.shape)
    dtype = backend.dtype(dtype_name)
    a = act.forward(backend.asarray(z_host, dtype))
    got = act.backward(a, backend.asarray(g_host, dtype))
    assert_on(backend, got, dtype_name)
    h = 1e-6
    want = np.zeros_like(z_host)
    for idx in np.ndindex(z_host.shape):
        up, down = z_host.copy(), z_host.copy()
        up[idx] += h
        down[idx] -= h
        f = CLOSED_FORM[name]
        want[idx] = (np.sum(g_host * f(up)) - np.sum(g_host * f(down))) / (2 * h)
    np.testing.assert_allclose(host(got), want, rtol=1e-5 if dtype_name == "float64" else 1e-3,
                               atol=1e-8 if dtype_name == "float64" else 1e-5)


def test_sigmoid_never_overflows_in_float32(backend):
    z = backend.asarray(np.array([[-1000.0, -89.0, 0.0, 89.0, 1000.0]]), backend.dtype("float32"))
    with np.errstate(over="raise"):
        a = host(get_activation("sigmoid").forward(z))
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a[0], [0.0, 2.2e-39, 0.5, 1.0, 1.0], atol=1e-38)


def test_softmax_is_shift_invariant_and_handles_huge_logits(backend):
    dtype = backend.dtype("float32")
    z = np.array([[1000.0, 999.0, 998.0], [-1000.0, -1001.0, -1002.0]])
    a = host(get_activation("softmax").forward(backend.asarray(z, dtype)))
    want = np.exp([0.0, -1.0, -2.0]) / np.exp([0.0, -1.0, -2.0]).sum()
    np.testing.assert_allclose(a, [want, want], rtol=1e-6)


def test_log_softmax_for_huge_logits(backend):
    z = backend.asarray(np.array([[0.0, 500.0]]), backend.dtype("float32"))
    got = host(log_softmax(z))
    np.testing.assert_allclose(got, [[-500.0, 0.0]], atol=1e-4)


def test_leaky_relu_alpha_configurable():
    act = get_activation("leaky_relu:0.1")
    assert act.alpha == 0.1 and get_activation("leaky_relu").alpha == 0.2
    assert get_activation("leaky_relu", alpha=0.01) == nnxp.activations.LeakyReLU(0.01)
    assert get_activation(act.config()) == act


def test_squared_error_closed_form(backend, dtype_name):
    dtype = backend.dtype(dtype_name)
    a = backend.asarray(np.array([[0.5, 0.25], [1.0, 0.0]]), dtype)
    y = backend.asarray(np.array([[1.0, 0.0], [0.0, 0.0]]), dtype)
    loss = SquaredError()
    value = loss.value(get_activation("identity"), a, a, y)
    assert_on(backend, value, dtype_name)
    # ((0.25 + 0.0625) + (1 + 0)) / 2 samples
    assert float(value) == pytest.approx(0.65625, rel=RTOL[dtype_name])
    delta = loss.delta(get_activation("identity"), a, a, y)
    np.testing.assert_allclose(host(delta), [[-0.5, 0.25], [1.0, 0.0]], rtol=RTOL[dtype_name])


def test_cross_entropy_closed_form_and_stability(backend):
    dtype = backend.dtype("float32")
    softmax = get_activation("softmax")
    z = backend.asarray(np.array([[0.0, math.log(3.0)], [200.0, -200.0]]), dtype)
    y = backend.asarray(np.array([[1.0, 0.0], [0.0, 1.0]]), dtype)
    a = softmax.forward(z)
    value = float(CrossEntropy().value(softmax, z, a, y))
    # Sample 1: -log(1/4); sample 2: the wrong class at 400 below: -log softmax = 400.
    assert value == pytest.approx((math.log(4.0) + 400.0) / 2, rel=1e-5)
    delta = host(CrossEntropy().delta(softmax, z, a, y))
    np.testing.assert_allclose(delta, [[-0.375, 0.375], [0.5, -0.5]], rtol=1e-5)


def test_binary_cross_entropy_closed_form(backend):
    dtype = backend.dtype("float32")
    sigmoid = get_activation("sigmoid")
    z = backend.asarray(np.array([[0.0], [-100.0]]), dtype)
    y = backend.asarray(np.array([[1.0], [1.0]]), dtype)
    value = float(CrossEntropy().value(sigmoid, z, sigmoid.forward(z), y))
    assert value == pytest.approx((math.log(2.0) + 100.0) / 2, rel=1e-5)


def test_unknown_loss_names_choices():
    with pytest.raises(nnxp.ConfigError, match="choose one of squared_error, cross_entropy"):
        nnxp.get_loss("mse")


@pytest.mark.parametrize("loss,output", [("cross_entropy", "softmax"), ("cross_entropy", "sigmoid"),
                                         ("squared_error", "softmax"), ("squared_error", "tanh")])
def test_fused_forward_equals_separate_steps(backend, dtype_name, loss, output):
    dtype = backend.dtype(dtype_name)
    rng = np.random.default_rng(2)
    z = backend.asarray(rng.normal(scale=3.0, size=(6, 4)), dtype)
    y = backend.asarray(np.eye(4)[rng.integers(0, 4, 6)], dtype)
    act, cost_fn = get_activation(output), nnxp.get_loss(loss)
    a, cost, delta = cost_fn.forward(act, z, y)
    a_ref = act.forward(z)
    for got, want in [(a, a_ref), (cost, cost_fn.value(act, z, a_ref, y)), (delta, cost_fn.delta(act, z, a_ref, y))]:
        assert_on(backend, got, dtype_name)
        np.testing.assert_allclose(host(got), host(want), rtol=RTOL[dtype_name], atol=1e-7)


@pytest.mark.parametrize("loss,output", [("cross_entropy", "softmax"), ("cross_entropy", "sigmoid"),
                                         ("squared_error", "identity"), ("half_squared_error", "identity")])
def test_rows_weighted_mean_and_l2_against_scikit_learn(backend, dtype_name, loss, output):
    """Per-sample costs average to the cost; weighted and clipped they are scikit-learn's MLP
    losses (sklearn.neural_network._base), computed in float64 NumPy; the L2 term and its gradient."""
    base = pytest.importorskip("sklearn.neural_network._base", reason="scikit-learn is not installed")
    from nnxp.losses import l2_penalty, weighted_mean

    dtype = backend.dtype(dtype_name)
    rng = np.random.default_rng(3)
    z64 = rng.normal(scale=3.0, size=(7, 4))
    y64 = np.eye(4)[rng.integers(0, 4, 7)] if output == "softmax" else (rng.random((7, 4)) > 0.5) * 1.0
    w64 = rng.uniform(0.2, 3.0, size=7)
    act, cost_fn = get_activation(output), nnxp.get_loss(loss)
    z, y, w = (backend.asarray(v, dtype) for v in (z64, y64, w64))
    a = act.forward(z)
    rows = cost_fn.rows(act, z, a, y)
    assert_on(backend, rows, dtype_name)
    np.testing.assert_allclose(host(rows).mean(), float(cost_fn.value(act, z, a, y)), rtol=RTOL[dtype_name])
    eps = float(np.finfo(dtype_name).eps)
    clipped = cost_fn.rows(act, z, a, y, clip=eps) if loss == "cross_entropy" else rows
    got = float(weighted_mean(clipped, w))
    a64 = host(a).astype(np.float64)
    want = {"cross_entropy": lambda: (base.log_loss if output == "softmax" else base.binary_log_loss)(y64, a64, w64),
            "squared_error": lambda: 2 * 4 * base.squared_loss(y64, a64, w64),  # sklearn: half, mean over outputs
            "half_squared_error": lambda: 4 * base.squared_loss(y64, a64, w64)}[loss]()
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype_name] * 10)
    weights = [backend.asarray(rng.normal(size=s), dtype) for s in [(3, 4), (2, 3)]]
    value, grads = l2_penalty(weights, 0.25)
    assert float(value) == pytest.approx(0.125 * sum((host(m) ** 2).sum() for m in weights), rel=RTOL[dtype_name])
    for g, m in zip(grads, weights):
        np.testing.assert_allclose(host(g), 0.25 * host(m), rtol=RTOL[dtype_name])


def test_half_squared_error_is_half_with_the_plain_residual(backend, dtype_name):
    dtype = backend.dtype(dtype_name)
    a = backend.asarray(np.array([[0.5, 0.25], [1.0, 0.0]]), dtype)
    y = backend.asarray(np.array([[1.0, 0.0], [0.0, 0.0]]), dtype)
    identity, half = get_activation("identity"), nnxp.get_loss("half_squared_error")
    assert float(half.value(identity, a, a, y)) == pytest.approx(0.65625 / 2, rel=RTOL[dtype_name])
    np.testing.assert_allclose(host(half.delta(identity, a, a, y)), [[-0.25, 0.125], [0.5, 0.0]], rtol=RTOL[dtype_name])


def test_clipped_cross_entropy_stays_finite_where_outputs_saturate(backend):
    dtype = backend.dtype("float32")
    sigmoid = get_activation("sigmoid")
    z = backend.asarray(np.array([[200.0], [-200.0]]), dtype)  # a rounds to exactly 1 and 0
    y = backend.asarray(np.array([[0.0], [1.0]]), dtype)
    eps = float(np.finfo(np.float32).eps)
    rows = host(CrossEntropy().rows(sigmoid, z, sigmoid.forward(z), y, clip=eps))
    np.testing.assert_allclose(rows, -math.log(eps), rtol=1e-5)  # as scikit-learn's log_loss clips
