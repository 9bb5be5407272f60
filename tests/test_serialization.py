"""Model files: round trips across backends, and no code execution on load."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import nnxp
from nnxp.data import read_idx
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


# -- crafted and corrupt files (issue 10): one DataError line, nothing allocated from the metadata --

def _craft(path, tensors, metadata, header_extra=None):
    """A safetensors file by hand: tensors {name: (dtype, shape, bytes)}, metadata {key: str}."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = metadata
    header.update(header_extra or {})
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))
    return path


def _good(sizes=(3, 2), activations=None):
    """(tensors, metadata) of a valid nnxp file for ``sizes``."""
    tensors = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        tensors[f"layers.{i}.weight"] = ("F32", [n_out, n_in], np.ones((n_out, n_in), np.float32).tobytes())
        tensors[f"layers.{i}.bias"] = ("F32", [n_out], np.zeros(n_out, np.float32).tobytes())
    network = {"sizes": list(sizes), "activations": activations or [{"name": "sigmoid"}] * (len(sizes) - 1),
               "loss": "squared_error", "dtype": "float32"}
    return tensors, {"format": "nnxp", "format_version": "1", "network": json.dumps(network)}


def test_hand_crafted_good_file_loads(tmp_path):
    net = nnxp.load(_craft(tmp_path / "m.safetensors", *_good()), device="cpu")
    assert net.sizes == [3, 2]


def _network_meta(**change):
    network = {"sizes": [3, 2], "activations": [{"name": "sigmoid"}], "loss": "squared_error", "dtype": "float32"}
    network.update(change)
    return json.dumps(network)


@pytest.mark.parametrize("network,message", [
    ('"a string"', r'network: is a string \("a string"\), not an object'),
    ("[1, 2]", r"network: is a list \(\[1, 2\]\), not an object"),
    (_network_meta(sizes="3,2"), "network.sizes: is a string"),
    (_network_meta(sizes=[3.5, 2]), r"network.sizes\[0\]: is a number \(3.5\), not a whole number"),
    (_network_meta(sizes=[3, True]), r"network.sizes\[1\]: is a boolean"),
    (_network_meta(activations="sigmoid"), "network.activations: is a string"),
    (_network_meta(activations=[]), "network.activations: has 0 item"),
    (_network_meta(activations=[7]), r"network.activations\[0\]: is a number \(7\), not a string"),
    (_network_meta(activations=[{"name": "leaky_relu", "alpha": "x"}]), r"activations\[0\].alpha: is a string"),
    (_network_meta(activations=[{"name": "leaky_relu", "alpha": [1]}]), r"activations\[0\].alpha: is a list"),
    (_network_meta(activations=[{"name": "leaky_relu", "alpha": 5}]), "alpha must be in"),
    (_network_meta(activations=[{"name": "nope"}]), "unknown activation"),
    (_network_meta(loss=3), "network.loss: is a number"),
    (_network_meta(loss="nope"), "unknown loss"),
    (_network_meta(dtype="int8"), 'network.dtype: is "int8", not one of float32, float64'),
    (_network_meta(dtype=["float32"]), "network.dtype: is a list"),
    ('{"loss": "squared_error", "dtype": "float32", "layers": [{"kind": 3}]}',
     r"network.layers\[0\].kind: is a number"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("{not json", "not valid JSON"),
])
def test_bad_metadata_values_are_one_line(tmp_path, network, message):
    tensors, meta = _good()
    path = _craft(tmp_path / "m.safetensors", tensors, {**meta, "network": network})
    with pytest.raises(nnxp.DataError, match=message) as info:
        nnxp.load(path, device="cpu")
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("dtype", ["F8_E4M3", "F8_E5M2", "BF16", "F16", "I32", "I64", "U8", "BOOL", "C64",
                                   "NOPE", 7])
def test_tensor_dtypes_other_than_f32_f64_are_refused(tmp_path, dtype, recwarn):
    tensors, meta = _good()
    tensors["layers.0.weight"] = (dtype, [2, 3], b"\x00" * 48)
    with pytest.raises(nnxp.DataError, match="only F32 .* and F64"):
        nnxp.load(_craft(tmp_path / "m.safetensors", tensors, meta), device="cpu")
    assert not recwarn.list  # no ComplexWarning or other warning leaks


def test_sizes_are_checked_against_the_stored_tensors_before_building(tmp_path, monkeypatch):
    tensors, meta = _good()
    meta["network"] = _network_meta(sizes=[3, 10**9])
    path = _craft(tmp_path / "m.safetensors", tensors, meta)
    built = []
    monkeypatch.setattr(nnxp.Network, "from_config", classmethod(lambda cls, *a, **k: built.append(1)))
    with pytest.raises(nnxp.DataError, match="missing array|needs float32"):
        nnxp.load(path, device="cpu")
    assert built == []


@pytest.mark.parametrize("change,message", [
    ({"layers.0.weight": ("F32", [3, 2], np.ones(6, np.float32).tobytes())}, r"needs float32 \(2, 3\)"),
    ({"layers.0.bias": ("F64", [2], np.zeros(2).tobytes())}, "needs float32"),
    ({"extra": ("F32", [1], b"\x00" * 4)}, "unexpected array"),
    ({"layers.0.weight": ("F32", [2, 3], np.full(6, np.nan, np.float32).tobytes())}, "6 NaN or infinite"),
    ({"layers.0.bias": ("F32", [2], np.array([np.inf, 0], np.float32).tobytes())}, "1 NaN or infinite"),
])
def test_tensors_that_do_not_fit_the_description(tmp_path, change, message):
    tensors, meta = _good()
    tensors.update(change)
    with pytest.raises(nnxp.DataError, match=message):
        nnxp.load(_craft(tmp_path / "m.safetensors", tensors, meta), device="cpu")


@pytest.mark.parametrize("header_extra,message", [
    ({"layers.0.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 10**9]}}, "not an nnxp model"),
    ({"layers.0.weight": "nonsense"}, "only F32"),
    ({"__metadata__": {"format": "nnxp", "format_version": 1}}, "map of strings"),
    ({"__metadata__": ["nnxp"]}, "map of strings"),
])
def test_bad_headers(tmp_path, header_extra, message):
    path = _craft(tmp_path / "m.safetensors", *_good(), header_extra=header_extra)
    with pytest.raises(nnxp.DataError, match=message):
        nnxp.load(path, device="cpu")


def test_non_regular_paths_are_refused_not_read(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(nnxp.DataError, match="not a regular file"):
        nnxp.load(fifo)  # would block forever if opened
    with pytest.raises(nnxp.DataError, match="not a regular file"):
        read_idx(fifo)
