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
    """A short training run on the bundled digits: (model path, metrics path, checkpoint path)."""
    tmp = tmp_path_factory.mktemp("run")
    model, metrics, ck = tmp / "model.safetensors", tmp / "metrics.jsonl", tmp / "ck.safetensors"
    code = main(["train", "--device", "cpu", "--epochs", "3", "--hidden", "64", "--batch-size", "32",
                 "--val-split", "0.1", "--save", str(model), "--metrics", str(metrics), "--checkpoint", str(ck)])
    assert code == 0
    return model, metrics, ck


def test_train_writes_model_checkpoint_and_metrics(trained):
    model, metrics, ck = trained
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert set(records[0]) >= {"loss", "accuracy", "val_loss", "val_accuracy", "seconds", "samples_per_second"}
    assert not any(key.startswith("test_") for key in records[0])  # the test split is not looked at
    assert records[-1]["val_accuracy"] > 0.85
    net = nnxp.load(model, device="cpu")
    assert net.sizes == [784, 64, 10]
    arrays, meta = read_arrays(model)
    assert meta["training"]["epoch"] == 3 and meta["training"]["settings"]["dataset"] == "bundled"
    assert meta["training"]["history"] == records
    assert sorted(arrays) == ["layers.0.bias", "layers.0.weight", "layers.1.bias", "layers.1.weight"]
    ck_arrays, ck_meta = read_arrays(ck)
    assert any(k.startswith("optimizer.") for k in ck_arrays) and "optimizer" in ck_meta
    assert model.stat().st_size < ck.stat().st_size / 2  # Adam's two moments stay in the checkpoint
    for (w, b), (cw, cb) in zip(net.get_weights(), nnxp.load(ck, device="cpu").get_weights()):
        np.testing.assert_array_equal(w, cw)


def test_epoch_lines_show_validation_and_the_test_split_once(capsys):
    code, out, _ = run_cli(capsys, "train", "--device", "cpu", "--epochs", "2", "--hidden", "16",
                           "--no-save", "--val-split", "0.2")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("nnxp ") and "bundled: 4,000 train (20% held out for validation)" in lines[0]
    assert "1 thread |" in lines[0]  # batch 32 x 784 x 16: one BLAS thread pays best
    epoch_lines = [line for line in lines if line.startswith("epoch")]
    assert len(epoch_lines) == 2
    for line in epoch_lines:
        for field in ("loss", "val loss", "val acc", "samples/s"):
            assert field in line
        assert "test" not in line
    assert "ETA" in epoch_lines[0] and "ETA" not in epoch_lines[1]
    assert lines[-1].startswith("test accuracy") and "after 2 epochs" in lines[-1]

    code, out, _ = run_cli(capsys, "train", "--device", "cpu", "--epochs", "1", "--hidden", "16",
                           "--no-save", "--eval-test-every-epoch")
    (line,) = [line for line in out.splitlines() if line.startswith("epoch")]
    assert "test loss" in line and "test acc" in line and "val" not in line


def test_quiet_prints_only_the_result(capsys):
    code, out, _ = run_cli(capsys, "train", "--device", "cpu", "--epochs", "1", "--hidden", "8",
                           "--no-save", "--quiet", "--no-cuda-graphs")  # (a CUDA option: no effect on the CPU)
    assert code == 0
    assert out.splitlines() == [out.splitlines()[-1]] and out.startswith("test accuracy")


def test_evaluate_agrees_with_the_library(capsys, trained):
    model = trained[0]
    digits = nnxp.data.load_dataset("bundled")
    expected = nnxp.load(model, device="cpu").evaluate(nnxp.data.image_inputs(digits.test_images),
                                                       digits.test_labels)
    code, out, err = run_cli(capsys, "evaluate", model, "--device", "cpu", "--threads", "1")
    assert code == 0 and err == ""
    assert f"accuracy {100 * expected['accuracy']:.2f}%" in out
    assert "confusion matrix" in out
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit() and "%" in line]
    assert len(rows) == 10
    counts = [int(v) for v in rows[0].split()[1:11]]
    assert sum(counts) == 100  # the bundled test split has 100 of each digit


def test_a_model_from_another_dataset_gets_a_warning(capsys, tmp_path, trained):
    from nnxp.checkpoint import save_trained_model
    from nnxp.train import History

    other = tmp_path / "fashion.safetensors"
    save_trained_model(other, nnxp.load(trained[0], device="cpu"), History(), {"dataset": "fashion-mnist"})
    code, _, err = run_cli(capsys, "evaluate", other, "--device", "cpu")
    assert code == 0
    assert err == (f"nnxp: warning: {other} was trained on fashion-mnist, these are bundled images "
                   "(pass --dataset fashion-mnist?)\n")


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
    (["--patience", "3"], "--patience watches the validation loss: add --val-split 0.1"),
    (["--save-best", "b.safetensors"], "--save-best watches the validation loss: add --val-split"),
    (["--val-split", "1"], "--val-split: '1' must be a probability in [0, 1)"),
    (["--threads", "0"], "--threads: '0' must be at least 1"),
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
    code, _, err = run_cli(capsys, "train", "--resume", trained[2], "--epochs", "3", "--device", "cpu")
    assert code == 2
    assert "pass --epochs N with N > 3" in one_line_error(err)


