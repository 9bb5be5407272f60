"""Model files: round trips across backends, and no code execution on load."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import nnxp
from nnxp.serialization import read_arrays

from conftest import assert_on, host, make_backend


def test_round_trip_to_every_backend(tmp_path, backend, dtype_name):
    source = nnxp.Network([5, 4, 3], hidden="leaky_relu:0.1", output="softmax", seed=7,
                          dtype=dtype_name, device=backend if not backend.supports("float64") else "cpu")
    path = tmp_path / "model.safetensors"
    source.save(path)
    loaded = nnxp.load(path, device=backend)
    assert loaded.config() == source.config()
    assert loaded.activations[0].alpha == 0.1
    for p in loaded.parameters():
        assert_on(backend, p, dtype_name)
    for (w, b), (sw, sb) in zip(loaded.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(w, sw)
        np.testing.assert_array_equal(b, sb)
    x = np.random.default_rng(0).normal(size=(3, 5))
    np.testing.assert_allclose(host(loaded.forward(x)), host(source.forward(x)), rtol=1e-6)


def test_file_is_plain_safetensors_with_description(tmp_path):
    net = nnxp.Network([3, 2], output="sigmoid", dtype="float64", device="cpu")
    path = tmp_path / "m.safetensors"
    nnxp.save(net, path)
    raw = path.read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    assert header["layers.0.weight"]["dtype"] == "F64" and header["layers.0.weight"]["shape"] == [2, 3]
    assert json.loads(header["__metadata__"]["network"])["sizes"] == [3, 2]
    arrays, meta = read_arrays(path)
    assert meta["network"]["activations"] == [{"name": "sigmoid"}]


@pytest.mark.parametrize("content,message", [
    (b"", "not an nnxp model file"),
    (b"\x80\x04\x95pickle", "not an nnxp model file"),
    (b"PK\x03\x04 a zip (npz) file", "not an nnxp model file"),
])
def test_corrupt_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(nnxp.DataError, match=message):
        nnxp.load(path)


def test_foreign_safetensors_file_is_refused(tmp_path):
    import safetensors.numpy

    path = tmp_path / "other.safetensors"
    safetensors.numpy.save_file({"w": np.ones(2, dtype=np.float32)}, str(path))
    with pytest.raises(nnxp.DataError, match="not written by nnxp"):
        nnxp.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(nnxp.DataError, match="not found"):
        nnxp.load(tmp_path / "nope.safetensors")


def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    nnxp.Network([30, 20, 10], device="cpu").save(path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(nnxp.DataError, match="not an nnxp model file"):
        nnxp.load(path)


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    nnxp.Network([3, 2], seed=1, device="cpu").save(path)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(nnxp.DataError, match="cannot write"):
        nnxp.Network([3, 2], seed=2, device="cpu").save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"], "no temporary file left behind"


def test_unwritable_directory(tmp_path):
    with pytest.raises(nnxp.DataError, match="cannot write"):
        nnxp.Network([3, 2], device="cpu").save(tmp_path / "missing" / "m.safetensors")


def test_strict_device_round_trip(tmp_path):
    strict = make_backend("strict")
    net = nnxp.Network([4, 3], output="softmax", device=strict, seed=3)
    net.save(tmp_path / "s.safetensors")
    back = nnxp.load(tmp_path / "s.safetensors", device=strict)
    assert_on(strict, back.layers[0].weight, "float32")
