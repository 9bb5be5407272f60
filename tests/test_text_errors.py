"""Bad input to `nnxp text train` and `nnxp text neighbours`: one `nnxp: error:` line and exit 2
(a diverged run: one line and exit 1), never a traceback; crafted checkpoints and model files refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.numpy
from conftest import one_line_error, run_cli

REPO = Path(__file__).resolve().parent.parent
TEXT = " ".join(["the cat sat on the mat", "a dog ate the bone", "the cat ate a bone"] * 60)
TINY = ["--context", "2", "--dim", "4", "--hidden", "8", "--device", "cpu", "--no-progress", "--merges", "5"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(corpus, checkpoint) of a one-epoch word-mode run."""
    folder = tmp_path_factory.mktemp("text")
    corpus, model = folder / "c.txt", folder / "m.safetensors"
    corpus.write_text(TEXT)
    from nnxp.cli import main

    assert main([str(a) for a in ("text", "train", corpus, *TINY, "--epochs", "1", "-o", model)]) == 0
    return corpus, model


def _crafted(source: Path, target: Path, **changes) -> Path:
    """A copy of ``source`` with metadata entries (decoded JSON) changed by the functions in ``changes``."""
    arrays = safetensors.numpy.load_file(str(source))
    with open(source, "rb") as f:
        meta = json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"]
    for key, change in changes.items():
        value = change(json.loads(meta[key]) if key in meta else None)
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = json.dumps(value)
    safetensors.numpy.save_file(arrays, str(target), metadata=meta)
    return target


def _setting(key, value):
    def change(training):
        settings = dict(training["settings"])
        if value is _DROP:
            settings.pop(key)
        else:
            settings[key] = value
        return {**training, "settings": settings}
    return {"training": change}


_DROP = object()


def _bigger_tokenizer(spec):
    vocab = dict(spec["model"]["vocab"])
    vocab["zzzz"] = len(vocab)
    return {**spec, "model": {**spec["model"], "vocab": vocab}}


def _byte_tokenizer(spec):
    from nnxp.text import learn

    return learn(TEXT, 3, "byte")[0].to_json()


CRAFTED_CHECKPOINTS = {
    "context 'abc'": (_setting("context", "abc"), "'context'"),
    "dtype float16": (_setting("dtype", "float16"), "'dtype'"),
    "no mode": (_setting("mode", _DROP), "'mode'"),
    "no corpus": (_setting("corpus", _DROP), "'corpus'"),
    "seed 'x'": (_setting("seed", "x"), "'seed'"),
    "batch_size 0": (_setting("batch_size", 0), "'batch_size'"),
    "val_split 0": (_setting("val_split", 0.0), "val_split and test_split"),
    "context 3 for a 2-token network": (_setting("context", 3), "'context' is 3 but the network has 2"),
    "no tokenizer": ({"tokenizer": lambda spec: None}, "tokenizer: missing"),
    "tokenizer larger than the table": ({"tokenizer": _bigger_tokenizer}, "tokens for an embedding table"),
    "byte tokenizer over a word vocabulary": ({"tokenizer": _byte_tokenizer}, "tokenizer:"),
}


@pytest.mark.parametrize("case", list(CRAFTED_CHECKPOINTS))
def test_crafted_checkpoints_are_refused_on_resume_with_one_line(capsys, tmp_path, trained, case):
    corpus, model = trained
    changes, message = CRAFTED_CHECKPOINTS[case]
    crafted = _crafted(model, tmp_path / "crafted.safetensors", **changes)
    code, _, err = run_cli(capsys, "text", "train", corpus, "--resume", crafted, "--epochs", "3")
    line = one_line_error(err)
    assert code == 2 and message in line and str(crafted) in line


