"""CUDA-graph capture of the fused CuPy step, on the CPU EMULATION (tests/support/cupy_emulation).

EMULATION, no GPU: the emulation refuses in capture what CuPy refuses (its cuBLAS
wrappers, ``matmul`` and ``dot``: cupy issue 6290; host syncs and pageable copies),
so a route that real CuPy would refuse fails here too.  tests/test_cublas_stub.py
checks those refusals against CuPy's own compiled wrapper with a stub libcublas.

- the emulation refuses what CuPy refuses (and the old route, CuPy's raw ``sgemm``
  inside capture, fails);
- :class:`nnxp.kernels.cublas_capture.CaptureBlas` binds its handle to the capture
  stream and a workspace before capture, and its ``cublasGemmEx`` equals ``matmul``
  for every transposition;
- TF32 (``CUPY_TF32=1``): the graph's products use the compute type of eager ones;
- a capture that fails falls back to eager fused steps, with one line saying why.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnxp
from nnxp.kernels import cublas_capture

from conftest import OPTIMIZERS, make_backend

em = pytest.importorskip("support.cupy_emulation")
from support.cupy_emulation.device import (CUBLAS_IN_CAPTURE, D2H_IN_CAPTURE, H2D_IN_CAPTURE,  # noqa: E402
                                           SYNC_IN_CAPTURE)


@pytest.fixture(scope="module")
def emulated():
    return make_backend("cupy-emulated")


def dev(x, dtype=None):
    return em.to_device(np.asarray(x, dtype=dtype))


def fit_weights(backend, dtype="float32", optimizer="adam", epochs=2):
    """Weights after ``epochs`` epochs of 37 samples in batches of 16 (two graph replays and a short batch)."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(37, 8)), rng.integers(0, 3, 37)
    net = nnxp.Network([8, 16, 3], seed=4, device=backend, dtype=dtype)
    net.fit(x, y, epochs=epochs, batch_size=16, optimizer=OPTIMIZERS[optimizer](), verbose=0)
    return [w for pair in net.get_weights() for w in pair]


# -- the emulation refuses in capture what CuPy refuses ---------------------------------------


def test_capture_refuses_cublas_syncs_and_pageable_copies(emulated):
    cp = em.cupy
    x = dev(np.ones((2, 2)))
    out = cp.empty((2, 2), np.float64)
    one = np.ones((), np.float64)
    stream = cp.cuda.Stream(non_blocking=True)
    stream.begin_capture()
    try:
        for call in (lambda: cp.matmul(x, x, out=out), lambda: cp.dot(x, x, out=out),
                     lambda: cp.cuda.cublas.dgemm(0, 0, 0, 2, 2, 2, one.ctypes.data, x.ctypes.data, 2,
                                                  x.ctypes.data, 2, one.ctypes.data, out.ctypes.data, 2)):
            with pytest.raises(NotImplementedError, match=CUBLAS_IN_CAPTURE):
                call()
        with pytest.raises(RuntimeError, match=H2D_IN_CAPTURE):
            x.set(np.zeros((2, 2)))
        with pytest.raises(RuntimeError, match=D2H_IN_CAPTURE):
            float(x[0, 0])
        with pytest.raises(RuntimeError, match=D2H_IN_CAPTURE):
            x.get()
        with pytest.raises(RuntimeError, match="cudaErrorStreamCaptureUnsupported"):
            stream.synchronize()
        with pytest.raises(RuntimeError, match="9655"):  # stricter than CuPy: an allocation in capture
            cp.empty((2, 2))
    finally:
        graph = stream.end_capture()
    assert graph.nodes == []
    cp.matmul(x, x, out=out)  # outside capture all of it runs
    x.set(np.zeros((2, 2)))
    stream.synchronize()
    assert SYNC_IN_CAPTURE.startswith("cudaErrorStreamCaptureUnsupported")


