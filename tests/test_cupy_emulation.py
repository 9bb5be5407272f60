"""nnxp's CuPy path, run on the CPU EMULATION of CuPy (support.cupy_emulation), equals the generic path.

EMULATION: the kernels' bodies are compiled as C++ by the system compiler and
run over NumPy buffers with CuPy's call rules.  This proves the CuPy path's
arithmetic and plumbing (which kernel gets which arguments, in which type), not
its speed and not CUDA's own code generation (tests/test_cupy_kernels.py
compiles the same kernels with CuPy's generator and NVRTC).

- the emulation follows CuPy's rules and can fail (its own tests, first);
- every fused kernel equals its generic formula on edge values (+-0, NaN,
  +-inf, huge, tiny), float32 and float64;
- ``fit`` through the real ``CuPyOps`` equals ``fit`` through the generic path
  for every hidden activation x loss x dtype x optimizer, with a short last
  batch;
- injected mistakes (a wrong sign in a derivative, swapped Adam betas, a
  float32 learning rate, ...) are caught by one of the checks above.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnxp
from nnxp.kernels import cupy as _cupy_ops
from nnxp.kernels import cupy_fused, cupy_kernels, ops_for
from nnxp.activations import ACTIVATIONS, get_activation

from conftest import OPTIMIZERS, make_backend

em = pytest.importorskip("support.cupy_emulation")

HIDDEN = sorted(name for name in ACTIVATIONS if name != "softmax")
LOSSES = [("squared_error", "sigmoid"), ("cross_entropy", "softmax")]
# Fused and generic agree to rounding: the same operations in the same order, bar
# tanh/exp from the C library instead of NumPy's (1 ulp apart at most), which Adam's
# division by sqrt(v) amplifies for the smallest gradients.  Relative to the largest update.
UPDATE_RTOL = {"float64": 1e-10, "float32": 1e-3}
EDGE_RTOL = {"float64": 1e-15, "float32": 1e-6}


@pytest.fixture(scope="module")
def emulated():
    return make_backend("cupy-emulated")


def dev(x, dtype=None):
    return em.to_device(np.asarray(x, dtype=dtype))


# -- the emulation follows CuPy's rules ---------------------------------------------


def test_elementwise_kernel_follows_cupys_call_rules(emulated):
    scale = em.cupy.ElementwiseKernel("T x, T s", "T y", "y = x * s", "nnxp_test_scale")
    x32 = dev([3.0, 7.0], np.float32)
    # A Python float for a T parameter is cast to T first (CuPy's CScalar.apply_dtype):
    # float32(0.1) * x, not the double product rounded.
    np.testing.assert_array_equal(scale(x32, 0.1), x32.view(np.ndarray) * np.float32(0.1))
    assert scale(x32, 0.1).dtype == np.float32
    with pytest.raises(TypeError, match="mismatched"):
        scale(x32, 0.1, dev([0.0, 0.0], np.float64))           # T bound to float32, output float64
    em.COUNTERS.reset()
    scale(np.ones(2, np.float32), 0.1)                           # a host array: CuPy refuses it,
    assert em.COUNTERS.untracked == 1                            # the emulation counts it
    with pytest.raises(ValueError, match="Out shape"):
        scale(dev(np.ones((2, 2)), np.float32), 0.1, x32)        # an output smaller than the loop
    with pytest.raises(TypeError, match="Wrong number"):
        scale(x32)
    add = em.cupy.ElementwiseKernel("T b", "T z", "z = z + b", "nnxp_test_bias")
    z = dev(np.zeros((3, 2)), np.float64)
    add(dev([1.0, 2.0]), z)                                      # b broadcasts over the rows
    np.testing.assert_array_equal(z, [[1.0, 2.0]] * 3)
    typed = em.cupy.ElementwiseKernel("float64 x", "T y", "y = x", "nnxp_test_typed")
    with pytest.raises(TypeError, match="mismatched"):
        typed(x32, dev([0.0, 0.0], np.float32))                  # a typed parameter needs that dtype


def test_a_body_that_does_not_compile_raises(emulated):
    broken = em.cupy.ElementwiseKernel("T a", "T g", "g = i < n ? g : (T)0", "nnxp_test_broken")
    with pytest.raises(em.CompileException, match="'n' was not declared|identifier"):
        broken(dev([1.0]), dev([1.0]))


def test_raw_kernel_runs_every_thread_and_checks_scalar_types(emulated):
    code = r'''
    extern "C" __global__ void nnxp_test_axpy(const float* x, float* y, float a, long long n) {
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
        if (i < n) y[i] += a * x[i];
    }'''
    kernel = em.cupy.RawKernel(code, "nnxp_test_axpy")
    x, y = dev(np.arange(10), np.float32), dev(np.ones(10), np.float32)
    kernel((3,), (4,), (x, y, np.float32(2.0), 10))
    np.testing.assert_array_equal(y, 1.0 + 2.0 * np.arange(10))
    with pytest.raises(TypeError, match="passed as float64 but the kernel declares float"):
        kernel((3,), (4,), (x, y, 2.0, 10))  # a Python float is a double: misread on a GPU


def test_launches_allocations_and_host_reads_are_counted(emulated):
    em.COUNTERS.reset()
    x = dev(np.ones((4, 3)), np.float64)
    out = em.cupy.empty((4, 4), np.float64)
    em.cupy.matmul(x, x.T, out=out)
    y = x * 2.0
    float(y[0, 0])
    assert (em.COUNTERS.launches, em.COUNTERS.allocations, em.COUNTERS.host_reads) == (2, 3, 1)


# -- fused kernels equal their generic formulas on edge values --------------------------

EDGES = {
    "float64": [0.0, -0.0, np.nan, np.inf, -np.inf, 1e300, -1e300, 5e-324, -5e-324, 1.5, -2.5, 40.0, -40.0],
    "float32": [0.0, -0.0, np.nan, np.inf, -np.inf, 3e38, -3e38, 1e-45, -1e-45, 1.5, -2.5, 40.0, -40.0],
}


def assert_same(actual, expected, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, what
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{what}: NaN positions")
    np.testing.assert_allclose(actual, expected, rtol=EDGE_RTOL[actual.dtype.name], atol=0,
                               err_msg=what)


def edge_check(name: str, dtype: str, ops) -> None:
    """Fused forward and backward of activation ``name`` against its generic formulas on edge values.

    Every edge value of z meets every edge value of g; z = x [[1]]^T + [0] is an
    exact one-column product, so the kernel sees the edge values themselves.
    """
    act = get_activation(name)
    values = np.array(EDGES[dtype], dtype=dtype)
    x = np.repeat(values, len(values))[:, None]
    g = np.tile(values, len(values))[:, None]
    one, zero = np.ones((1, 1), dtype), np.zeros(1, dtype)
    with np.errstate(all="ignore"):
        fused = ops.linear_activate(dev(x), dev(one), dev(zero), act, ("z", 0))
        expected_a = act.forward(x @ one.T + zero)
        assert_same(fused, expected_a, f"{name} forward")
        assert_same(ops.activation_backward(act, dev(expected_a), dev(g)), act.backward(expected_a, g),
                    f"{name} backward")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", HIDDEN)
def test_fused_activation_equals_generic_on_edge_values(emulated, name, dtype):
    edge_check(name, dtype, _cupy_ops.CuPyOps(em.cupy))


# -- fit through the CuPy path equals fit through the generic path ---------------------


def fit_updates(backend, hidden, loss, output, dtype, optimizer, fast, epochs=2, schedule="constant"):
    """Weight changes after ``epochs`` epochs of 37 samples in batches of 16 (16, 16 and a short 5)."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(37, 8)), rng.integers(0, 3, 37)
    net = nnxp.Network([8, 16, 3], hidden=hidden, output=output, loss=loss, seed=4, device=backend,
                       dtype=dtype)
    before = [w for pair in net.get_weights() for w in pair]
    net.fit(x, y, epochs=epochs, batch_size=16, optimizer=OPTIMIZERS[optimizer](), verbose=0, fast=fast,
            schedule=schedule)
    return [w - w0 for w, w0 in zip((w for pair in net.get_weights() for w in pair), before)]


