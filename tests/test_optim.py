"""One optimizer step against a hand computation in NumPy float64, and several
steps against torch.optim when PyTorch is installed.  Each runs through both
executors: the optimizer's own rule (new arrays) and the backend's fast path
(in place where the backend has one)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnxp
from nnxp.kernels import ops_for

from conftest import RTOL, assert_on, host

P0 = np.array([[0.5, -1.0, 2.0], [0.0, 0.25, -0.75]])
G1 = np.array([[0.1, 0.2, -0.3], [-0.4, 0.5, 0.0]])
G2 = np.array([[-0.2, 0.1, 0.3], [0.6, -0.5, 0.25]])


@pytest.fixture(params=["reference", "fast"])
def executor(request):
    return request.param


def run(backend, dtype_name, optimizer, grads, executor="reference"):
    dtype = backend.dtype(dtype_name)
    p = backend.asarray(P0, dtype, copy=True)
    ops = ops_for(backend, fast=executor == "fast")
    for g in grads:
        [p] = ops.optimizer_step(optimizer, [p], [backend.asarray(g, dtype, copy=True)])
    assert_on(backend, p, dtype_name)
    return host(p)


def test_sgd_step(backend, dtype_name, executor):
    got = run(backend, dtype_name, nnxp.SGD(lr=0.1), [G1], executor)
    np.testing.assert_allclose(got, P0 - 0.1 * G1, rtol=RTOL[dtype_name])


def test_sgd_weight_decay_step(backend, dtype_name, executor):
    got = run(backend, dtype_name, nnxp.SGD(lr=0.1, weight_decay=0.01), [G1], executor)
    np.testing.assert_allclose(got, P0 - 0.1 * (G1 + 0.01 * P0), rtol=RTOL[dtype_name])


def test_momentum_two_steps(backend, dtype_name, executor):
    got = run(backend, dtype_name, nnxp.SGD(lr=0.1, momentum=0.9), [G1, G2], executor)
    v1 = G1
    p1 = P0 - 0.1 * v1
    v2 = 0.9 * v1 + G2
    np.testing.assert_allclose(got, p1 - 0.1 * v2, rtol=RTOL[dtype_name])


def test_nesterov_two_steps(backend, dtype_name, executor):
    got = run(backend, dtype_name, nnxp.SGD(lr=0.1, momentum=0.9, nesterov=True), [G1, G2], executor)
    v1 = G1
    p1 = P0 - 0.1 * (G1 + 0.9 * v1)
    v2 = 0.9 * v1 + G2
    np.testing.assert_allclose(got, p1 - 0.1 * (G2 + 0.9 * v2), rtol=RTOL[dtype_name])


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_two_steps(backend, dtype_name, decoupled, executor):
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.999, 1e-8, 0.1
    opt = (nnxp.AdamW if decoupled else nnxp.Adam)(lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd)
    got = run(backend, dtype_name, opt, [G1, G2], executor)
    p, m, v = P0.copy(), np.zeros_like(P0), np.zeros_like(P0)
    for t, g in enumerate([G1, G2], start=1):
        if decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    np.testing.assert_allclose(got, p, rtol=RTOL[dtype_name] * 10)


def test_adam_first_step_moves_each_weight_by_lr(backend):
    # Closed form: at t = 1, m_hat = g and v_hat = g^2, so the step is lr * sign(g).
    got = run(backend, "float32", nnxp.Adam(lr=0.01, eps=1e-12), [G1])
    np.testing.assert_allclose(got, P0 - 0.01 * np.sign(G1), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name,kwargs", [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.1, "momentum": 0.8, "nesterov": True}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.05}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.05}),
])
def test_matches_torch_optim(name, kwargs):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=P0.shape) for _ in range(5)]
    torch_kwargs = dict(kwargs)
    if name != "SGD":
        torch_kwargs.update(betas=(0.9, 0.999), eps=1e-8)
    tp = torch.tensor(P0, requires_grad=True)
    topt = getattr(torch.optim, name)([tp], **torch_kwargs)
    for g in grads:
        tp.grad = torch.tensor(g)
        topt.step()
    got = run(nnxp.get_backend("cpu"), "float64", getattr(nnxp, name)(**kwargs), grads)
    np.testing.assert_allclose(got, tp.detach().numpy(), rtol=1e-12)


def test_state_lives_with_the_parameters(backend):
    opt = nnxp.SGD(lr=0.1, momentum=0.5)
    dtype = backend.dtype("float32")
    p = backend.asarray(P0, dtype, copy=True)
    opt.step([p], [backend.asarray(G1, dtype)])
    assert opt.t == 1
    assert_on(backend, opt.state["velocity"][0], "float32")


@pytest.mark.parametrize("make,message", [
    (lambda: nnxp.SGD(lr=0), "learning rate must be finite and > 0"),
    (lambda: nnxp.SGD(lr=math.nan), "learning rate must be finite"),
    (lambda: nnxp.SGD(lr="fast"), "learning rate must be a number"),
    (lambda: nnxp.SGD(lr=0.1, momentum=1.0), "momentum must be < 1"),
    (lambda: nnxp.SGD(lr=0.1, nesterov=True), "nesterov=True needs momentum > 0"),
    (lambda: nnxp.Adam(beta1=1.0), "betas must be in [0, 1)"),
    (lambda: nnxp.get_optimizer("rmsprop"), "unknown optimizer 'rmsprop'"),
])
def test_bad_hyperparameters(make, message):
    with pytest.raises(nnxp.ConfigError) as info:
        make()
    assert message in str(info.value)


def test_named_optimizers():
    assert nnxp.get_optimizer("momentum", lr=0.05).config() == {
        "name": "sgd", "lr": 0.05, "weight_decay": 0.0, "momentum": 0.9, "nesterov": False}
    assert nnxp.get_optimizer("nesterov").nesterov
    assert isinstance(nnxp.get_optimizer("adamw"), nnxp.AdamW)


@pytest.mark.parametrize("make", [lambda: nnxp.Adam(lr=0.1), lambda: nnxp.SGD(lr=0.1, momentum=0.9)])
def test_state_does_not_carry_over_to_other_parameters(make):
    # An optimizer used on other parameter arrays starts afresh: the first step on the
    # new ones equals a brand-new optimizer's (Adam: bias correction from t = 1).
    cpu = nnxp.get_backend("cpu")
    used = make()
    old = cpu.asarray(np.zeros(5), cpu.dtype("float64"), copy=True)
    for _ in range(50):
        [old] = used.step([old], [cpu.asarray(np.full(5, -0.5), old.dtype)])
    new, fresh_p = (cpu.asarray(np.zeros(3), old.dtype, copy=True) for _ in range(2))
    g = cpu.asarray(np.full(3, 0.5), old.dtype)
    [new] = used.step([new], [g])
    [fresh_p] = make().step([fresh_p], [g])
    np.testing.assert_allclose(new, fresh_p, rtol=1e-12)
    assert used.t == 1


@pytest.mark.parametrize("make", [lambda: nnxp.Adam(lr=0.1), lambda: nnxp.SGD(lr=0.1, momentum=0.9)])
def test_rebinding_keeps_the_state(backend, make, executor):
    # Steps on the arrays the previous step returned (rebound or updated in place)
    # continue the run: t counts on and the moments are kept.
    opt = make()
    dtype = backend.dtype("float32")
    p = backend.asarray(P0, dtype, copy=True)
    ops = ops_for(backend, fast=executor == "fast")
    for step in range(1, 4):
        [p] = ops.optimizer_step(opt, [p], [backend.asarray(G1, dtype, copy=True)])
        assert opt.t == step


def test_adam_eps_before_correction_matches_scikit_learn(backend, dtype_name, executor):
    """scikit-learn's MLP Adam (its bias-corrected learning rate, eps outside the correction) is the reference."""
    optimizers = pytest.importorskip("sklearn.neural_network._stochastic_optimizers",
                                     reason="scikit-learn is not installed")
    lr, eps = 0.01, 1e-3  # an eps large enough for its placement to matter
    opt = nnxp.Adam(lr=lr, eps=eps, eps_before_correction=True)
    got = run(backend, dtype_name, opt, [G1, G2, G1], executor)
    p = P0.copy()
    reference = optimizers.AdamOptimizer([p], learning_rate_init=lr, epsilon=eps)
    for g in [G1, G2, G1]:
        reference.update_params([p], [g.copy()])
    np.testing.assert_allclose(got, p, rtol=RTOL[dtype_name] * 10)
    plain = run(backend, dtype_name, nnxp.Adam(lr=lr, eps=eps), [G1, G2, G1], executor)
    assert np.abs(plain - p).max() > 1e-6  # the option changes the result: the test can fail
