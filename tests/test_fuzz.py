"""Property-based and fuzz tests of everything a user or a hostile file can hand nnxp (issue 10).

Each case either works or raises one nnxp error (a single line), emits no
warning, and writes or replaces no file.  Example counts are small so the
whole module stays within a few seconds of CI time; ``NNXP_FUZZ_SCALE=50``
(an environment variable) multiplies them for a long local session.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnxp
from nnxp.data import read_idx

SCALE = int(os.environ.get("NNXP_FUZZ_SCALE", "1"))


def fuzz(n: int):
    return settings(max_examples=n * SCALE, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# NNXP_FUZZ_COUNTS=FILE: write {test: {"ok": n, "error": n}} there at exit (for the counts).
COUNTS: dict[str, dict[str, int]] = {}
if os.environ.get("NNXP_FUZZ_COUNTS"):
    import atexit

    atexit.register(lambda: open(os.environ["NNXP_FUZZ_COUNTS"], "w").write(json.dumps(COUNTS, indent=1)))


def outcome(call):
    """Run ``call`` with warnings as errors: ("ok", result) or ("error", one-line message)."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0].split("::")[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            result = "ok", call()
        except nnxp.NnxpError as exc:
            message = str(exc)
            assert message and "\n" not in message, f"not one line: {message!r}"
            result = "error", message
    tally = COUNTS.setdefault(test, {"ok": 0, "error": 0})
    tally[result[0]] += 1
    return result