def fit_mismatch(backend, hidden, loss, output, dtype, optimizer) -> float:
    """Largest difference between the CuPy path's and the generic path's updates, relative to the largest update."""
    generic = fit_updates(backend, hidden, loss, output, dtype, optimizer, fast=False)
    fused = fit_updates(backend, hidden, loss, output, dtype, optimizer, fast=True)
    scale = max(float(np.max(np.abs(u))) for u in generic)
    return max(float(np.max(np.abs(f - u))) for f, u in zip(fused, generic)) / scale


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss,output", LOSSES)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_fit_through_cupy_path_equals_generic(emulated, hidden, loss, output, dtype, optimizer):
    assert type(ops_for(emulated)) is _cupy_ops.CuPyOps
    assert fit_mismatch(emulated, hidden, loss, output, dtype, optimizer) <= UPDATE_RTOL[dtype]


# -- injected mistakes are caught ------------------------------------------------------

ADAM = cupy_kernels.KERNELS["nnxp_update_adam"]
SGD = cupy_kernels.KERNELS["nnxp_update_sgd"]
# name: (kernel replaced, its wrong version, the check that must catch it)
MISTAKES = {
    "tanh derivative sign": ("nnxp_backward_tanh", cupy_kernels.KERNELS["nnxp_backward_tanh"]._replace(
        operation="g = g * ((T)1 + a * a)"), ("fit", "tanh", "float64", "sgd")),
    "sigmoid derivative sign": ("nnxp_backward_sigmoid", cupy_kernels.KERNELS["nnxp_backward_sigmoid"]._replace(
        operation="g = g * (a * (a - (T)1))"), ("fit", "sigmoid", "float32", "adam")),
    "leaky ReLU slopes swapped": ("nnxp_backward_leaky_relu", cupy_kernels.KERNELS[
        "nnxp_backward_leaky_relu"]._replace(operation="g = g * (c + alpha * (T)(a > (T)0))"), ("fit", "leaky_relu", "float32", "sgd")),
    "Adam betas swapped": ("nnxp_update_adam", ADAM._replace(operation=ADAM.operation.replace(
        "b1 * m + c1", "b2 * m + c2").replace("b2 * v + c2", "b1 * v + c1")), ("fit", "tanh", "float32", "adam")),
    "float32 lr in float64 SGD": ("nnxp_update_sgd", SGD._replace(in_params="T g, float32 lr, T wd"),
                                  ("fit", "relu", "float64", "sgd")),
    "AdamW decay dropped": ("nnxp_update_adam", ADAM._replace(operation=ADAM.operation.replace(
        "p = p * decay;", "")), ("fit", "relu", "float64", "adamw")),
    "bias not added": ("nnxp_forward_identity", cupy_kernels.KERNELS["nnxp_forward_identity"]._replace(
        operation="z = z"), ("fit", "identity", "float64", "sgd")),
    "ReLU turns NaN into 0": ("nnxp_forward_relu", cupy_kernels.KERNELS["nnxp_forward_relu"]._replace(
        operation="T v = z + b; z = v > (T)0 ? v : (T)0"), ("edge", "relu", "float32", None)),
    "momentum never stored": ("nnxp_update_momentum", cupy_kernels.KERNELS["nnxp_update_momentum"]._replace(
        operation="T grad = g + wd * p; T w = mu * v + grad; p = p - lr * (nesterov ? grad + mu * w : w)"),
        ("fit", "tanh", "float64", "momentum")),
}


