"""The executors (nnxp.kernels) run the reference formulas, and nothing else.

- every fast path gives the reference's numbers: backprop, whole training runs,
  every activation x loss x dtype x optimizer;
- every fast entry agrees with its formula on edge values (+-0, +-large, NaN, +-inf);
- fast paths are keyed by exact type: a user's subclass that changes the maths
  gives the same numbers with fast=True and fast=False.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnxp
from nnxp.activations import ACTIVATIONS, ReLU
from nnxp.kernels import ArrayAPIOps, ops_for

from conftest import OPTIMIZERS, RTOL, assert_on, host, make_backend
from tolerance import reordering_tolerance


@pytest.fixture(params=["numpy", "cupy", "cupy-emulated"])
def fast_backend(request):
    """The backends that have a fast path (the others always run the reference)."""
    return make_backend(request.param)


def fast_ops(backend):
    if backend.name == "cupy":
        from nnxp.kernels.cupy import CuPyOps

        return CuPyOps()  # tested whether or not NNXP_CUPY_FUSED turns it on by default
    ops = ops_for(backend)
    assert type(ops) is not ArrayAPIOps, f"{backend} should have a fast path"
    return ops


@pytest.mark.parametrize("hidden", sorted(ACTIVATIONS))
@pytest.mark.parametrize("loss,output", [("squared_error", "sigmoid"), ("cross_entropy", "softmax"),
                                         ("cross_entropy", "sigmoid"), ("squared_error", "identity")])
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_fast_backprop_equals_reference(fast_backend, dtype_name, hidden, loss, output):
    ops = fast_ops(fast_backend)
    # CUDA's (and the C library's) exp and tanh are a few ulp from NumPy's: 2e-5 is 170 float32 ulp
    # of a result near 1, yet two sigmoid layers reach it; the CuPy paths get 5x that.
    rtol = RTOL[dtype_name] * (5 if fast_backend.name in ("cupy", "cupy-emulated") else 1)
    rng = np.random.default_rng(0)
    net = nnxp.Network([6, 9, 7, 4], hidden=hidden, output=output, loss=loss, seed=2,
                       dtype=dtype_name, device=fast_backend)
    for batch in (5, 3, 5):  # a smaller batch reuses the buffers' leading rows
        x = net.inputs(rng.normal(size=(batch, 6)))
        y = net.targets(rng.integers(0, 4, batch), batch)
        cost_ref, grads_ref, out_ref = net.backprop(x, y, ArrayAPIOps())
        cost, grads, out = net.backprop(x, y, ops)
        assert float(cost) == pytest.approx(float(cost_ref), rel=rtol)
        np.testing.assert_allclose(host(out), host(out_ref), rtol=rtol)
        for g, r in zip(grads, grads_ref):
            assert_on(fast_backend, g, dtype_name)
            np.testing.assert_allclose(host(g), host(r), rtol=rtol * 10, atol=1e-7)


def test_fast_take_rows_equals_reference(fast_backend):
    ops = fast_ops(fast_backend)
    dtype = fast_backend.dtype("float32")
    x = fast_backend.asarray(np.arange(20.0).reshape(10, 2), dtype)
    index = fast_backend.asarray(np.array([3, 0, 9, 3]), fast_backend.index_dtype)
    np.testing.assert_array_equal(host(ops.take_rows(x, index, "k")), host(ArrayAPIOps().take_rows(x, index, "k")))


def train_twice(backend, make_optimizer, hidden="leaky_relu", dropout=0.0, dtype="float32"):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 8)), rng.integers(0, 3, 50)  # 50 = 3 x 16 + a short last batch
    nets = []
    for fast in (False, True):
        net = nnxp.Network([8, 16, 3], hidden=hidden, seed=4, device=backend, dropout=dropout, dtype=dtype)
        net.fit(x, y, epochs=2, batch_size=16, optimizer=make_optimizer(), verbose=0, fast=fast)
        nets.append(net)
    return nets


# train_twice in float32: the fast path's BLAS calls against the reference's matmul, through
# 8 steps (4 batches x 2 epochs) of 2 products of fan-in <= 16 each.
TRAINED_TWICE = reordering_tolerance("float32", 16, layers=2 * 8)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fast_training_equals_reference(fast_backend, optimizer, dtype, monkeypatch):
    monkeypatch.setenv("NNXP_CUPY_FUSED", "1")
    fast_ops(fast_backend)
    reference, fast = train_twice(fast_backend, OPTIMIZERS[optimizer], dtype=dtype)
    for ref_group, fast_group in zip(reference.get_weights(), fast.get_weights()):
        for r, f in zip(ref_group, fast_group):
            np.testing.assert_allclose(f, r, rtol=1e-5, atol=1e-6)


# -- user subclasses run their own maths ---------------------------------------------------


class ClippedSGD(nnxp.SGD):
    """SGD whose steps are clipped to +-0.01: same name as SGD, other maths."""

    def update(self, p, g, state):
        from array_api_compat import array_namespace

        xp = array_namespace(p, g)
        return p - xp.clip(self.lr * g, min=-0.01, max=0.01), {}


class ReLU6(ReLU):
    """min(max(z, 0), 6): same name as ReLU, other maths."""

    def forward(self, z):
        from array_api_compat import array_namespace

        return array_namespace(z).clip(z, min=0.0, max=6.0)

    def derivative(self, a):
        from array_api_compat import array_namespace

        xp = array_namespace(a)
        return xp.astype((a > 0) & (a < 6.0), a.dtype)


def test_optimizer_subclass_runs_its_own_update(fast_backend):
    reference, fast = train_twice(fast_backend, lambda: ClippedSGD(lr=0.5))
    plain = train_twice(fast_backend, lambda: nnxp.SGD(lr=0.5))[0]
    for r, f, p in zip(reference.parameters(), fast.parameters(), plain.parameters()):
        np.testing.assert_allclose(host(f), host(r), **TRAINED_TWICE)
    assert not np.allclose(host(reference.parameters()[0]), host(plain.parameters()[0])), \
        "the clipped update should differ from SGD's"


def test_activation_subclass_runs_its_own_formula(fast_backend):
    reference, fast = train_twice(fast_backend, lambda: nnxp.SGD(lr=0.5), hidden=ReLU6())
    for r, f in zip(reference.parameters(), fast.parameters()):
        np.testing.assert_allclose(host(f), host(r), **TRAINED_TWICE)
    x = np.full((2, 8), 10.0)
    assert float(host(reference.layers[0].activation.forward(reference.xp.asarray(x))).max()) == 6.0


# -- every fast entry against its formula, on edge values ----------------------------------------

EDGES = [0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30, 3e38, -3e38, 88.0, -88.0, 1e4, -1e4,
         np.inf, -np.inf, np.nan, 0.5, -0.5, 2.0]


def _edge_arrays(dtype):
    z = np.array(EDGES, dtype=dtype)
    grid_z, grid_g = np.meshgrid(z, z)
    return grid_z.ravel()[None, :].copy(), grid_g.ravel()[None, :].copy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_activation_entries_on_edge_values(dtype):
    from nnxp.kernels.numpy import BACKWARD, FORWARD

    z, g = _edge_arrays(dtype)
    with np.errstate(all="ignore"):
        for cls, fast in FORWARD.items():
            for act in (cls(), cls(alpha=0.0)) if cls is nnxp.activations.LeakyReLU else (cls(),):
                want = act.forward(np.asarray(z))
                got = fast(act, z.copy())
                np.testing.assert_array_equal(got, want, err_msg=f"{act!r} forward")
        for cls, fast in BACKWARD.items():
            for act in (cls(), cls(alpha=0.0)) if cls is nnxp.activations.LeakyReLU else (cls(),):
                a = act.forward(np.asarray(z))
                want = act.backward(a, g)
                got = fast(act, a, g.copy())
                np.testing.assert_array_equal(got, want, err_msg=f"{act!r} backward")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_loss_entry_on_edge_values(dtype):
    from nnxp.kernels.numpy import LOSSES

    z = np.array([[0.0, -0.0, 88.0, -88.0], [3e38, -3e38, 1.0, 2.0], [1e4, -1e4, 0.5, 0.0]], dtype=dtype)
    y = np.eye(4, dtype=dtype)[[2, 0, 1]]
    with np.errstate(all="ignore"):
        for (loss_cls, out_cls), fast in LOSSES.items():
            want = loss_cls().forward(out_cls(), z, y)
            got = fast(loss_cls(), out_cls(), z.copy(), y)
            for w, f in zip(want, got):
                np.testing.assert_allclose(np.asarray(f), np.asarray(w), rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_numpy_update_entries_on_edge_values(dtype, optimizer):
    from nnxp.kernels.numpy import UPDATES

    z, g = _edge_arrays(dtype)
    opt_ref, opt_fast = OPTIMIZERS[optimizer](), OPTIMIZERS[optimizer]()
    fast = UPDATES[type(opt_fast)]
    p_ref, p_fast = z.copy(), z.copy()
    with np.errstate(all="ignore"):
        for _ in range(2):
            [p_ref] = opt_ref.step([p_ref], [g.copy()])
            opt_fast.begin_step([p_fast], [g])
            fast(opt_fast, p_fast, g.copy(), opt_fast.slot(0))
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(p_fast, p_ref, rtol=tol, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("contiguous", [True, False])
def test_gemm_update_into_equals_numpy(dtype, contiguous):
    from nnxp.kernels.blas import gemm_tn_into

    rng = np.random.default_rng(3)
    a = rng.normal(size=(7, 5)).astype(dtype)
    b = rng.normal(size=(7, 9)).astype(dtype) if contiguous else rng.normal(size=(9, 7)).astype(dtype).T
    c = rng.normal(size=(5, 9)).astype(dtype)
    want = 0.75 * c - 0.1 * (a.astype(np.float64).T @ b.astype(np.float64))
    gemm_tn_into(c, a, b, alpha=-0.1, beta=0.75)
    np.testing.assert_allclose(c, want, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_gradients_are_always_arrays_whatever_the_optimizer():
    # The SGD fold happens inside one training step; an executor used for SGD can then
    # step another optimizer, and its public weight_grad returns arrays.
    cpu = nnxp.get_backend("cpu")
    ops = ops_for(cpu)
    net = nnxp.Network([4, 5, 3], device=cpu)
    x, y = net.inputs(np.ones((6, 4))), net.targets(np.arange(6) % 3, 6)
    net.train_step(x, y, nnxp.SGD(lr=0.1), ops)
    net.train_step(x, y, nnxp.Adam(lr=0.1), ops)
    grad = ops.weight_grad(np.ones((3, 2), np.float32), np.ones((3, 4), np.float32), "k")
    assert isinstance(grad, np.ndarray)
    np.testing.assert_array_equal(grad, np.full((2, 4), 3.0))
