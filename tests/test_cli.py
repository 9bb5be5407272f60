"""The ``nnxp`` command end to end on the bundled data, on the CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import nnxp
from nnxp.cli import main

from conftest import one_line_error, run_cli
from nnxp.serialization import read_arrays


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A short training run on the bundled digits: (model path, metrics path, stdout)."""
    tmp = tmp_path_factory.mktemp("run")
    model, metrics = tmp / "model.safetensors", tmp / "metrics.jsonl"
    code = main(["train", "--device", "cpu", "--epochs", "3", "--hidden", "64", "--batch-size", "32",
                 "--save", str(model), "--metrics", str(metrics)])
    assert code == 0
    return model, metrics


def test_train_writes_model_and_metrics(trained):
    model, metrics = trained
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert set(records[0]) >= {"loss", "accuracy", "val_loss", "val_accuracy", "seconds", "samples_per_second"}
    assert records[-1]["val_accuracy"] > 0.85
    net = nnxp.load(model, device="cpu")
    assert net.sizes == [784, 64, 10]
    _, meta = read_arrays(model)
    assert meta["training"]["epoch"] == 3


def test_train_prints_one_summary_line_per_epoch(capsys, tmp_path):
    code, out, err = run_cli(capsys, "train", "--device", "cpu", "--epochs", "2", "--hidden", "16",
                             "--no-save")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("nnxp ") and "bundled: 4,000 train, 1,000 test" in lines[0]
    epoch_lines = [line for line in lines if line.startswith("epoch")]
    assert len(epoch_lines) == 2
    for line in epoch_lines:
        for field in ("loss", "test loss", "test acc", "samples/s"):
            assert field in line
    assert lines[-1].startswith("test accuracy")


def test_quiet_prints_only_the_result(capsys):
    code, out, _ = run_cli(capsys, "train", "--device", "cpu", "--epochs", "1", "--hidden", "8",
                           "--no-save", "--quiet", "--no-cuda-graphs")  # (a CUDA option: no effect on the CPU)
    assert code == 0
    assert out.splitlines() == [out.splitlines()[-1]] and out.startswith("test accuracy")


def test_evaluate_agrees_with_training(capsys, trained):
    model, metrics = trained
    last = json.loads(metrics.read_text().splitlines()[-1])
    code, out, _ = run_cli(capsys, "evaluate", model, "--device", "cpu")
    assert code == 0
    assert f"accuracy {100 * last['val_accuracy']:.2f}%" in out
    assert "confusion matrix" in out
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit() and "%" in line]
    assert len(rows) == 10
    counts = [int(v) for v in rows[0].split()[1:11]]
    assert sum(counts) == 100  # the bundled test split has 100 of each digit


def test_python_dash_m_and_script_entry():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for argv, expected in (([sys.executable, "-m", "nnxp", "--version"], "nnxp "),
                           ([sys.executable, "scripts/train_mnist.py", "--help"], "usage: nnxp train")):
        done = subprocess.run(argv, capture_output=True, text=True, cwd=root)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(expected)