def clear_kernel_caches() -> None:
    """Forget compiled kernels, so that the next step builds them from KERNELS again."""
    cupy_kernels.kernel.cache_clear()
    cupy_fused.RAW_KERNELS.clear()
    cupy_fused._raw_cache.clear()


def mistake_caught(emulated, mistake: str, monkeypatch) -> bool:
    name, wrong, (check, hidden, dtype, optimizer) = MISTAKES[mistake]
    monkeypatch.setitem(cupy_kernels.KERNELS, name, wrong)
    if name.startswith("nnxp_update_"):  # the fused step's update over flat buffers is derived from it
        monkeypatch.setitem(cupy_kernels.KERNELS, name + "_flat", cupy_kernels._flat(wrong))
    clear_kernel_caches()
    try:
        if check == "edge":
            try:
                edge_check(hidden, dtype, _cupy_ops.CuPyOps(em.cupy))
            except AssertionError:
                return True
            return False
        try:
            return not fit_mismatch(emulated, hidden, "cross_entropy", "softmax", dtype, optimizer) <= UPDATE_RTOL[dtype]
        except TypeError:  # CuPy's own type check refuses it (a float64 device scalar for a float32 parameter)
            return True
    finally:
        monkeypatch.undo()
        clear_kernel_caches()


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_injected_mistake_is_caught(emulated, mistake, monkeypatch):
    assert mistake_caught(emulated, mistake, monkeypatch), f"the emulation misses: {mistake}"


# -- the calls NVRTC compiles are the calls nnxp makes -----------------------------------


