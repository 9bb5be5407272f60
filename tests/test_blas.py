"""BLAS providers (nnxp.kernels.blas): every provider gives the reference's numbers, ``auto``'s
calibration is cached per machine, and asking for a BLAS that is not installed is one clear line."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import nnxp
from nnxp.kernels import blas
from nnxp.kernels.blas import choice, providers
from nnxp.kernels.numpy import NumPyOps

from conftest import one_line_error, run_cli

PROVIDER_NAMES = ["openblas", "mkl"]


def load_provider(name):
    why = providers.mkl_missing() if name == "mkl" else ""
    if why:
        pytest.skip(f"mkl provider unavailable: {why}")
    return blas.provider(name)


@pytest.mark.parametrize("name", PROVIDER_NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["nn", "tn", "nt", "tt"])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-0.1, 1.0), (0.5, 0.75)])
def test_gemm_equals_float64_product(name, dtype, layout, alpha, beta):
    p = load_provider(name)
    rng = np.random.default_rng(5)
    a = rng.normal(size=(7, 5)).astype(dtype)
    b = rng.normal(size=(5, 9)).astype(dtype)
    if layout[0] == "t":
        a = np.ascontiguousarray(a.T).T  # F-contiguous: a transposed view, as w.T in z = x w^T
    if layout[1] == "t":
        b = np.ascontiguousarray(b.T).T
    c = rng.normal(size=(7, 9)).astype(dtype)
    c0 = c.copy()
    if beta == 0.0:
        c[0, 0] = np.nan  # with beta 0, c is written, not read
    want = alpha * (a.astype(np.float64) @ b.astype(np.float64)) + beta * c0.astype(np.float64)
    out = p.gemm(c, a, b, alpha, beta)
    assert out is c
    np.testing.assert_allclose(c, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def test_gemm_falls_back_to_numpy_for_strided_operands():
    p = blas.openblas()
    rng = np.random.default_rng(6)
    a = rng.normal(size=(6, 10)).astype(np.float32)[:, ::2]  # neither C- nor F-contiguous
    b = rng.normal(size=(5, 3)).astype(np.float32)
    c = np.ones((6, 3), np.float32)
    p.gemm(c, a, b, alpha=2.0, beta=-1.0)
    np.testing.assert_allclose(c, 2.0 * (a @ b) - 1.0, rtol=1e-5)


def train(blas_setting, optimizer, fast=True, sizes=(20, 32, 4)):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(70, sizes[0])), rng.integers(0, sizes[-1], 70)  # 70 = 2 x 32 + a short batch
    net = nnxp.Network(list(sizes), hidden="relu", seed=3, device="cpu")
    net.fit(x, y, epochs=2, batch_size=32, optimizer=optimizer(), verbose=0, fast=fast, blas=blas_setting)
    return net


@pytest.mark.parametrize("name", PROVIDER_NAMES)
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_every_provider_trains_to_the_reference_weights(name, optimizer):
    load_provider(name)
    make = {"sgd": lambda: nnxp.SGD(lr=0.1), "momentum": lambda: nnxp.SGD(lr=0.05, momentum=0.9),
            "adam": lambda: nnxp.Adam(lr=0.01)}[optimizer]
    reference = train(None, make, fast=False)
    fast = train(name, make)
    for ref_group, fast_group in zip(reference.get_weights(), fast.get_weights()):
        for r, f in zip(ref_group, fast_group):
            np.testing.assert_allclose(f, r, rtol=1e-5, atol=1e-6)


def test_the_named_provider_runs_the_products():
    p = blas.openblas()
    ops = NumPyOps(blas="openblas")
    net = nnxp.Network([8, 6, 3], device="cpu")
    x, y = net.inputs(np.ones((4, 8))), net.targets(np.arange(4) % 3, 4)
    net.train_step(x, y, nnxp.SGD(lr=0.1), ops)
    assert ops.provider is p


def second_provider():
    """NumPy's OpenBLAS under another name: a real second provider for auto to choose from."""
    base = blas.openblas()
    return providers.Provider("second", base._funcs, base.version, threads=base.threads)