# -- nnxp's capture route ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_capture_blas_gemm_equals_matmul_for_every_transposition(emulated, dtype):
    """nnxp's row-major -> column-major mapping onto cublasGemmEx."""
    blas = cublas_capture.CaptureBlas(em.cupy)
    rng = np.random.default_rng(3)
    a, b = dev(rng.normal(size=(5, 3)), dtype), dev(rng.normal(size=(3, 4)), dtype)
    a_t, b_t = dev(np.ascontiguousarray(a.view(np.ndarray).T)), dev(np.ascontiguousarray(b.view(np.ndarray).T))
    for left, right in ((a, b), (a_t.T, b), (a, b_t.T), (a_t.T, b_t.T)):
        out = em.cupy.empty((5, 4), dtype)
        blas.gemm(left, right, out)
        np.testing.assert_allclose(out, a.view(np.ndarray) @ b.view(np.ndarray),
                                   rtol=10 * np.finfo(dtype).eps)
    with pytest.raises(TypeError):
        blas.gemm(a, dev(b.view(np.ndarray), "float64" if dtype == "float32" else "float32"), out)


def test_the_handle_is_bound_to_the_capture_stream_and_a_workspace_before_capture(emulated):
    library = em.cupy.cuda.cublas_library
    library.calls.clear()
    em.COUNTERS.reset()
    fit_weights(emulated, epochs=1)
    names = [name for name, _ in library.calls]
    first_gemm = names.index("cublasGemmEx")
    assert names[:first_gemm] == ["cublasCreate_v2", "cublasSetStream_v2", "cublasSetWorkspace_v2"], names
    handle = library.calls[0][1][0]
    stream = library.calls[1][1][1]
    assert stream != 0 and library.calls[1][1][0] == handle  # a capture stream, not the default one
    assert library.calls[2][1][2] == cublas_capture.WORKSPACE_BYTES
    gemms = [args for name, args in library.calls if name == "cublasGemmEx"]
    assert len(gemms) == 5 and all(args[0] == handle for args in gemms)  # 2 forward; dW2, da1, dW1
    assert em.COUNTERS.by_name["cuda_graph"] == 1  # the second full batch is a replay of those


def test_a_gemm_on_a_handle_bound_to_another_stream_is_not_in_the_graph(emulated):
    """The emulation runs it at once, as a GPU would: the replays would then miss it."""
    cp = em.cupy
    blas = cublas_capture.CaptureBlas(cp)
    a, out = dev(np.eye(2)), cp.empty((2, 2), np.float64)
    blas.bind(cp.cuda.Stream().ptr)
    stream = cp.cuda.Stream(non_blocking=True)
    stream.begin_capture()
    blas.gemm(a, a, out)
    assert stream.end_capture().nodes == []
    blas.bind(stream.ptr)
    stream.begin_capture()
    blas.gemm(a, a, out)
    assert [name for name, _ in stream.end_capture().nodes] == ["cublas.gemm"]


# -- TF32 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tf32", ["0", "1"])
def test_graph_products_use_the_compute_type_of_eager_ones(emulated, tf32, monkeypatch):
    monkeypatch.setenv("CUPY_TF32", tf32)
    library = em.cupy.cuda.cublas_library
    library.calls.clear()
    fit_weights(emulated, "float32", epochs=1)
    expected = cublas_capture.CUBLAS_COMPUTE_32F_FAST_TF32 if tf32 == "1" else cublas_capture.CUBLAS_COMPUTE_32F
    assert {args[12] for name, args in library.calls if name == "cublasGemmEx"} == {expected}
    library.calls.clear()
    fit_weights(emulated, "float64", epochs=1)  # TF32 is for float32 only
    assert {args[12] for name, args in library.calls if name == "cublasGemmEx"} == {cublas_capture.CUBLAS_COMPUTE_64F}


def test_with_tf32_graph_replays_equal_eager_steps_and_differ_from_float32(emulated, monkeypatch):
    """TF32 rounds the products' inputs to 10 mantissa bits: a graph in full float32 beside eager
    TF32 steps (or the reverse) differs by far more than the graph/eager rounding noise."""
    runs = {}
    for tf32 in ("0", "1"):
        for graphs in ("0", "1"):
            monkeypatch.setenv("CUPY_TF32", tf32)
            monkeypatch.setenv("NNXP_CUDA_GRAPHS", graphs)
            runs[tf32, graphs] = fit_weights(emulated, "float32", "sgd", epochs=3)

    def gap(a, b):
        return max(float(np.max(np.abs(u - v))) for u, v in zip(runs[a], runs[b]))

    noise = 1e-6  # float32 rounding of the same products in another order, over 9 steps
    assert gap(("1", "1"), ("1", "0")) <= noise
    assert gap(("0", "1"), ("0", "0")) <= noise
    assert gap(("1", "0"), ("0", "0")) > 20 * noise


