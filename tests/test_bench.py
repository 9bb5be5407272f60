"""The benchmark harness measures the right thing: its contenders compute the same step
as nnxp, its FLOP count is right, and ``nnxp bench --quick`` runs end to end.

Correctness only: nothing here asserts a timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnxp
import nnxp.cli
from nnxp import bench
from nnxp.kernels import ops_for

from tolerance import reordering_tolerance

SIZES = [12, 9, 7, 4]  # two hidden layers, so every backprop branch runs


def problem(sizes=SIZES, batch=6, seed=0):
    """A float64 network, a batch with integer labels, and the same batch one-hot."""
    rng = np.random.default_rng(seed)
    net = nnxp.Network(sizes, hidden="relu", output="softmax", dtype="float64", device="cpu", seed=seed)
    x = rng.uniform(-1.0, 1.0, (batch, sizes[0]))
    labels = rng.integers(0, sizes[-1], batch)
    return net, x, labels, np.eye(sizes[-1])[labels]


def test_reference_gradients_equal_nnxp():
    net, x, labels, onehot = problem()
    ref = bench.ReferenceMLP(net.get_weights(), lr=0.01, dtype=np.float64)
    cost, grads, p = ref.gradients(x, onehot)
    assert float(cost) == pytest.approx(net.cost(x, labels), rel=1e-12)
    np.testing.assert_allclose(p, nnxp.to_numpy(net.forward(x)), rtol=1e-12, atol=1e-15)
    for (dw, db), (gw, gb) in zip(grads, net.gradients(x, labels)):
        np.testing.assert_allclose(dw, nnxp.to_numpy(gw), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(db, nnxp.to_numpy(gb), rtol=1e-10, atol=1e-14)


def test_reference_step_equals_nnxp_sgd_step_on_the_fast_path():
    net, x, labels, onehot = problem(seed=3)
    ref = bench.ReferenceMLP(net.get_weights(), lr=0.05, dtype=np.float64)
    ops = ops_for(net.backend)  # the path the benchmark times
    for _ in range(3):  # a few steps, so the weights the next step sees are updated ones
        ref_cost, ref_out = ref.step(x, onehot)
        cost, out = net.train_step(net.inputs(x), net.targets(labels, len(labels)), nnxp.SGD(lr=0.05), ops)
        assert float(ref_cost) == pytest.approx(float(cost), rel=1e-12)
        np.testing.assert_allclose(ref_out, nnxp.to_numpy(out), rtol=1e-12, atol=1e-15)
    for (w, b), rw, rb in zip(net.get_weights(), ref.W, ref.b):
        np.testing.assert_allclose(rw, w, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(rb, b, rtol=1e-12, atol=1e-15)


def test_reference_handles_dead_relu_units():
    # ReLU units that are off for the whole batch get zero gradients in both.
    net, x, labels, onehot = problem(seed=5)
    weights = net.get_weights()
    weights[0][1][:3] = -100.0  # biases that switch three hidden units off
    net.set_weights(weights)
    _, grads, _ = bench.ReferenceMLP(weights, dtype=np.float64).gradients(x, onehot)
    assert np.all(grads[0][0][:3] == 0.0)
    for (dw, _), (gw, _) in zip(grads, net.gradients(x, labels)):
        np.testing.assert_allclose(dw, nnxp.to_numpy(gw), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_torch_step_equals_nnxp_step(optimizer):
    pytest.importorskip("torch", reason="PyTorch is not installed")
    net, x, labels, _ = problem(batch=5, seed=1)
    batches = [(x, labels)]
    contender = bench.TorchStep(f"torch-{optimizer}", SIZES, net.get_weights(), batches, optimizer,
                                device="cpu", dtype="float64")
    mine = bench.NnxpStep(f"nnxp-{optimizer}", SIZES, net.get_weights(), batches, optimizer,
                          device="cpu", dtype="float64")
    for _ in range(3):
        contender.step()
        mine.step()
    for (tw, tb), (w, b) in zip(contender.weights(), mine.net.get_weights()):
        np.testing.assert_allclose(tw, w, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(tb, b, rtol=1e-10, atol=1e-13)


def test_contender_reset_restores_the_initial_weights():
    net, x, labels, _ = problem()
    start = net.get_weights()
    c = bench.NnxpStep("nnxp-sgd", SIZES, start, [(x, labels)], "sgd", dtype="float64")
    c.step()
    assert not np.allclose(c.net.get_weights()[0][0], start[0][0])
    c.reset()
    for (w, b), (w0, b0) in zip(c.net.get_weights(), start):
        np.testing.assert_array_equal(w, w0)
        np.testing.assert_array_equal(b, b0)


def test_gemm_floor_does_the_steps_products():
    c = bench.GemmFloor([5, 4, 3, 2], [(np.ones((6, 5), np.float32), None)])
    c.step()
    acts = [c.x[0], *c.hidden]
    tol = reordering_tolerance(np.float32, 6)  # its own BLAS calls against NumPy's matmul, fan-in <= 6
    for l, w in enumerate(c.W):
        np.testing.assert_allclose(c.z[l], acts[l] @ w.T, **tol)
        np.testing.assert_allclose(c.dW[l], c.delta[l].T @ acts[l], **tol)
    for l in (1, 2):
        np.testing.assert_allclose(c.da[l], c.delta[l] @ c.W[l], **tol)


def test_flop_formula_hand_example():
    # sizes 2-3-4, batch 5: products 2*3 = 6 and 3*4 = 12.
    # forward 2*5*(6+12) + weight gradients 2*5*(6+12) + input gradient of layer 2: 2*5*12
    assert bench.step_flops([2, 3, 4], 5) == 180 + 180 + 120
    # 784-256-10, batch 128: 2 * 128 * (2 * (200704 + 2560) + 2560)
    assert bench.step_flops([784, 256, 10], 128) == 104_726_528
    assert bench.step_flops([7, 1], 3) == 2 * 3 * 2 * 7  # one layer: no input gradient


def test_targets_are_checked_from_the_cases():
    case = {"sizes": [784, 256, 10], "batch": 128, "flops": 1,
            "contenders": {n: {"median_ms": ms} for n, ms in
                           [("nnxp-sgd", 1.0), ("numpy-ref", 1.0), ("torch-sgd", 1.5), ("gemm-floor", 0.8)]}}
    bench.add_ratios(case)
    t = bench.check_targets({"cases": [case]})
    assert t["nnxp_over_ref"]["met"] and t["torch_over_nnxp"]["met"] and t["floor_fraction"]["met"]
    case["contenders"]["gemm-floor"]["median_ms"] = 0.5
    bench.add_ratios(case)
    assert bench.check_targets({"cases": [case]})["floor_fraction"]["met"] is False


def test_bench_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["--quick", "--sizes", "20-8-10", "--batches", "8", "--repeats", "3", "--min-sample-ms", "1",
            "--warmup-ms", "2", "--settle-ms", "0", "--max-wait", "0", "--json", str(out)]
    assert nnxp.cli.main(["bench", *args]) == 0
    printed = capsys.readouterr().out
    assert "median ms per step" in printed and "20-8-10" in printed
    result = json.loads(out.read_text())
    assert result["schema"] == bench.SCHEMA and result["kind"] == "step"
    assert result["command"] == args
    (case,) = result["cases"]
    assert case["sizes"] == [20, 8, 10] and case["batch"] == 8
    assert case["flops"] == bench.step_flops([20, 8, 10], 8)
    names = {"nnxp-sgd", "nnxp-adam", "numpy-ref", "gemm-floor"}
    try:
        import torch  # noqa: F401

        names |= {"torch-sgd", "torch-adam", "torch-gemm-floor"}
    except ImportError:
        pass
    assert set(case["contenders"]) == names
    for c in case["contenders"].values():
        assert len(c["samples_s"]) == 3 and all(s > 0 for s in c["samples_s"])
        assert c["q1_ms"] <= c["median_ms"] <= c["q3_ms"]
    assert "machine" in result and "OPENBLAS_CORETYPE" in result["machine"]
    # the report can be rebuilt from the file, as markdown too, and put into a README
    assert nnxp.cli.main(["bench", "--from-json", str(out), "--markdown"]) == 0
    assert "| 20-8-10 | 8 |" in capsys.readouterr().out
    readme = tmp_path / "README.md"
    intro = "# Intro\nThe lines `<!-- nnxp-bench:step -->` and `<!-- /nnxp-bench:step -->` mark it.\n"
    readme.write_text(intro + "<!-- nnxp-bench:step -->\nold table\n<!-- /nnxp-bench:step -->\n## After\n")
    assert nnxp.cli.main(["bench", "--from-json", str(out), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith(intro + "<!-- nnxp-bench:step -->\n")
    assert text.endswith("<!-- /nnxp-bench:step -->\n## After\n")
    assert "old table" not in text and "| 20-8-10 | 8 |" in text


def test_race_runs_end_to_end(tmp_path):
    pytest.importorskip("torch", reason="PyTorch is not installed")
    out = tmp_path / "race.json"
    assert nnxp.cli.main(["bench", "--race", "--dataset", "bundled", "--target", "0.5", "--max-epochs", "2",
                          "--race-repeats", "1", "--max-wait", "0", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["kind"] == "race" and result["settings"]["dataset"] == "bundled"
    assert [r["contender"] for r in result["runs"]] == ["nnxp", "torch"]
    for r in result["runs"]:
        assert 1 <= r["epochs"] <= 2 and r["seconds"] > 0
        assert [e["epoch"] for e in r["per_epoch"]] == list(range(1, r["epochs"] + 1))


def test_bench_without_a_gpu_is_one_line_exit_2(capsys):
    if nnxp.cuda_available():
        pytest.skip("a GPU is present")
    assert nnxp.cli.main(["bench", "--device", "cuda", "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nnxp: error: ") and "\n" not in err


def test_bench_bad_arguments_exit_2(capsys):
    assert nnxp.cli.main(["bench", "--sizes", "784-x-10"]) == 2
    err = capsys.readouterr().err.strip()
    assert "784-x-10" in err and "\n" not in err
    assert nnxp.cli.main(["bench", "--quick", "--json", "/nonexistent-dir/x.json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nnxp: error: ") and "does not exist" in err


def test_scripts_are_thin_wrappers():
    root = Path(__file__).resolve().parents[1]
    for script in ("bench.py", "race.py"):
        done = subprocess.run([sys.executable, str(root / "scripts" / script), "--help"],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0 and "nnxp bench" in done.stdout


def test_pytorch_eager_step_operators_are_counted():
    """The operator count printed beside nnxp's launch counts (tests/support/launches.py)."""
    pytest.importorskip("torch", reason="PyTorch is not installed")
    from support.launches import torch_operator_counts

    sgd, adam = torch_operator_counts("sgd", batch=8), torch_operator_counts("adam", batch=8)
    assert sgd["kernel_names"].count("aten::mm") == 3  # forward, weight and input gradients
    assert 10 <= sgd["compute_operators"] < adam["compute_operators"] < adam["operators"]