@pytest.fixture
def two_providers(monkeypatch, tmp_path):
    monkeypatch.setenv("NNXP_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(providers.PROVIDERS, "second", second_provider)
    monkeypatch.setitem(providers.PROVIDERS, "mkl", _not_installed)
    monkeypatch.setattr(choice, "MIN_FLOPS", 0)
    return tmp_path / "blas-choice.json"


def _not_installed():
    raise nnxp.BackendError("not installed here")


def test_auto_calibrates_once_and_caches_the_choice(two_providers, monkeypatch):
    shapes = ((30, 40), (40, 5))
    first = blas.resolve("auto", shapes, 16, np.float32)
    assert first.name in ("openblas", "second")
    data = json.loads(two_providers.read_text())
    [(machine, steps)] = data["machines"].items()
    assert "numpy" in machine
    entry = steps["30-40-5 B16 float32"]
    assert entry["choice"] == first.name and set(entry["us"]) == {"openblas", "second"}
    assert all(v > 0 for v in entry["us"].values())

    def no_timing(*args, **kwargs):
        raise AssertionError("the cached choice must be used, not a new calibration")

    monkeypatch.setattr(choice, "calibrate", no_timing)
    assert blas.resolve("auto", shapes, 16, np.float32).name == first.name
    with pytest.raises(AssertionError):  # another batch size is another step: timed again
        blas.resolve("auto", shapes, 64, np.float32)


def test_auto_never_picks_a_provider_that_is_not_faster(two_providers, monkeypatch):
    # "second" 2% faster than openblas: within the margin, so openblas stays
    monkeypatch.setattr(choice, "calibrate", lambda ps, *a, **k: {"openblas": 1.0, "second": 0.98})
    assert blas.resolve("auto", ((30, 40),), 8, np.float32).name == "openblas"
    monkeypatch.setattr(choice, "calibrate", lambda ps, *a, **k: {"openblas": 1.0, "second": 0.5})
    assert blas.resolve("auto", ((30, 40),), 9, np.float32).name == "second"


def test_a_corrupt_cache_is_replaced(two_providers):
    two_providers.write_text("{not json")
    blas.resolve("auto", ((30, 40),), 8, np.float32)
    assert json.loads(two_providers.read_text())["format"] == 1
    assert not list(two_providers.parent.glob(".*.tmp"))  # written atomically, nothing left over


def test_auto_without_mkl_is_openblas_with_no_timing(monkeypatch, tmp_path):
    monkeypatch.setenv("NNXP_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(providers.PROVIDERS, "mkl", _not_installed)
    monkeypatch.setattr(choice, "calibrate", lambda *a, **k: pytest.fail("nothing to choose from"))
    assert blas.resolve("auto", ((784, 256), (256, 10)), 128, np.float32).name == "openblas"
    assert not (tmp_path / "blas-choice.json").exists()


@pytest.fixture
def mkl_absent(monkeypatch):
    monkeypatch.setattr(providers, "_mkl_rt_path", lambda: None)
    providers.mkl.cache_clear()
    yield
    providers.mkl.cache_clear()


@pytest.mark.parametrize("command", [["train", "--no-save", "--epochs", "1"], ["bench", "--quick"]])
def test_blas_mkl_without_the_wheel_is_one_line_and_exit_2(capsys, mkl_absent, command):
    code, _, err = run_cli(capsys, *command, "--device", "cpu", "--blas", "mkl")
    assert code == 2
    line = one_line_error(err)
    assert "mkl BLAS is not installed" in line and "pip install 'nnxp[mkl]'" in line


def test_unknown_blas_is_one_line_and_exit_2(capsys):
    code, _, err = run_cli(capsys, "train", "--no-save", "--blas", "atlas")
    assert code == 2
    assert "unknown BLAS 'atlas'" in one_line_error(err)


def test_library_settings_reject_a_missing_or_unknown_blas(mkl_absent):
    with pytest.raises(nnxp.BackendError, match="pip install 'nnxp\\[mkl\\]'"):
        nnxp.set_blas("mkl")
    with pytest.raises(nnxp.ConfigError, match="unknown BLAS"):
        nnxp.set_blas("atlas")
    net = nnxp.Network([4, 3], device="cpu")
    with pytest.raises(nnxp.BackendError):
        net.fit(np.ones((4, 4)), [0, 1, 2, 0], epochs=1, verbose=0, blas="mkl")
    assert blas.blas_setting() == "auto"


def test_mkl_is_right_after_pytorch_loaded_its_own_mkl():
    # PyTorch's libtorch_cpu exports its statically linked MKL's symbols; once gave wrong products.
    pytest.importorskip("torch")
    load_provider("mkl")
    import subprocess
    import sys

    code = """
import torch, numpy as np
torch.ones(4) @ torch.ones(4)
from nnxp.kernels.blas import provider
rng = np.random.default_rng(0)
a, b = rng.normal(size=(64, 100)).astype(np.float32), rng.normal(size=(100, 30)).astype(np.float32)
c = np.ones((64, 30), np.float32)
provider("mkl").gemm(c, a, b, -0.5, 0.25)
print(np.abs(c - (0.25 - 0.5 * (a.astype(np.float64) @ b))).max())
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MKL_")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(nnxp.__file__))))
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 1e-4


MACHINE_STEP = ((30, 40),), 8, np.float32  # the step resolve() is asked about below


@pytest.mark.parametrize("cache,field", [
    ([1, 2], "not an object"),
    ({"format": 1, "machines": []}, "machines"),              # machines not an object
    ({"format": 1, "machines": {"M": [1]}}, 'machines["M"]'),  # a machine's steps not an object
    ({"format": 1, "machines": {"M": {"S": "mkl"}}}, 'machines["M"]["S"]'),  # an entry not an object
    ({"format": 1, "machines": {"M": {"S": {"choice": 7}}}}, "choice"),
    ({"format": 1, "machines": {"M": {"S": {"choice": "openblas", "us": {"openblas": "x"}}}}}, "us"),
    ({"format": "1", "machines": {}}, "format"),
    ("{not json", "not valid JSON"),
])
def test_a_cache_of_the_wrong_shape_is_measured_again_with_one_warning(two_providers, capsys, cache, field):
    """Issue 19: valid JSON of the wrong shape gave AttributeError/TypeError on every nnxp train."""
    machine = choice._machine_key([blas.openblas(), second_provider()])
    step = choice._step_key(*MACHINE_STEP)
    text = cache if isinstance(cache, str) else json.dumps(cache).replace('"M"', json.dumps(machine)).replace(
        '"S"', json.dumps(step))
    two_providers.write_text(text)
    assert blas.resolve("auto", *MACHINE_STEP).name in ("openblas", "second")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"nnxp: warning: {two_providers}: ")
    field = field.replace('"M"', json.dumps(machine)).replace('"S"', json.dumps(step))
    assert field in err and "measuring again" in err
    data = json.loads(two_providers.read_text())  # rewritten whole and valid
    assert data["format"] == 1 and data["machines"][machine][step]["choice"] in ("openblas", "second")
    blas.resolve("auto", *MACHINE_STEP)
    assert capsys.readouterr().err == ""  # the new cache is good: no warning the second time
