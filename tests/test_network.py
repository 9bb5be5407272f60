"""Forward pass and backpropagation against independent references.

References: the seed project's hand-computed 3-2-3 vector, float64 central
finite differences, and PyTorch autograd (when installed).
"""

from __future__ import annotations

import numpy as np
import pytest

import nnxp
from nnxp.kernels import ops_for
from nnxp.activations import ACTIVATIONS

from conftest import RTOL, assert_on, host
from tolerance import reordering_tolerance

# -- the seed's hand-computed 3-2-3 vector ------------------------------------------------

SEED_W1 = [[-0.75, 0.5, -0.25], [0.25, -0.5, 0.75]]
SEED_B1 = [0.0, 1.0]
SEED_W2 = [[-0.75, 0.75], [0.5, -0.5], [-0.25, 0.25]]
SEED_B2 = [0.75, 0.5, 0.25]
SEED_X = [[0.25, 0.5, 0.75]]
SEED_Y = [[0.0, 1.0, 0.0]]

EXPECTED_A1 = [-0.025, 1.375]
EXPECTED_A2 = [0.8581489, 0.450166, 0.6456563]
EXPECTED_DB2 = [0.208924, -0.272186, 0.295432]
EXPECTED_DW2 = [[-0.0052231, 0.287271], [0.00680465, -0.374256], [-0.0073858, 0.406219]]
EXPECTED_DB1 = [-0.0733288, 0.366644]
EXPECTED_DW1 = [[-0.0183322, -0.0366644, -0.0549966], [0.091661, 0.183322, 0.274983]]


def seed_network(backend, dtype_name):
    net = nnxp.Network([3, 2, 3], hidden="leaky_relu", output="sigmoid", loss="squared_error",
                       dtype=dtype_name, device=backend)
    return net.set_weights([(SEED_W1, SEED_B1), (SEED_W2, SEED_B2)])


def test_seed_vector(backend, dtype_name):
    net = seed_network(backend, dtype_name)
    atol = 1e-6 if dtype_name == "float64" else 1e-5
    x = backend.asarray(np.array(SEED_X), backend.dtype(dtype_name))

    hidden = net.layers[0].activation.forward(x @ net.layers[0].weight.T + net.layers[0].bias)
    np.testing.assert_allclose(host(hidden)[0], EXPECTED_A1, atol=atol)
    out = net.forward(x)
    assert_on(backend, out, dtype_name)
    np.testing.assert_allclose(host(out)[0], EXPECTED_A2, atol=atol)

    (dw1, db1), (dw2, db2) = net.gradients(x, SEED_Y)
    for got, want in [(dw1, EXPECTED_DW1), (db1, EXPECTED_DB1), (dw2, EXPECTED_DW2), (db2, EXPECTED_DB2)]:
        assert_on(backend, got, dtype_name)
        np.testing.assert_allclose(host(got), want, atol=atol)


def test_seed_cost_closed_form(backend, dtype_name):
    # C = sum_j (a_j - y_j)^2 for the seed's single sample.
    net = seed_network(backend, dtype_name)
    want = sum((a - y) ** 2 for a, y in zip(EXPECTED_A2, SEED_Y[0]))
    assert net.cost(SEED_X, SEED_Y) == pytest.approx(want, abs=1e-5)


# -- finite differences for every activation x loss pair ------------------------------------

ACTIVATION_NAMES = sorted(ACTIVATIONS)
# (loss, output activation): squared error after every activation; cross-entropy after
# the two outputs it supports.
PAIRS = [("squared_error", name) for name in ACTIVATION_NAMES] + [
    ("cross_entropy", "softmax"), ("cross_entropy", "sigmoid")]


def random_problem(sizes, batch, output, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, sizes[0]))
    if output == "softmax":
        y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], batch)]
    else:
        y = rng.uniform(0.05, 0.95, size=(batch, sizes[-1]))
    return x, y