# -- a capture that fails ------------------------------------------------------------------------


def test_a_failed_capture_falls_back_to_eager_fused_steps_with_one_line(emulated, monkeypatch, capsys):
    """The route of the old code (CuPy's raw sgemm inside capture) fails as on real CuPy; fit goes on."""
    cp = em.cupy

    def old_route(self, a, b, out):
        one, zero = np.ones((), np.float32), np.zeros((), np.float32)
        cp.cuda.cublas.sgemm(0, 0, 0, int(b.shape[1]), int(a.shape[0]), int(a.shape[1]), one.ctypes.data,
                             b.ctypes.data, int(b.shape[1]), a.ctypes.data, int(a.shape[1]), zero.ctypes.data,
                             out.ctypes.data, int(b.shape[1]))
        return out

    monkeypatch.setenv("NNXP_CUDA_GRAPHS", "0")
    eager = fit_weights(emulated)
    capsys.readouterr()
    monkeypatch.setenv("NNXP_CUDA_GRAPHS", "1")
    monkeypatch.setattr(cublas_capture.CaptureBlas, "gemm", old_route)
    em.COUNTERS.reset()
    fallen_back = fit_weights(emulated)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nnxp: CUDA graphs off (NotImplementedError: " + CUBLAS_IN_CAPTURE), err
    assert "cuda_graph" not in em.COUNTERS.by_name
    for a, b in zip(fallen_back, eager):
        np.testing.assert_array_equal(a, b)


def test_the_product_never_imports_test_support():
    """The emulation is test support (tests/support): nothing under nnxp/ imports it."""
    import ast
    from pathlib import Path

    package = Path(nnxp.__file__).resolve().parent
    offenders = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(package)}: {n}" for n in names
                          if n.split(".")[0] in ("support", "tests", "conftest") or "emulation" in n]
    assert offenders == []


def test_a_replay_that_fails_falls_back_too(emulated, monkeypatch, capsys):
    """A graph that captured but does not launch: that step runs eagerly (counted once), then the rest."""
    monkeypatch.setenv("NNXP_CUDA_GRAPHS", "0")
    eager = fit_weights(emulated)
    capsys.readouterr()
    monkeypatch.setenv("NNXP_CUDA_GRAPHS", "1")

    def broken(self, stream=None):
        raise RuntimeError("cudaErrorLaunchFailure: stand-in for a graph that does not launch")

    from support.cupy_emulation import runtime

    monkeypatch.setattr(runtime._Graph, "launch", broken)
    fallen_back = fit_weights(emulated)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cudaErrorLaunchFailure" in err[0], err
    for a, b in zip(fallen_back, eager):
        np.testing.assert_array_equal(a, b)


# -- same seed, same result, whatever the order GPU threads run in ------------------------------

# The bias gradient summed by atomic float adds (the fused step's kernel before issue 18), for the check
# below to show that thread order does change such a sum.
_ATOMIC_BIAS_BACKWARD = r"""
typedef float T;
extern "C" __global__ void nnxp_bias_backward_tanh_float32(const T* a_, T* g_, T* db, T* partial,
        unsigned int* arrived, long long rows, long long cols, long long chunk, T alpha, T c) {
    long long n = rows * cols;
    long long threads = (long long)blockDim.x * gridDim.x * gridDim.y;
    for (long long i = ((long long)blockIdx.y * gridDim.x + blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += threads) {
        const T a = a_[i];
        T g = g_[i] * ((T)1 - a * a);
        g_[i] = g;
        atomicAdd(&db[i % cols], g);  /* db starts at 0: the flat update zeroes the gradients it read */
    }
}
"""


def shuffled_fit(backend, seed):
    """Weights and loss history of a float32 fit, the emulated threads shuffled with ``seed``."""
    em.THREAD_ORDER.shuffle(seed)
    try:
        rng = np.random.default_rng(1)
        x, y = rng.normal(size=(300, 8)), rng.integers(0, 3, 300)
        net = nnxp.Network([8, 64, 3], hidden="tanh", seed=4, device=backend, dtype="float32")
        history = net.fit(x, y, epochs=2, batch_size=128, optimizer=nnxp.SGD(lr=0.1), verbose=0)
        return [w for pair in net.get_weights() for w in pair], history["loss"]
    finally:
        em.THREAD_ORDER.shuffle(None)