@pytest.mark.parametrize("argv,message", [
    (["--lr", "-1"], "--lr: '-1' must be a positive number"),
    (["--lr", "fast"], "--lr: 'fast' is not a number"),
    (["--epochs", "0"], "--epochs: '0' must be at least 1"),
    (["--hidden", "64,x"], "comma list of layer widths"),
    (["--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["--activation", "swish"], "unknown activation 'swish'"),
    (["--output", "relu", "--loss", "cross_entropy"], "needs a softmax or sigmoid output"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--dataset", "mnist", "--data-dir", "/nonexistent/dir"], "data directory does not exist"),
    (["--save", "/nonexistent/dir/m.safetensors"], "directory /nonexistent/dir does not exist"),
    (["--metrics", "/nonexistent/m.jsonl"], "does not exist"),
    (["--resume", "/nonexistent/ck.safetensors"], "not found"),
    (["--save", "m.safetensors", "--no-save"], "not allowed with argument --save"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    saving = [] if "--save" in argv else ["--no-save"]
    code, _, err = run_cli(capsys, "train", "--device", "cpu", "--epochs", "1", *saving, *argv)
    assert code == 2
    assert message in one_line_error(err)


def test_cuda_without_gpu_is_one_line_and_exit_2(capsys):
    if nnxp.cuda_available():
        pytest.skip("a CUDA GPU is present")
    code, _, err = run_cli(capsys, "train", "--device", "cuda", "--epochs", "1", "--no-save")
    assert code == 2
    line = one_line_error(err)
    assert "'cuda' is not available" in line and "--device cpu" in line


def test_bad_input_overwrites_nothing(capsys, tmp_path, trained):
    model = tmp_path / "model.safetensors"
    model.write_bytes(trained[0].read_bytes())
    before = model.read_bytes()
    code, _, _ = run_cli(capsys, "train", "--device", "cpu", "--save", model, "--dataset", "mnist",
                         "--data-dir", tmp_path / "empty")
    assert code == 2
    assert model.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_corrupt_model_file(capsys, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    code, _, err = run_cli(capsys, "evaluate", bad, "--device", "cpu")
    assert code == 2
    assert "not an nnxp model file" in one_line_error(err)


def test_resume_of_a_finished_run_says_how_to_continue(capsys, trained):
    code, _, err = run_cli(capsys, "train", "--resume", trained[0], "--epochs", "3", "--device", "cpu")
    assert code == 2
    assert "pass --epochs N with N > 3" in one_line_error(err)


def test_divergence_keeps_the_last_good_checkpoint(capsys, tmp_path):
    ck = tmp_path / "ck.safetensors"
    assert main(["train", "--device", "cpu", "--epochs", "1", "--hidden", "16", "--optimizer", "sgd",
                 "--save", str(ck), "--quiet"]) == 0
    capsys.readouterr()
    good = ck.read_bytes()
    code, _, err = run_cli(capsys, "train", "--device", "cpu", "--resume", ck, "--epochs", "3",
                           "--lr", "1e12", "--quiet")
    assert code == 1
    line = one_line_error(err)
    assert "diverged in epoch 2" in line and "learning rate" in line and str(ck) in line
    assert ck.read_bytes() == good


def _train_process(*args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "nnxp", "train", "--device", "cpu", "--quiet", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _epochs_in(path):
    try:
        return read_arrays(path)[1]["training"]["epoch"]
    except nnxp.NnxpError:
        return 0


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path):
    settings = ["--epochs", "8", "--hidden", "48", "--optimizer", "momentum", "--batch-size", "64", "--seed", "3"]
    full, ck = tmp_path / "full.safetensors", tmp_path / "ck.safetensors"
    assert _train_process(*settings, "--save", full).wait(timeout=300) == 0

    proc = _train_process(*settings, "--save", ck)
    deadline = time.monotonic() + 300
    while _epochs_in(ck) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    done = _epochs_in(ck)
    assert 2 <= done < 8
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no temp file left"

    resumed = _train_process("--resume", ck, "--epochs", "8")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert _epochs_in(ck) == 8
    a, b = nnxp.load(ck, device="cpu"), nnxp.load(full, device="cpu")
    for (w, bias), (fw, fbias) in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(w, fw)
        np.testing.assert_array_equal(bias, fbias)
    history = read_arrays(ck)[1]["training"]["history"]
    assert [r["epoch"] for r in history] == list(range(1, 9))


def test_metrics_and_model_in_one_file_is_refused(capsys, tmp_path):
    same = tmp_path / "run.out"
    code, _, err = run_cli(capsys, "train", "--device", "cpu", "--epochs", "1", "--save", same,
                           "--metrics", same)
    assert code == 2
    assert "give --save a different path" in one_line_error(err) or "give --metrics a different path" in one_line_error(err)
    assert not same.exists()


def test_negative_seed_is_a_usage_error(capsys):
    code, _, err = run_cli(capsys, "train", "--device", "cpu", "--seed", "-1", "--no-save")
    assert code == 2
    assert "--seed: '-1' must be zero or more" in one_line_error(err)