def finite_difference_gradients(net64, x, y, h=1e-6):
    """Central differences of the float64 cost with respect to every parameter."""
    weights = net64.get_weights()
    grads = []
    for i, (w, b) in enumerate(weights):
        pair = []
        for param in (w, b):
            g = np.zeros_like(param)
            for idx in np.ndindex(param.shape):
                saved = param[idx]
                param[idx] = saved + h
                up = net64.set_weights(weights).cost(x, y)
                param[idx] = saved - h
                down = net64.set_weights(weights).cost(x, y)
                param[idx] = saved
                g[idx] = (up - down) / (2 * h)
            pair.append(g)
        grads.append(tuple(pair))
    net64.set_weights(weights)
    return grads


@pytest.mark.parametrize("hidden", ACTIVATION_NAMES)
@pytest.mark.parametrize("loss,output", PAIRS, ids=[f"{l}-{o}" for l, o in PAIRS])
def test_gradients_match_finite_differences(backend, dtype_name, hidden, loss, output):
    sizes = [4, 5, 4, 3]  # three layers
    batch = (1, 3, 8)[(ACTIVATION_NAMES.index(hidden) + PAIRS.index((loss, output))) % 3]
    x, y = random_problem(sizes, batch, output, seed=len(hidden) * 7 + batch)
    net = nnxp.Network(sizes, hidden=hidden, output=output, loss=loss, init="xavier", seed=3,
                       dtype=dtype_name, device=backend)
    # The finite differences are taken in float64 on NumPy, with the same weights: an
    # independent host reference for every backend (and cheap where each operation is
    # slow, as on dask).
    net64 = nnxp.Network(sizes, hidden=hidden, output=output, loss=loss, dtype="float64", device="cpu")
    net64.set_weights(net.get_weights())
    want = finite_difference_gradients(net64, x, y)
    got = net.gradients(x, y)
    rtol = 1e-6 if dtype_name == "float64" else 1e-3
    atol = 1e-8 if dtype_name == "float64" else 1e-5
    for (gw, gb), (ww, wb) in zip(got, want):
        assert_on(backend, gw, dtype_name)
        assert_on(backend, gb, dtype_name)
        np.testing.assert_allclose(host(gw), ww, rtol=rtol, atol=atol)
        np.testing.assert_allclose(host(gb), wb, rtol=rtol, atol=atol)


@pytest.mark.parametrize("loss,output", [("squared_error", "sigmoid"), ("cross_entropy", "softmax")])
def test_batch_gradient_is_mean_of_sample_gradients(backend, dtype_name, loss, output):
    sizes = [6, 8, 5, 4]
    x, y = random_problem(sizes, 7, output, seed=11)
    net = nnxp.Network(sizes, hidden="tanh", output=output, loss=loss, seed=5,
                       dtype=dtype_name, device=backend)
    batch = net.gradients(x, y)
    per_sample = [net.gradients(x[i:i + 1], y[i:i + 1]) for i in range(len(x))]
    for layer, (gw, gb) in enumerate(batch):
        mean_w = np.mean([host(g[layer][0]) for g in per_sample], axis=0)
        mean_b = np.mean([host(g[layer][1]) for g in per_sample], axis=0)
        np.testing.assert_allclose(host(gw), mean_w, rtol=RTOL[dtype_name] * 10, atol=1e-7)
        np.testing.assert_allclose(host(gb), mean_b, rtol=RTOL[dtype_name] * 10, atol=1e-7)


# -- PyTorch autograd as a reference -----------------------------------------------------------

