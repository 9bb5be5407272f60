"""The ``nnxp`` command under users' mistakes and hostile input (issue 10): one line, exit 2, nothing
written; random flag values; divergence keeps the last good checkpoint."""

from __future__ import annotations

import dataclasses
import json
import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

import nnxp
from nnxp.cli import main
from nnxp.data import load_dataset

from conftest import one_line_error, run_cli
from test_fuzz import fuzz


@pytest.fixture
def small_data(monkeypatch):
    """The bundled data cut to 300 + 100 samples, so CLI runs take a fraction of a second."""
    import nnxp.cli.train as train_cli

    full = load_dataset("bundled")
    small = dataclasses.replace(full, train_images=full.train_images[:300], train_labels=full.train_labels[:300],
                                test_images=full.test_images[:100], test_labels=full.test_labels[:100])
    monkeypatch.setattr(train_cli, "load_data", lambda args: small)
    return small


@pytest.fixture
def checkpoint(tmp_path, small_data):
    ck = tmp_path / "ck.safetensors"
    assert main(["train", "--device", "cpu", "--epochs", "1", "--hidden", "8", "--save", str(ck), "--quiet"]) == 0
    return ck


def _listing(directory):
    return {p.name: p.read_bytes() if p.is_file() else None for p in directory.iterdir()}


def _fails_cleanly(capsys, directory, *argv, message=""):
    before = _listing(directory)
    code, _, err = run_cli(capsys, *argv)
    assert code == 2, err
    line = one_line_error(err)
    assert line.startswith("nnxp: error: ") and message in line, line
    assert _listing(directory) == before, "a failed command wrote or replaced a file"
    return line


def test_output_equal_to_an_input_is_refused(capsys, tmp_path, checkpoint):
    new = tmp_path / "new.safetensors"
    _fails_cleanly(capsys, tmp_path, "train", "--device", "cpu", "--resume", checkpoint, "--save", new,
                   "--metrics", checkpoint, "--epochs", "2", message="--metrics")
    link = tmp_path / "link.jsonl"
    link.symlink_to(checkpoint)
    _fails_cleanly(capsys, tmp_path, "train", "--device", "cpu", "--resume", checkpoint, "--metrics", link,
                   "--epochs", "2", message="is also --resume (an input)")
    hard = tmp_path / "hard.jsonl"
    os.link(checkpoint, hard)
    _fails_cleanly(capsys, tmp_path, "train", "--device", "cpu", "--resume", checkpoint, "--metrics", hard,
                   "--epochs", "2", message="is also --resume")
    _fails_cleanly(capsys, tmp_path, "train", "--device", "cpu", "--save", new, "--metrics", tmp_path / "." / "new.safetensors",
                   message="another output")


def test_special_files_are_never_outputs(capsys, tmp_path, small_data):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    _fails_cleanly(capsys, tmp_path, "train", "--device", "cpu", "--save", fifo, message="it is a FIFO")
    _fails_cleanly(capsys, tmp_path, "train", "--device", "cpu", "--no-save", "--metrics", fifo,
                   message="it is a FIFO")
    node = tmp_path / "node"  # our own device node in a scratch directory, never a system one
    try:
        os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except OSError:
        return  # not root: device nodes cannot be made, so cannot be targets either
    _fails_cleanly(capsys, tmp_path, "train", "--device", "cpu", "--save", node, message="it is a device")
    assert stat.S_ISCHR(os.stat(node).st_mode)


def test_huge_hidden_layer_is_one_line(capsys, tmp_path, small_data):
    _fails_cleanly(capsys, tmp_path, "train", "--device", "cpu", "--hidden", "99999999999", "--save",
                   tmp_path / "m.safetensors", message="GiB of memory is available")


@pytest.mark.parametrize("argv", [["train", "--epochs", "x"], ["evaluate"], ["predict", "m"],
                                  ["train", "--optimizer", "lbfgs"], ["plot"], ["bench", "--bogus"]])
def test_usage_errors_say_nnxp_error(capsys, argv):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert one_line_error(err).startswith("nnxp: error: ")


def test_resume_of_a_run_killed_before_its_first_checkpoint(capsys, tmp_path):
    line = _fails_cleanly(capsys, tmp_path, "train", "--device", "cpu", "--resume", tmp_path / "ck.safetensors",
                          message="not found")
    assert "first checkpoint at the end of its first epoch" in line


def _rewrite_training(path, change):
    import safetensors.numpy

    arrays = safetensors.numpy.load_file(str(path))
    with open(path, "rb") as f:
        meta = json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"]
    for key, edit in change.items():
        meta[key] = json.dumps(edit(json.loads(meta[key])))
    safetensors.numpy.save_file(arrays, str(path), metadata=meta)