def test_finished_run_killed_in_its_last_write_leaves_nothing_behind(capsys, tmp_path):
    """A kill while the final model was written: the model is missing, a dead writer's temporary file
    is left.  Resuming the finished run cleans the temporary file and says where the weights are."""
    from nnxp._files import _host_tag

    model, ck = tmp_path / "m.safetensors", tmp_path / "m.ckpt.safetensors"
    assert main(["train", "--device", "cpu", "--epochs", "1", "--hidden", "8", "--save", str(model),
                 "--quiet"]) == 0
    capsys.readouterr()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)  # a process that has ended: its temporary file is stale
    stale = tmp_path / f".m.safetensors.{_host_tag()}-{int(dead.stdout)}.0123abcd.tmp"
    stale.write_bytes(b"half a model")
    model.unlink()
    code, _, err = run_cli(capsys, "train", "--resume", ck, "--epochs", "1", "--device", "cpu")
    line = one_line_error(err)
    assert code == 2 and "has already done 1 epoch:" in line and "does not exist" in line, line
    assert "nnxp evaluate, predict and export read it" in line
    assert not stale.exists()


def test_divergence_keeps_the_last_good_checkpoint(capsys, tmp_path):
    ck = tmp_path / "ck.safetensors"
    assert main(["train", "--device", "cpu", "--epochs", "1", "--hidden", "16", "--optimizer", "sgd",
                 "--checkpoint", str(ck), "--save", str(tmp_path / "m.safetensors"), "--quiet"]) == 0
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
    full, ck, model = tmp_path / "full.safetensors", tmp_path / "ck.safetensors", tmp_path / "m.safetensors"
    assert _train_process(*settings, "--save", full, "--checkpoint", tmp_path / "full-ck.safetensors"
                          ).wait(timeout=300) == 0

    proc = _train_process(*settings, "--checkpoint", ck, "--save", model)
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
    b = nnxp.load(full, device="cpu")
    for path in (ck, model):  # the resumed run writes the model its checkpoint remembers
        a = nnxp.load(path, device="cpu")
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


def test_resume_keeps_metrics_and_says_where_it_resumed(capsys, tmp_path):
    ck, metrics = tmp_path / "ck.safetensors", tmp_path / "m.jsonl"
    base = ["--device", "cpu", "--hidden", "16", "--val-split", "0.1"]
    code, _, _ = run_cli(capsys, "train", *base, "--epochs", "2", "--checkpoint", ck, "--metrics", metrics,
                         "--save", tmp_path / "model.safetensors")
    assert code == 0
    code, out, _ = run_cli(capsys, "train", "--resume", ck, "--epochs", "3", "--device", "cpu")
    assert code == 0
    assert f"resumed {ck} at epoch 2 (of 3)" in out.splitlines()[1]
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == [1, 2, 3]
    assert "val_loss" in json.loads(metrics.read_text().splitlines()[-1])  # the split is kept too
    assert read_arrays(tmp_path / "model.safetensors")[1]["training"]["epoch"] == 3


def test_interrupted_run_names_the_full_resume_command(capsys, tmp_path, monkeypatch):
    import nnxp.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    ck, metrics = tmp_path / "ck.safetensors", tmp_path / "m.jsonl"
    code, _, _ = run_cli(capsys, "train", "--device", "cpu", "--epochs", "1", "--hidden", "8", "--checkpoint", ck,
                         "--metrics", metrics, "--save", tmp_path / "x.safetensors", "--quiet")
    assert code == 0
    monkeypatch.setattr(nnxp.train, "fit", interrupted)
    # Interrupted while resuming: the hint keeps the --metrics file the checkpoint remembers.
    code, _, err = run_cli(capsys, "train", "--device", "cpu", "--epochs", "4", "--resume", ck)
    assert code == 130
    assert err.strip().endswith(f"resume with: nnxp train --resume {ck} --epochs 4 --metrics {metrics}")


def test_early_stopping_and_save_best(capsys, tmp_path):
    best = tmp_path / "best.safetensors"
    code, out, _ = run_cli(capsys, "train", "--device", "cpu", "--hidden", "32", "--epochs", "40",
                           "--lr", "0.003", "--val-split", "0.2", "--patience", "2", "--save-best", best,
                           "--no-save")
    assert code == 0
    epochs = [line for line in out.splitlines() if line.startswith("epoch")]
    stopped = [line for line in out.splitlines() if line.startswith("stopped early")]
    assert len(stopped) == 1 and len(epochs) < 40
    val = [float(line.split("val loss ")[1].split()[0]) for line in epochs]
    best_epoch = 1 + int(np.argmin(val))
    assert len(epochs) == best_epoch + 2  # two epochs without a lower validation loss
    assert stopped[0] == (f"stopped early after epoch {len(epochs)}: no better validation loss for 2 "
                          f"epochs; the weights of epoch {best_epoch} (lowest validation loss) are kept")
    assert out.splitlines()[-1].endswith(f"after {len(epochs)} epochs (the weights of epoch {best_epoch})")
    meta = read_arrays(best)[1]
    assert meta["best"]["epoch"] == best_epoch
    assert "optimizer" not in meta and meta["training"]["settings"]["dataset"] == "bundled"


def test_plot_reads_a_checkpoints_history(capsys, tmp_path, trained):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    for source in (trained[2], trained[0]):  # checkpoint and model both record the history
        out_png = tmp_path / f"{source.stem}.png"
        code, out, _ = run_cli(capsys, "plot", source, "-o", out_png)
        assert code == 0 and out == f"wrote plot of 3 epochs to {out_png}\n"
        assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "images", "bench", "text train",
                                     "text neighbours", "plot", "export", "text vocab"])
def test_threads_only_on_commands_with_matrix_products(capsys, command):
    products = command not in ("plot", "export", "text vocab")
    code, out, _ = run_cli(capsys, *command.split(), "--help")
    assert code == 0 and ("--threads" in out) == products