CRAFTED_MODELS = {
    "no tokenizer": {"tokenizer": lambda spec: None},
    "tokenizer not an object": {"tokenizer": lambda spec: [1, 2]},
    "tokenizer without a model": {"tokenizer": lambda spec: {"normalizer": None}},
    "tokenizer vocabulary ids with a gap": {"tokenizer": lambda spec: {**spec, "model": {
        **spec["model"], "vocab": {k: 2 * v for k, v in spec["model"]["vocab"].items()}}}},
    "tokenizer larger than the table": {"tokenizer": _bigger_tokenizer},
    "tokenizer smaller than the table": {"tokenizer": lambda spec: {**spec, "model": {
        **spec["model"], "vocab": {k: v for k, v in spec["model"]["vocab"].items() if v < 3}, "merges": []}}},
    "kind missing": {"kind": lambda kind: None},
    "network without the embedding first": {"network": lambda net: {**net, "layers": net["layers"][1:]}},
    "output not over the vocabulary": {"network": lambda net: {**net, "layers": [
        *net["layers"][:-1], {**net["layers"][-1], "out": 3}]}},
}


@pytest.mark.parametrize("case", list(CRAFTED_MODELS))
def test_neighbours_refuses_crafted_models_with_one_line(capsys, tmp_path, trained, case):
    crafted = _crafted(trained[1], tmp_path / "crafted.safetensors", **CRAFTED_MODELS[case])
    code, _, err = run_cli(capsys, "text", "neighbours", crafted, "the")
    assert code == 2 and str(crafted) in one_line_error(err)


def _cli(*argv: str | bytes, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "nnxp", *argv], cwd=cwd, env=env, capture_output=True,
                          timeout=120)


def test_undecodable_arguments_are_one_line_not_a_traceback(tmp_path, trained):
    """The defect: `nnxp text neighbours MODEL $'\\xff'` ended in a UnicodeEncodeError traceback."""
    result = _cli("text", "neighbours", str(trained[1]), b"\xff", cwd=tmp_path)
    err = result.stderr.decode("utf-8")
    assert result.returncode == 2 and one_line_error(err).startswith("nnxp: error: TOKEN")
    assert "not valid UTF-8" in err
    result = _cli("text", "train", b"corpus-\xff.txt", "--epochs", "1", cwd=tmp_path)
    err = result.stderr.decode("utf-8")
    assert result.returncode == 2 and "CORPUS" in one_line_error(err) and "not valid UTF-8" in err


def test_a_huge_line_corpus_is_refused(capsys, tmp_path):
    from nnxp.text.corpus import MAX_LINE

    path = tmp_path / "blob.txt"
    path.write_text("short line\n" + "ab" * (MAX_LINE // 2 + 1) + "\n")
    code, _, err = run_cli(capsys, "text", "train", path, "--epochs", "1")
    line = one_line_error(err)
    assert code == 2 and "line 2 is" in line and "break it into lines" in line and str(path) in line


def test_divergence_is_one_line_and_exit_1(capsys, tmp_path, trained):
    """No NumPy overflow warnings before the one line."""
    corpus = trained[0]
    code, out, err = run_cli(capsys, "text", "train", corpus, *TINY, "--epochs", "2", "--lr", "1e30",
                             "--optimizer", "sgd", "-o", tmp_path / "d.safetensors")
    lines = err.splitlines()
    assert code == 1 and lines[-1].startswith("nnxp: training diverged in epoch 1")
    assert not [line for line in lines if line.startswith("nnxp") and line != lines[-1]]
    assert "Warning" not in err + out and "epoch 1/2" not in out  # nothing of the diverged epoch was kept


def test_fractions_that_leave_no_training_text(capsys, trained):
    code, _, err = run_cli(capsys, "text", "train", trained[0], "--val-split", "0.5", "--test-split", "0.5")
    assert code == 2 and "leave no training text" in one_line_error(err)


def test_resuming_a_run_that_stopped_early_says_so(capsys, tmp_path, trained):
    corpus, model = trained
    stopped = _crafted(model, tmp_path / "stopped.safetensors", training=lambda t: {**t, "epoch": 3, "history": [
        {**t["history"][0], "epoch": i, "improved": int(i == 1)} for i in (1, 2, 3)]})
    code, _, err = run_cli(capsys, "text", "train", corpus, "--resume", stopped, "--epochs", "5")
    assert code == 2 and "stopped early after epoch 3" in one_line_error(err)