@pytest.mark.parametrize("change,message", [
    ({"training": lambda t: {**t, "settings": {**t["settings"], "schedule": ["cosine"]}}}, "setting 'schedule'"),
    ({"training": lambda t: {**t, "settings": {**t["settings"], "hidden": "8"}}}, "setting 'hidden'"),
    ({"training": lambda t: {**t, "settings": {**t["settings"], "batch_size": 0}}}, "setting 'batch_size'"),
    ({"optimizer": lambda o: {**o, "t": -5}}, "step count is -5"),
])
def test_damaged_checkpoint_settings_on_resume(capsys, tmp_path, checkpoint, change, message):
    _rewrite_training(checkpoint, change)
    _fails_cleanly(capsys, tmp_path, "train", "--device", "cpu", "--resume", checkpoint, "--epochs", "3",
                   message=message)


def test_divergence_never_names_an_old_file_as_good(capsys, tmp_path, small_data):
    old = tmp_path / "m.safetensors"
    nnxp.Network([784, 4, 10], device="cpu").save(old)  # some earlier run's file at the --save path
    before = old.read_bytes()
    code, _, err = run_cli(capsys, "train", "--device", "cpu", "--optimizer", "sgd", "--lr", "1e39",
                           "--batch-size", "300", "--epochs", "3", "--save", old, "--quiet")
    assert code == 1
    line = one_line_error(err)
    assert "diverged in epoch 1" in line and "1e+39" in line and "no checkpoint was written" in line
    assert old.read_bytes() == before


def test_exploding_finite_loss_stops_and_keeps_the_good_checkpoint(capsys, tmp_path, checkpoint):
    good = checkpoint.read_bytes()
    metrics = tmp_path / "metrics.jsonl"
    code, _, err = run_cli(capsys, "train", "--device", "cpu", "--resume", checkpoint, "--epochs", "5",
                           "--lr", "1e6", "--metrics", metrics, "--quiet")
    assert code == 1
    line = one_line_error(err)
    assert "diverged in epoch 2" in line and "(1e+06)" in line and f"last good checkpoint is {checkpoint}" in line
    assert checkpoint.read_bytes() == good
    assert nnxp.checkpoint.load_checkpoint(checkpoint).epoch == 1


# -- random flag values ---------------------------------------------------------------------------------

_words = st.one_of(st.sampled_from(["0", "-1", "1", "2", "1.5", "nan", "inf", "-inf", "1e39", "1e-300", "",
                                    "none", "8,8", "8,,8", "0,4", "99999999999", "abc", "relu", "sigmoid",
                                    "leaky_relu:0.5", "leaky_relu:x", "leaky_relu:nan", "softmax", "identity",
                                    "cross_entropy", "he", "cosine", "adam", "sgd", "float64", "cuda",
                                    "cuda:7", "cpu", "auto"]),
                   st.text(alphabet="0123456789.,-e:abcx", max_size=6))
_TRAIN_FLAGS = ["--hidden", "--activation", "--output", "--loss", "--init", "--optimizer", "--lr", "--schedule",
                "--momentum", "--weight-decay", "--batch-size", "--seed", "--dtype", "--device", "--epochs"]


@fuzz(40)
@given(flags=st.dictionaries(st.sampled_from(_TRAIN_FLAGS), _words, max_size=4))
def test_random_train_flags(capsys, tmp_path_factory, small_data, flags):
    directory = tmp_path_factory.mktemp("flags")
    save = directory / "m.safetensors"
    if "--epochs" in flags and flags["--epochs"].isdigit() and int(flags["--epochs"]) > 2:
        flags["--epochs"] = "2"
    if "--hidden" in flags and any(p.isdigit() and int(p) > 64 for p in flags["--hidden"].split(",")):
        flags["--hidden"] = "99999999999"  # big widths: the memory check, not a long run
    argv = ["train", "--quiet", "--save", save, "--epochs", "1"]
    for flag, value in flags.items():
        argv += [flag, value] if flag != "--device" or value in ("cpu", "auto", "", "abc", "cuda:7") else [flag, "cpu"]
    code, out, err = run_cli(capsys, *argv)
    if code == 0:
        assert save.exists() and out.startswith("test accuracy")
    else:
        assert code in (1, 2), err
        line = one_line_error(err)
        assert line.startswith("nnxp: error: " if code == 2 else "nnxp: training diverged")
        if code == 2:
            assert not save.exists()


def test_out_of_memory_is_one_line(capsys, monkeypatch, small_data):
    import nnxp.cli.train as train_cli

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(train_cli, "_describe_run", no_memory)
    code, _, err = run_cli(capsys, "train", "--device", "cpu", "--no-save")
    assert code == 2 and "out of memory" in one_line_error(err)