@pytest.mark.parametrize("graphs", ["0", "1"])
def test_same_seed_same_bits_whatever_the_thread_order(emulated, graphs, monkeypatch):
    monkeypatch.setenv("NNXP_CUDA_GRAPHS", graphs)
    (w1, loss1), (w2, loss2) = shuffled_fit(emulated, 1), shuffled_fit(emulated, 2)
    assert loss1 == loss2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)


def test_the_thread_order_check_can_fail(emulated, monkeypatch):
    """With the bias gradient summed by atomic adds, two thread orders give other bits."""
    from nnxp.kernels import cupy_fused

    cupy_fused.raw_kernels()
    monkeypatch.setitem(cupy_fused.RAW_KERNELS, "nnxp_bias_backward_tanh_float32", _ATOMIC_BIAS_BACKWARD)
    monkeypatch.setattr(cupy_fused, "_raw_cache", {})
    monkeypatch.setenv("NNXP_CUDA_GRAPHS", "0")
    (w1, _), (w2, _) = shuffled_fit(emulated, 1), shuffled_fit(emulated, 2)
    assert any(not np.array_equal(a, b) for a, b in zip(w1, w2))


def test_the_graph_step_contender_times_replays(emulated):
    """``nnxp bench --contenders nnxp-sgd-graph`` (GPU only) times fit's step: one replay after the first."""
    from nnxp.bench.contenders import NnxpStep, _make_batches, initial_weights

    sizes = (784, 64, 10)
    step = NnxpStep("nnxp-adam-graph", sizes, initial_weights(sizes), _make_batches(sizes, 32), "adam",
                    device=emulated, graph=True)
    step.reset()
    for _ in range(3):
        step.step()
    em.COUNTERS.reset()
    step.step()
    assert dict(em.COUNTERS.by_name) == {"cupy.copyto": 1, "cuda_graph": 1}
    assert step.info()["cuda_graph"] is True


# -- on a real GPU (skipped without one: scripts/gpu_check.sh runs these there) ---------------------


@pytest.fixture(scope="module")
def gpu():
    return make_backend("cupy")  # skips, with the reason, where CuPy has no usable GPU


def gpu_fit(backend, optimizer="adam"):
    """The weight changes and loss history of 2 epochs (7 full batches and a short one each)."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(1000, 64)), rng.integers(0, 10, 1000)
    net = nnxp.Network([64, 128, 10], seed=4, device=backend, dtype="float32")
    before = [w for pair in net.get_weights() for w in pair]
    history = net.fit(x, y, epochs=2, batch_size=128, optimizer=OPTIMIZERS[optimizer](), verbose=0)
    return [w - w0 for w, w0 in zip((w for pair in net.get_weights() for w in pair), before)], history["loss"]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_on_the_gpu_capture_works_and_same_seed_gives_the_same_bits(gpu, optimizer, monkeypatch, capsys):
    runs = {}
    for graphs in ("1", "0"):
        monkeypatch.setenv("NNXP_CUDA_GRAPHS", graphs)
        runs[graphs] = [gpu_fit(gpu, optimizer) for _ in range(2)]
        err = capsys.readouterr().err
        assert "CUDA graphs off" not in err, err  # the capture itself worked (no fallback)
        (w1, loss1), (w2, loss2) = runs[graphs]
        assert loss1 == loss2, f"graphs={graphs}: the loss differs between two runs of one seed"
        for a, b in zip(w1, w2):
            np.testing.assert_array_equal(a, b, err_msg=f"graphs={graphs}: weights differ between two runs")
    # Graph replays and eager steps: the same maths, products perhaps by other cuBLAS algorithms (other
    # handles and workspaces): float32 rounding, which Adam's division by sqrt(v) amplifies for the
    # smallest gradients; relative to the largest update, as tests/test_cupy_emulation.py.
    scale = max(float(np.max(np.abs(u))) for u in runs["0"][0][0])
    for a, b in zip(runs["1"][0][0], runs["0"][0][0]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-3 * scale)
