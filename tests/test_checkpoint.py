"""Training checkpoints: what is written, and damaged ones refused with one line (issue 10)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import safetensors.numpy

import nnxp
from nnxp.checkpoint import check_settings, load_checkpoint, save_checkpoint
from nnxp.optim import Adam
from nnxp.train import History


@pytest.fixture
def checkpoint(tmp_path):
    net = nnxp.Network([3, 4, 2], device="cpu", seed=0)
    rng = np.random.default_rng(0)
    opt = Adam(lr=0.01)
    history = net.fit(rng.random((16, 3)), rng.integers(0, 2, 16), epochs=2, optimizer=opt, verbose=0)
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, net, opt, history, {"schedule": "constant", "batch_size": 64})
    return path


def _rewrite(path, arrays=None, **meta_change):
    """Rewrite the checkpoint with some metadata (decoded JSON values) or arrays replaced."""
    loaded = safetensors.numpy.load_file(str(path))
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        meta = json.loads(f.read(n))["__metadata__"]
    for key, change in meta_change.items():
        value = json.loads(meta[key])
        meta[key] = json.dumps(change(value))
    loaded.update(arrays or {})
    safetensors.numpy.save_file(loaded, str(path), metadata=meta)


def test_round_trip(checkpoint):
    ck = load_checkpoint(checkpoint, device="cpu")
    assert ck.epoch == 2 and len(ck.history) == 2 and ck.optimizer.t > 0
    assert ck.settings == {"schedule": "constant", "batch_size": 64}


@pytest.mark.parametrize("key,change,message", [
    ("optimizer", lambda o: {**o, "t": -3}, "step count is -3"),
    ("optimizer", lambda o: {**o, "t": 1.5}, "step count is 1.5"),
    ("optimizer", lambda o: {**o, "t": "7"}, "step count"),
    ("optimizer", lambda o: "adam", "optimizer settings are not an object"),
    ("optimizer", lambda o: {**o, "config": {**o["config"], "lr": "fast"}}, "must be a number"),
    ("optimizer", lambda o: {**o, "config": {**o["config"], "lr": -1}}, "must be finite and > 0"),
    ("optimizer", lambda o: {**o, "config": {**o["config"], "name": ["adam"]}}, "unknown optimizer"),
    ("optimizer", lambda o: {**o, "config": {**o["config"], "bogus": 1}}, "unexpected keyword"),
    ("training", lambda t: {**t, "epoch": -1}, "does not match"),
    ("training", lambda t: {**t, "epoch": 5}, "does not match"),
    ("training", lambda t: {**t, "history": "none"}, "history is not a list"),
    ("training", lambda t: {**t, "history": [{"loss": "x"}, {}]}, "history is not a list"),
    ("training", lambda t: {**t, "settings": ["a"]}, "settings are not an object"),
    # issue 19: the history becomes the --metrics file of a resumed run: checked as plot checks it
    ("training", lambda t: {**t, "history": [t["history"][0], {**t["history"][1], "loss": float("nan")}]},
     r"training\.history\[1\]\.loss: is nan, not a finite number"),
    ("training", lambda t: {**t, "history": [t["history"][0], {**t["history"][1], "epoch": 7}]},
     r"training\.history\[1\]\.epoch: is 7, not 2"),
    ("training", lambda t: [t], "training progress is not an object"),
])
def test_damaged_metadata_is_refused(checkpoint, key, change, message):
    _rewrite(checkpoint, **{key: change})
    with pytest.raises(nnxp.DataError, match=f"damaged checkpoint .*{message}|{message}") as info:
        load_checkpoint(checkpoint, device="cpu")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name,value,message", [
    ("optimizer.m.0", np.nan, "NaN or infinite"),
    ("optimizer.v.1", np.inf, "NaN or infinite"),
    ("optimizer.v.0", -1.0, "negative"),
])
def test_bad_optimizer_state_is_refused(checkpoint, name, value, message):
    arrays = safetensors.numpy.load_file(str(checkpoint))
    bad = arrays[name].copy()
    bad.flat[0] = value
    _rewrite(checkpoint, arrays={name: bad})
    with pytest.raises(nnxp.DataError, match=message):
        load_checkpoint(checkpoint, device="cpu")


def test_state_of_the_wrong_shape_is_refused(checkpoint):
    _rewrite(checkpoint, arrays={"optimizer.m.0": np.zeros((2, 2), np.float32)})
    with pytest.raises(nnxp.DataError, match="damaged checkpoint .*shape"):
        load_checkpoint(checkpoint, device="cpu")


def test_settings_are_checked_by_the_callers_rules(checkpoint):
    _rewrite(checkpoint, training=lambda t: {**t, "settings": {"schedule": ["cosine"], "batch_size": 64}})
    ck = load_checkpoint(checkpoint, device="cpu")
    rules = {"schedule": lambda v: {"constant": v, "cosine": v}[v], "batch_size": int, "seed": int}
    with pytest.raises(nnxp.DataError, match="setting 'schedule' is \\['cosine'\\]"):
        check_settings(ck, checkpoint, rules)
    ck.settings["schedule"] = "cosine"
    assert check_settings(ck, checkpoint, rules) == {"schedule": "cosine", "batch_size": 64}


def test_a_model_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "m.safetensors"
    nnxp.Network([2, 2], device="cpu").save(path)
    with pytest.raises(nnxp.DataError, match="not a training checkpoint"):
        load_checkpoint(path)
    assert History([]).last == {}