@pytest.mark.parametrize("hidden", ACTIVATION_NAMES)
@pytest.mark.parametrize("loss,output", PAIRS, ids=[f"{l}-{o}" for l, o in PAIRS])
def test_gradients_match_torch_autograd(backend, hidden, loss, output):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    dtype_name = "float64" if backend.supports("float64") else "float32"
    sizes = [5, 7, 6, 4]
    x, y = random_problem(sizes, 9, output, seed=21)
    net = nnxp.Network(sizes, hidden=hidden, output=output, loss=loss, seed=8,
                       dtype=dtype_name, device=backend)

    torch_act = {
        "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
        "leaky_relu": lambda z: torch.nn.functional.leaky_relu(z, 0.2),
        "identity": lambda z: z, "softmax": lambda z: torch.softmax(z, dim=1),
    }
    params = [(torch.tensor(w, dtype=torch.float64, requires_grad=True),
               torch.tensor(b, dtype=torch.float64, requires_grad=True))
              for w, b in net.get_weights()]
    a = torch.tensor(x)
    target = torch.tensor(y)
    for i, (w, b) in enumerate(params):
        z = a @ w.T + b
        if i < len(params) - 1:
            a = torch_act[hidden](z)
    if loss == "squared_error":
        cost = ((torch_act[output](z) - target) ** 2).sum() / len(x)
    elif output == "softmax":
        cost = -(target * torch.log_softmax(z, dim=1)).sum() / len(x)
    else:
        cost = torch.nn.functional.binary_cross_entropy_with_logits(z, target, reduction="sum") / len(x)
    cost.backward()

    assert net.cost(x, y) == pytest.approx(cost.item(), rel=1e-10 if dtype_name == "float64" else 1e-5)
    rtol = 1e-10 if dtype_name == "float64" else 1e-4
    for (gw, gb), (tw, tb) in zip(net.gradients(x, y), params):
        np.testing.assert_allclose(host(gw), tw.grad.numpy(), rtol=rtol, atol=rtol * 1e-2)
        np.testing.assert_allclose(host(gb), tb.grad.numpy(), rtol=rtol, atol=rtol * 1e-2)


# -- construction, devices, dtypes ----------------------------------------------------------------