def test_waiting_for_a_quiet_machine_is_said_at_once(capsys, monkeypatch):
    from nnxp.bench.timing import CpuMonitor

    monitor = CpuMonitor()
    monitor.ok = True
    monkeypatch.setattr(monitor, "snapshot", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(CpuMonitor, "foreign_cores", staticmethod(lambda a, b: 1.5))  # always busy
    waited, load = monitor.wait_idle(0.25, max_wait_s=0.2, window_s=0.05)
    assert 0.2 <= waited < 2.0 and load == 1.5
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("  other processes use 1.50 cores: waiting up to ")
    assert err[0].endswith(" s for them to use less than 0.25 (--max-wait SECONDS, "
                           "--max-foreign-load inf to not wait)")
    assert len(err) == 2 and err[1].startswith("  ... still busy after")


def test_quick_waits_a_few_seconds_at_most(monkeypatch):
    import nnxp.cli.bench

    seen = {}

    def fake_run(*args, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(nnxp.cli.bench, "run_step_bench", fake_run)
    for argv, wait in ((["--quick"], 5.0), ([], 600.0), (["--quick", "--max-wait", "30"], 30.0)):
        with pytest.raises(SystemExit):
            nnxp.cli.main(["bench", *argv])
        assert seen["max_wait_s"] == wait


def test_quick_times_the_readmes_headline_case(monkeypatch):
    import nnxp.cli.bench

    seen = {}

    def fake_run(sizes, batches, **kwargs):
        seen.update(sizes=sizes, batches=batches)
        raise SystemExit(0)

    monkeypatch.setattr(nnxp.cli.bench, "run_step_bench", fake_run)
    with pytest.raises(SystemExit):
        nnxp.cli.main(["bench", "--quick"])
    assert seen == {"sizes": [[784, 256, 10]], "batches": [128]}  # README's first row, and the targets' case
    assert bench.TARGETS["sizes"] == [784, 256, 10] and bench.TARGETS["batch"] == 128


def test_without_pytorch_one_note_says_how_to_install_its_cpu_build(monkeypatch, capsys):
    from nnxp.bench.contenders import TORCH_CPU_INSTALL

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    args = ["--sizes", "20-8-10", "--batches", "8", "--repeats", "3", "--min-sample-ms", "1", "--warmup-ms", "2",
            "--settle-ms", "0", "--max-wait", "0"]
    assert nnxp.cli.main(["bench", *args]) == 0
    out = capsys.readouterr().out
    assert TORCH_CPU_INSTALL == "pip install torch --index-url https://download.pytorch.org/whl/cpu"
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert [n for n in notes if "PyTorch" in n] == [
        f"note: PyTorch not timed: PyTorch is not installed; its CPU build: {TORCH_CPU_INSTALL}"]
    assert "torch-sgd / nnxp-sgd at 784-256-10 batch 128: - (target >= 1.3): not measured: PyTorch was not " \
           "timed (see the note)" in out
