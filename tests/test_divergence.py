"""The divergence rule (nnxp.divergence) and that no checkpoint of a diverged network is written."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import nnxp
from nnxp.checkpoint import load_checkpoint, save_checkpoint
from nnxp.divergence import EXPLOSION_FACTOR, all_finite, check_epoch
from nnxp.optim import SGD, Adam
from nnxp.train import Callback, History

from conftest import make_backend


def _blobs(n=64, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 4)) + y[:, None]
    return x.astype(np.float32), y


class _Saves(Callback):
    """What a checkpoint callback would see: every epoch handed to callbacks is checked finite."""

    def __init__(self, path):
        self.path, self.epochs = path, []

    def on_epoch_end(self, net, optimizer, record, history):
        assert all_finite(net.parameters())
        save_checkpoint(self.path, net, optimizer, history)
        self.epochs.append(record["epoch"])


@pytest.mark.parametrize("optimizer,lr", [("sgd", 1e6), ("momentum", 1e6), ("adam", 1e6), ("sgd", 1e39)])
def test_exploding_runs_stop_name_the_lr_and_keep_the_last_good_checkpoint(tmp_path, optimizer, lr):
    x, y = _blobs()
    net = nnxp.Network([4, 16, 3], device="cpu", seed=1)
    ck = tmp_path / "ck.safetensors"
    saver = _Saves(ck)
    with pytest.raises(nnxp.DivergenceError, match=rf"diverged in epoch \d+: .*learning rate \({re.escape(format(lr, 'g'))}\)"):
        net.fit(x, y, epochs=20, batch_size=8, optimizer=optimizer, lr=lr, verbose=0, callbacks=[saver])
    if ck.exists():  # every checkpoint written loads, is finite, and resumes
        loaded = load_checkpoint(ck, device="cpu")
        assert loaded.epoch == saver.epochs[-1]
        assert all(np.isfinite(w).all() and np.isfinite(b).all() for w, b in loaded.net.get_weights())


def test_identity_output_with_adam_never_saves_inf_state(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32) * 1e3
    y = rng.normal(size=(64, 2)).astype(np.float32) * 1e3
    net = nnxp.Network([4, 8, 2], hidden="identity", output="identity", device="cpu", seed=0)
    saver = _Saves(tmp_path / "ck.safetensors")
    with pytest.raises(nnxp.DivergenceError):
        net.fit(x, y, epochs=30, batch_size=4, optimizer="adam", lr=1e6, verbose=0, callbacks=[saver])


def test_rule_nonfinite_loss_params_and_state(backend):
    net = nnxp.Network([2, 3, 2], device=backend, seed=0)
    opt = Adam(lr=0.01)
    record = {"epoch": 1, "loss": 1.0, "accuracy": 0.5}
    check_epoch(net, opt, record, [], first_batch_loss=1.0)  # fine
    for bad in (math.nan, math.inf):
        with pytest.raises(nnxp.DivergenceError, match="the loss is"):
            check_epoch(net, opt, {**record, "loss": bad}, [])
        with pytest.raises(nnxp.DivergenceError, match="validation loss"):
            check_epoch(net, opt, {**record, "val_loss": bad}, [])
    w, b = net.get_weights()[0]
    w[0, 0] = np.nan
    net.set_weights  # the check reads the live arrays, bypass set_weights' refusal:
    net.layers[0].weight = net.backend.asarray(w, net.dtype)
    with pytest.raises(nnxp.DivergenceError, match="parameters hold NaN"):
        check_epoch(net, opt, record, [])


def test_rule_state_checked_too():
    net = nnxp.Network([2, 3, 2], device="cpu", seed=0)
    opt = SGD(lr=0.1, momentum=0.9)
    x, y = _blobs(8)
    net.fit(x[:, :2], y % 2, epochs=1, optimizer=opt, verbose=0)
    opt.state["velocity"][0][...] = np.inf
    with pytest.raises(nnxp.DivergenceError, match="optimizer state holds NaN"):
        check_epoch(net, opt, {"epoch": 2, "loss": 0.5}, [{"epoch": 1, "loss": 0.6}])


def test_rule_explosion_relative_to_the_start():
    net = nnxp.Network([2, 3, 2], device="cpu", seed=0)
    opt = SGD(lr=0.5)
    first = [{"epoch": 1, "loss": 2.0}]
    check_epoch(net, opt, {"epoch": 2, "loss": 2.0 * EXPLOSION_FACTOR}, first)  # at the limit: fine
    with pytest.raises(nnxp.DivergenceError, match=r"more than 1000 times the first epoch's \(2\).*\(0\.5\)"):
        check_epoch(net, opt, {"epoch": 2, "loss": 2.0 * EXPLOSION_FACTOR * 1.01}, first)
    with pytest.raises(nnxp.DivergenceError, match="the first batch's"):
        check_epoch(net, opt, {"epoch": 1, "loss": 3e3}, [], first_batch_loss=2.3)
    check_epoch(net, opt, {"epoch": 1, "loss": 3e3}, [])  # no reference: only the finite checks
    tiny = [{"epoch": 1, "loss": 1e-9}]  # a loss starting near zero: noise is not divergence
    check_epoch(net, opt, {"epoch": 2, "loss": 1e-4}, tiny)
    with pytest.raises(nnxp.DivergenceError):
        check_epoch(net, opt, {"epoch": 2, "loss": 1.5}, tiny)


def test_save_checkpoint_refuses_nonfinite(tmp_path):
    net = nnxp.Network([2, 3, 2], device="cpu", seed=0)
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, net, SGD(lr=0.1), History([]))
    good = path.read_bytes()
    net.layers[1].bias[...] = np.nan
    with pytest.raises(nnxp.DivergenceError, match="not writing checkpoint"):
        save_checkpoint(path, net, SGD(lr=0.1), History([]))
    assert path.read_bytes() == good


def test_divergence_check_runs_on_strict_device():
    strict = make_backend("strict")
    net = nnxp.Network([2, 3, 2], device=strict, seed=0)
    assert all_finite(net.parameters())
    assert all_finite([])


def test_one_huge_step_is_caught_by_the_probe_not_saved(capsys, tmp_path, monkeypatch):
    """Issue 19: one step per epoch, finite weights (~5.6e36) that predict NaN, exit 0 with loss nan."""
    from conftest import one_line_error, run_cli

    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "train", "--device", "cpu", "--optimizer", "sgd", "--lr", "1e38",
                             "--batch-size", "4000", "--epochs", "1", "--quiet", "--save", "m.safetensors")
    line = one_line_error(err)
    assert code == 1 and "diverged in epoch 1" in line and "outputs" in line, line
    assert "test accuracy" not in out and not list(tmp_path.iterdir())  # no model, no checkpoint


def _finite_but_overflowing(path):
    net = nnxp.Network([784, 4, 10], device="cpu")
    net.set_weights([(np.full(w.shape, 5.6e36, np.float32), np.zeros(b.shape, np.float32))
                     for w, b in net.get_weights()])
    net.save(path)
    return net


@pytest.mark.parametrize("command", ["predict", "export", "evaluate"])
def test_a_model_whose_outputs_overflow_is_refused(capsys, tmp_path, command):
    pytest.importorskip("onnx") if command == "export" else None
    from conftest import one_line_error, run_cli

    model = tmp_path / "m.safetensors"
    _finite_but_overflowing(model)
    (tmp_path / "x.pgm").write_bytes(b"P5\n2 2\n255\n" + bytes([0, 255, 255, 0]))
    extra = {"predict": [tmp_path / "x.pgm"], "export": [tmp_path / "m.onnx"], "evaluate": []}[command]
    code, out, err = run_cli(capsys, command, model, *extra)
    line = one_line_error(err)
    assert code == 2 and str(model) in line and "NaN or infinite" in line and "probe" in line, line
    assert not (tmp_path / "m.onnx").exists()


def test_final_test_loss_nan_is_a_divergence(capsys, tmp_path, monkeypatch):
    """A NaN test loss exits 1 with one line, never 0 with 'loss nan'; nothing is saved."""
    import nnxp.cli.train as train_cli
    from conftest import one_line_error, run_cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("nnxp.train.evaluate", lambda *a, **k: {"loss": float("nan"), "accuracy": 0.1})
    code, out, err = run_cli(capsys, "train", "--device", "cpu", "--epochs", "1", "--hidden", "4", "--quiet",
                             "--save", "m.safetensors", "--checkpoint", "c.safetensors")
    line = one_line_error(err)
    assert code == 1 and "test loss is nan" in line and "loss nan" not in out, line
    assert line.endswith("the last good checkpoint is c.safetensors")  # epoch 1 itself was fine
    assert not (tmp_path / "m.safetensors").exists()
    del train_cli