def files_in(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


# -- IDX files: random headers and bytes ------------------------------------------------------------

_CODES = [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]
_ITEMSIZE = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


@st.composite
def idx_files(draw):
    """Mostly plausible IDX files (right header, right or slightly wrong length), some pure noise."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=64)), None
    code = draw(st.sampled_from(_CODES + [0x00, 0x0A, 0xFF]))
    dims = draw(st.lists(st.one_of(st.integers(0, 6), st.integers(0, 2**32 - 1)), max_size=4))
    head = bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    count = int(np.prod(dims, dtype=object)) if dims else 1
    size = count * _ITEMSIZE.get(code, 1)
    payload_len = size + draw(st.sampled_from([0, 0, 0, -1, 1, 7])) if size < 4096 else draw(st.integers(0, 64))
    payload = draw(st.binary(min_size=max(payload_len, 0), max_size=max(payload_len, 0)))
    representable = int(np.prod([d for d in dims if d], dtype=object)) < 2**40
    expect = tuple(dims) if code in _ITEMSIZE and size < 4096 and payload_len == size and representable else None
    return head + payload, expect


@fuzz(150)
@given(case=idx_files(), compress=st.booleans())
def test_random_idx_files_read_or_fail_cleanly(tmp_path_factory, case, compress):
    data, expect = case
    path = tmp_path_factory.mktemp("idx") / "f"
    path.write_bytes(gzip.compress(data) if compress else data)
    kind, result = outcome(lambda: read_idx(path))
    if expect is not None:
        assert kind == "ok", result
        assert result.shape == expect
    elif kind == "ok":  # noise that happens to be a valid file: its size must add up
        assert 4 + 4 * result.ndim + result.nbytes == len(data)


def test_huge_trailing_gzip_member_is_not_decompressed(tmp_path, monkeypatch):
    content = bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3])
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(content) + gzip.compress(bytes(200 << 20), compresslevel=1))
    produced = {"n": 0}
    real_read = gzip.GzipFile.read

    def counting_read(self, size=-1):
        out = real_read(self, size)
        produced["n"] += len(out)
        return out

    monkeypatch.setattr(gzip.GzipFile, "read", counting_read)
    kind, message = outcome(lambda: read_idx(path))
    assert kind == "error" and "too long" in message and "more than" in message
    assert produced["n"] < 4 << 20  # stopped after a chunk, not 200 MB


# -- safetensors model files: random headers, metadata and bytes ------------------------------------

_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=False),
              st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)

_DTYPES = ["F32", "F64", "F16", "BF16", "F8_E4M3", "F8_E5M2", "I8", "I32", "I64", "U8", "BOOL", "C64", "XYZ"]


@st.composite
def network_descriptions(draw):
    """Valid descriptions with some fields replaced by random JSON."""
    sizes = draw(st.lists(st.integers(1, 4), min_size=2, max_size=4))
    config = {"sizes": sizes, "activations": [draw(st.sampled_from(["relu", "sigmoid", "tanh", "identity"]))
                                              for _ in sizes[1:]],
              "loss": "squared_error", "dtype": draw(st.sampled_from(["float32", "float64"]))}
    for key in draw(st.lists(st.sampled_from(list(config)), max_size=2, unique=True)):
        config[key] = draw(_json_values)
    if draw(st.booleans()) and isinstance(config["activations"], list) and config["activations"]:
        config["activations"][0] = {"name": "leaky_relu", "alpha": draw(_json_values)}
    if draw(st.booleans()):  # format 2: a list of layers (dense, maybe dropout), one field maybe replaced
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            if layers and draw(st.booleans()):
                layers.append({"kind": "dropout", "p": 0.5, "features": n_in})
            layers.append({"kind": "dense", "in": n_in, "out": n_out, "activation": {"name": "relu"}})
        if draw(st.booleans()):
            layer = draw(st.sampled_from(layers))
            layer[draw(st.sampled_from(sorted(layer) + ["extra"]))] = draw(_json_values)
        config["layers"] = layers if draw(st.integers(0, 9)) else draw(_json_values)
    return config


@st.composite
def model_files(draw):
    config = draw(network_descriptions())
    sizes = config["sizes"] if isinstance(config["sizes"], list) else [2, 2]
    tensors = {}
    if isinstance(config.get("layers"), list):  # format 2: tensors of the dense layers, by layer index
        for i, layer in enumerate(config["layers"]):
            n_in, n_out = (layer.get("in"), layer.get("out")) if isinstance(layer, dict) else (0, 0)
            if isinstance(layer, dict) and layer.get("kind") == "dense" and all(type(v) is int and 1 <= v <= 8 for v in (n_in, n_out)):
                tensors[f"layers.{i}.weight"] = [n_out, n_in]
                tensors[f"layers.{i}.bias"] = [n_out]
    else:
        good = all(type(s) is int and 1 <= s <= 8 for s in sizes) and len(sizes) >= 2
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]) if good else []):
            tensors[f"layers.{i}.weight"] = [n_out, n_in]
            tensors[f"layers.{i}.bias"] = [n_out]
    if draw(st.booleans()):
        tensors[draw(st.text(max_size=12))] = draw(st.lists(st.integers(0, 5), max_size=3))
    header, blobs, offset = {}, [], 0
    dtype_default = "F64" if config.get("dtype") == "float64" else "F32"
    for name, shape in tensors.items():
        dtype = draw(st.sampled_from([dtype_default] * 6 + _DTYPES))
        itemsize = {"F64": 8, "I64": 8, "C64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2}.get(dtype, 1)
        n = int(np.prod(shape, dtype=np.int64)) * itemsize
        if dtype == "F32":
            data = np.asarray(draw(st.lists(st.floats(width=32), min_size=n // 4, max_size=n // 4)),
                              dtype=np.float32).tobytes()
        else:
            data = draw(st.binary(min_size=n, max_size=n))
        end = offset + len(data) + draw(st.sampled_from([0, 0, 0, 0, 1, -1, 10**9]))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}
        blobs.append(data)
        offset += len(data)
    metadata = {"format": draw(st.sampled_from(["nnxp", "nnxp", "nnxp", "other"])),
                "format_version": draw(st.sampled_from(["1", "1", "1", "2"])),
                "network": json.dumps(config)}
    if draw(st.booleans()):
        metadata[draw(st.text(max_size=6))] = json.dumps(draw(_json_values))
    header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + b"".join(blobs)


@fuzz(150)
@given(data=model_files())
def test_random_model_files_load_or_fail_cleanly(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("st") / "m.safetensors"
    path.write_bytes(data)
    kind, result = outcome(lambda: nnxp.load(path, device="cpu"))
    if kind == "ok":
        assert all(np.isfinite(w).all() and np.isfinite(b).all() for w, b in result.get_weights())
        assert path.read_bytes() == data


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory):
    from nnxp.checkpoint import save_checkpoint
    from nnxp.optim import Adam

    rng = np.random.default_rng(0)
    net = nnxp.Network([3, 4, 2], device="cpu", seed=0)
    opt = Adam(lr=0.01)
    history = net.fit(rng.random((16, 3)), rng.integers(0, 2, 16), epochs=1, optimizer=opt, verbose=0)
    path = tmp_path_factory.mktemp("ck") / "ck.safetensors"
    save_checkpoint(path, net, opt, history, {"schedule": "constant"})
    return path.read_bytes()


@fuzz(150)
@given(edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_mutated_checkpoints_load_or_fail_cleanly(tmp_path_factory, saved_checkpoint, edits, cut):
    from nnxp.checkpoint import load_checkpoint

    data = bytearray(saved_checkpoint)
    for where, value in edits:
        data[int(where * (len(data) - 1))] = value
    if cut is not None:
        data = data[:int(cut * len(data))]
    path = tmp_path_factory.mktemp("mut") / "ck.safetensors"
    path.write_bytes(bytes(data))
    kind, result = outcome(lambda: load_checkpoint(path, device="cpu"))
    if kind == "ok":
        assert all(np.isfinite(w).all() for w, _ in result.net.get_weights())
        assert result.optimizer.t >= 0


# -- images: random sizes, modes, bit depths, formats; mutated files ------------------------------------

_MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "I", "I;16", "F", "CMYK", "YCbCr", "LAB", "HSV", "PA",
          "I;16B"]
_FORMATS = ["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM", "ICO", "TGA"]


def _pil_image(mode: str, width: int, height: int, seed: int):
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA")
    try:
        if mode in ("I;16", "I;16B", "F", "I"):
            dtype = {"I;16": "<u2", "I;16B": ">u2", "F": np.float32, "I": np.int32}[mode]
            return Image.fromarray(rng.integers(0, 2**16, (height, width)).astype(dtype), mode)
        return base.convert(mode)
    except (ValueError, TypeError, KeyError):
        return base.convert("L")


@st.composite
def image_files(draw):
    """Bytes of a random image in a random format (what Pillow can write of it), maybe damaged.

    Everything is drawn first, so what Pillow does cannot change the shape of the draws."""
    from PIL import Image

    mode, fmt = draw(st.sampled_from(_MODES)), draw(st.sampled_from(_FORMATS))
    width, height, seed = draw(st.integers(1, 48)), draw(st.integers(1, 48)), draw(st.integers(0, 2**32 - 1))
    edits = draw(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=3))
    cut = draw(st.one_of(st.none(), st.none(), st.none(), st.floats(0, 1)))
    image = _pil_image(mode, width, height, seed)
    buf = io.BytesIO()
    try:
        image.save(buf, format=fmt)
    except (OSError, ValueError, KeyError, TypeError):
        buf = io.BytesIO()
        Image.new("L", image.size).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    for where, value in edits:
        data[int(where * (len(data) - 1))] = value
    if cut is not None:
        data = data[:int(cut * len(data))]
    return bytes(data)


@st.composite
def pgm_files(draw):
    width, height = draw(st.integers(0, 40)), draw(st.integers(0, 40))
    maxval = draw(st.sampled_from([0, 1, 15, 255, 256, 65535, 65536]))
    binary = draw(st.booleans())
    comment = draw(st.sampled_from(["", "# c\n"]))
    head = f"{'P5' if binary else 'P2'}\n{comment}{width} {height}\n{maxval}\n"
    n = width * height + draw(st.sampled_from([0, 0, -1, 3]))
    values = draw(st.lists(st.integers(0, max(maxval, 1) + 1), min_size=max(n, 0), max_size=max(n, 0)))
    if binary:
        fmt = ">u2" if maxval >= 256 else "u1"
        body = np.asarray(values, dtype=np.int64).clip(0, 65535 if maxval >= 256 else 255).astype(fmt).tobytes()
    else:
        body = " ".join(map(str, values)).encode()
    return head.encode() + body


@fuzz(100)
@given(data=st.one_of(image_files(), pgm_files()))
def test_random_images_read_or_fail_cleanly(tmp_path_factory, data):
    from nnxp.viz import read_image, to_mnist

    path = tmp_path_factory.mktemp("img") / "digit"
    path.write_bytes(data)
    kind, grey = outcome(lambda: read_image(path))
    if kind == "ok":
        assert grey.dtype == np.uint8 and grey.ndim == 2 and grey.size > 0
        kind, digit = outcome(lambda: to_mnist(grey, str(path)))
        if kind == "ok":
            assert digit.shape == (28, 28) and digit.dtype == np.uint8


@pytest.mark.parametrize("size", [(13000, 13000), (7000, 6000), (20000, 20000)])
def test_huge_images_are_refused_from_the_header(tmp_path, size, capfd):
    from PIL import Image

    from nnxp.viz import read_image

    path = tmp_path / "bomb.png"
    Image.new("1", size).save(path)  # a few hundred kB that would decode to gigabytes
    kind, message = outcome(lambda: read_image(path))
    assert kind == "error" and "scale it down" in message
    assert capfd.readouterr().err == ""  # no DecompressionBombWarning on stderr


def test_huge_pgm_header_is_refused_before_reading(tmp_path):
    from nnxp.viz import read_image

    path = tmp_path / "bomb.pgm"
    path.write_bytes(b"P5 60000 60000 255\n" + bytes(100))
    kind, message = outcome(lambda: read_image(path))
    assert kind == "error" and "60000x60000" in message
