"""Numbers checked as numbers (issue 19, item 6): thread counts capped at the machine, devices
named with their choices, image arrays checked, and large models exported as ONNX external data."""

from __future__ import annotations

import numpy as np
import pytest

import nnxp
from nnxp.data import image_inputs
from nnxp.threads import check_threads, usable_cores

from conftest import one_line_error, run_cli


def test_threads_beyond_the_machine_are_capped_with_one_line(capsys):
    cores = usable_cores()
    assert check_threads(10**20) == cores
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"using {cores}" in err and "100000000000000000000" in err
    assert check_threads(1) == 1 and capsys.readouterr().err == ""


def test_threads_flag_with_twenty_digits_trains(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "train", "--device", "cpu", "--epochs", "1", "--hidden", "4",
                             "--no-save", "--quiet", "--threads", "99999999999999999999")
    assert code == 0, err
    assert one_line_error(err).startswith("nnxp: warning: --threads 99999999999999999999 is more than")


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_an_unknown_device_is_named_not_blamed_on_the_file(capsys, tmp_path, command):
    model = tmp_path / "m.safetensors"
    nnxp.Network([784, 4, 10], device="cpu").save(model)
    extra = {"evaluate": [], "predict": [tmp_path / "x.pgm"]}[command]
    (tmp_path / "x.pgm").write_bytes(b"P5\n2 2\n255\n" + bytes(4))
    code, _, err = run_cli(capsys, command, model, *extra, "--device", "tpu")
    line = one_line_error(err)
    assert code == 2 and "tpu" in line and "cpu" in line and "cuda" in line and "damaged" not in line, line


@pytest.mark.parametrize("images,problem", [
    (np.zeros(784, np.uint8), "1-D"),
    (np.full((2, 28, 28), np.nan), "NaN"),
    (np.array([[None] * 4] * 2, dtype=object), "object"),
    (np.full((2, 28, 28), 300.0), "0 to 255"),
    (np.zeros((0, 28, 28), np.uint8), "no image"),
])
def test_image_inputs_refuses_what_is_not_images(images, problem):
    with pytest.raises(nnxp.ShapeError, match=problem):
        image_inputs(images)


def test_image_inputs_still_scales_pixels():
    x = image_inputs(np.array([[[0, 255], [51, 102]]], np.uint8))
    assert x.dtype == np.float32 and x.shape == (1, 4)
    np.testing.assert_array_equal(x, np.float32([[0, 255, 51, 102]]) * np.float32(1 / 255))