def test_kernel_calls_in_training_are_the_ones_compiled_by_nvrtc(emulated):
    """tests/test_cupy_kernels.py compiles each kernel for a described call; training makes exactly those."""
    from test_cupy_kernels import FORMS, describe_call

    em.SIGNATURES.clear()
    for dtype in ("float32", "float64"):
        for hidden in HIDDEN:
            for optimizer in ("sgd", "momentum", "adamw"):
                for loss, output in LOSSES:  # the fused step, and the per-operation path
                    fit_updates(emulated, hidden, loss, output, dtype, optimizer, fast=True)
    described = {(name, describe_call(name, cupy_kernels.KERNELS[name], dtype, device_scalars))
                 for name, device_scalars in FORMS for dtype in ("float32", "float64")}
    assert em.SIGNATURES <= described, sorted(em.SIGNATURES - described)
    assert {name for name, _ in em.SIGNATURES} == set(cupy_kernels.KERNELS)


# -- the budget: launches and allocations per steady-state step ----------------------------

STEP_BUDGET = 12  # kernel launches per step for 784-H-10 (issue 9); allocations: none


def per_step_counts(backend, optimizer: str, fast: bool = True) -> dict:
    """Per steady-state step of fit, 784-64-10, batch 32 (tests/support/launches.py counts them)."""
    from support.launches import per_step_counts as counts

    return counts(backend, OPTIMIZERS[optimizer], fast=fast, sizes=(784, 64, 10), batch=32)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "adamw"])
def test_a_fused_step_launches_at_most_12_kernels_and_allocates_nothing(emulated, optimizer, monkeypatch):
    monkeypatch.setenv("NNXP_CUDA_GRAPHS", "0")
    counts = per_step_counts(emulated, optimizer)
    assert counts["launches"] <= STEP_BUDGET, counts["by_name"]
    assert counts["allocations"] == 0 and counts["host_reads"] == 0 and counts["untracked"] == 0, counts


def test_the_budget_test_can_fail(emulated):
    """The reference path on the same emulated device is far over the budget: the counter counts."""
    counts = per_step_counts(emulated, "adam", fast=False)
    assert counts["launches"] > 3 * STEP_BUDGET and counts["allocations"] > 3 * STEP_BUDGET


# -- CUDA graphs ------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adamw"])
def test_a_graphed_step_is_one_replay_an_index_copy_and_a_scalar_upload(emulated, optimizer):
    counts = per_step_counts(emulated, optimizer)
    assert counts["by_name"] == {"cupy.copyto": 1.0, "cuda_graph": 1.0}, counts
    assert counts["allocations"] == 0 and counts["host_reads"] == 0 and counts["untracked"] == 0, counts
    assert counts["host_writes"] == 1  # the step's scalars (lr, bias corrections), not baked into the graph


@pytest.mark.parametrize("optimizer", ["momentum", "adam", "adamw"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_graph_replays_equal_eager_steps(emulated, dtype, optimizer, monkeypatch):
    """Adam's bias corrections change every step and the cosine schedule's lr every epoch: a
    scalar baked into the graph would make the replays differ from eager steps."""
    updates = {}
    for graphs in ("0", "1"):
        monkeypatch.setenv("NNXP_CUDA_GRAPHS", graphs)
        em.COUNTERS.reset()
        updates[graphs] = fit_updates(emulated, "tanh", "cross_entropy", "softmax", dtype, optimizer, fast=True,
                                      epochs=3, schedule="cosine")
        assert (em.COUNTERS.by_name.get("cuda_graph", 0) > 0) == (graphs == "1")
    scale = max(float(np.max(np.abs(u))) for u in updates["0"])
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(updates["1"], updates["0"])) <= UPDATE_RTOL[dtype] * scale


def test_a_scalar_baked_into_the_graph_is_caught(emulated, monkeypatch):
    """The check above can fail: the update given host floats during capture (baked in)."""
    real = cupy_fused.FusedStep._update
    monkeypatch.setattr(cupy_fused.FusedStep, "_update", lambda self, optimizer, scalars=None: real(self, optimizer))
    with pytest.raises(AssertionError):
        test_graph_replays_equal_eager_steps(emulated, "float64", "adam", monkeypatch)


def test_cuda_graphs_can_be_turned_off(emulated):
    rng = np.random.default_rng(0)
    net = nnxp.Network([8, 16, 3], seed=4, device=emulated)
    for graphs in (True, False):
        em.COUNTERS.reset()
        net.fit(rng.normal(size=(48, 8)), rng.integers(0, 3, 48), epochs=1, batch_size=16, verbose=0,
                cuda_graphs=graphs)
        assert (em.COUNTERS.by_name.get("cuda_graph", 0) == 2) == graphs  # steps 2 and 3 replay