def test_same_seed_same_network_on_every_backend(backend, dtype_name):
    net = nnxp.Network([7, 5, 3], seed=42, dtype=dtype_name, device=backend)
    ref = nnxp.Network([7, 5, 3], seed=42, dtype="float64", device="cpu")
    for (w, b), (rw, rb) in zip(net.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(w, rw, rtol=RTOL[dtype_name])
        np.testing.assert_allclose(b, rb, rtol=RTOL[dtype_name])
    for p in net.parameters():
        assert_on(backend, p, dtype_name)


@pytest.mark.parametrize("init", ["uniform", "xavier", "he"])
def test_init_statistics(init):
    net = nnxp.Network([400, 300, 10], hidden="relu", init=init, seed=0, dtype="float64", device="cpu")
    w, b = net.get_weights()[0]
    if init == "uniform":
        assert -1 <= w.min() and w.max() < 1 and abs(w.std() - 1 / np.sqrt(3)) < 0.01
        assert b.std() > 0.3
    elif init == "xavier":
        r = np.sqrt(6 / 700)
        assert abs(w).max() <= r and abs(w.std() - r / np.sqrt(3)) < 0.01 * r
        assert not b.any()
    else:
        assert abs(w.std() - np.sqrt(2 / 400)) < 0.02 * np.sqrt(2 / 400)
        assert not b.any()


def test_forward_preserves_device_and_dtype(backend, dtype_name):
    net = nnxp.Network([4, 3, 2], hidden="sigmoid", output="softmax", dtype=dtype_name, device=backend)
    x = backend.asarray(np.ones((5, 4)), backend.dtype(dtype_name))
    out = net.forward(x)
    assert_on(backend, out, dtype_name)
    assert tuple(out.shape) == (5, 2)
    np.testing.assert_allclose(host(out).sum(axis=1), 1.0, rtol=RTOL[dtype_name])
    labels = net.classify(x)
    assert backend.owns(labels) and tuple(labels.shape) == (5,)


def test_predict_in_chunks_equals_forward(backend):
    net = nnxp.Network([4, 6, 3], seed=1, device=backend)
    x = np.random.default_rng(0).normal(size=(25, 4))
    # chunks of 7 rows may be blocked differently by BLAS than 25: float32 rounding, 2 products of fan-in <= 6
    np.testing.assert_allclose(host(net.predict(x, batch_size=7)), host(net.forward(x)),
                               **reordering_tolerance(net.dtype_name, 6, layers=2))


def test_move_between_devices(backend, dtype_name):
    net = nnxp.Network([3, 4, 2], seed=9, dtype=dtype_name, device="cpu" if backend.supports(dtype_name) else backend)
    x = np.random.default_rng(1).normal(size=(4, 3))
    before = host(net.forward(x))
    net.to(backend)
    for p in net.parameters():
        assert_on(backend, p, dtype_name)
    np.testing.assert_allclose(host(net.forward(x)), before, rtol=RTOL[dtype_name])
    net.to("cpu")
    assert net.backend.name == "numpy"
    np.testing.assert_allclose(host(net.forward(x)), before, rtol=RTOL[dtype_name])


def test_set_weights_copies(backend):
    w = np.zeros((2, 3))
    net = nnxp.Network([3, 2], output="identity", device=backend).set_weights([(w, np.zeros(2))])
    # The fast path updates in place where the backend allows it.
    ops_for(net.backend).optimizer_step(nnxp.SGD(lr=1.0), net.parameters(),
                                        [net.xp.ones_like(p) for p in net.parameters()])
    assert not w.any(), "set_weights must not alias the caller's array"


# -- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    ({"sizes": [3]}, "2 or more positive integers"),
    ({"sizes": [3, 0, 2]}, "2 or more positive integers"),
    ({"sizes": "abc"}, "list of layer widths"),
    ({"hidden": "swish"}, "unknown activation 'swish'"),
    ({"hidden": "leaky_relu:-1"}, "alpha must be in [0, 1)"),
    ({"output": "relu", "loss": "cross_entropy"}, "needs a softmax or sigmoid output"),
    ({"loss": "hinge"}, "unknown loss 'hinge'"),
    ({"init": "orthogonal"}, "unknown init 'orthogonal'"),
    ({"dtype": "float16"}, "unknown dtype 'float16'"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"device": "cuda:x"}, "cuda:N"),
    ({"hidden": ["relu", "tanh"]}, "2 hidden activations given for 1 hidden layers"),
])
def test_bad_configuration_is_one_clear_error(kwargs, message):
    args = {"sizes": [3, 4, 2], **kwargs}
    with pytest.raises(nnxp.NnxpError) as info:
        nnxp.Network(args.pop("sizes"), **args)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_inputs_are_clear_errors(backend):
    net = nnxp.Network([3, 4, 2], device=backend)
    x = np.ones((5, 3))
    cases = [
        (lambda: net.forward(np.ones((5, 4))), "has 4 features per sample but the network takes 3"),
        (lambda: net.forward(np.ones(3)), "must be 2-D"),
        (lambda: net.gradients(x, np.zeros(4, dtype=int)), "y has 4 samples but x has 5"),
        (lambda: net.gradients(x, np.array([0, 1, 2, 0, 1])), "class labels from 0 to 2 but the network has 2 classes"),
        (lambda: net.gradients(x, np.ones((5, 3))), "targets (samples, 2)"),
        (lambda: net.forward(np.array([[1.0, np.nan, 0.0]])), "NaN or infinite"),
        (lambda: net.gradients(x, np.full((5, 2), np.inf)), "NaN or infinite"),
        (lambda: net.forward(np.array([["a", "b", "c"]])), "must hold real numbers"),
        (lambda: net.set_weights([(np.ones((4, 3)), np.ones(4))]), "got 1 parameter groups for 2 layers"),
        (lambda: net.set_weights([(np.ones((3, 4)), np.ones(4)), (np.ones((2, 4)), np.ones(2))]),
         "weight must have shape (4, 3) (out, in)"),
    ]
    for call, message in cases:
        with pytest.raises(nnxp.NnxpError) as info:
            call()
        assert message in str(info.value), str(info.value)


def test_cuda_without_gpu_names_the_fix():
    if nnxp.cuda_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(nnxp.BackendError) as info:
        nnxp.Network([2, 2], device="cuda")
    message = str(info.value)
    assert "cuda" in message and ("pip install" in message or "no CUDA GPU" in message)
    assert "--device cpu" in message


def test_bad_seed_and_empty_inputs_are_clear_errors():
    for seed in (-1, 1.5, "x"):
        with pytest.raises(nnxp.ConfigError, match="seed must be a whole number"):
            nnxp.Network([2, 2], seed=seed, device="cpu")
    net = nnxp.Network([2, 2], device="cpu")
    with pytest.raises(nnxp.ShapeError, match="x has no samples"):
        net.fit(np.zeros((0, 2)), np.zeros(0, dtype=int), verbose=0)
    with pytest.raises(nnxp.ConfigError, match="seed must be"):
        net.fit(np.zeros((2, 2)), np.zeros(2, dtype=int), seed=-3, verbose=0)
