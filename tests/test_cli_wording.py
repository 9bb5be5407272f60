"""Wording the docs quote: counts agree with their nouns, help says what a command does."""

from __future__ import annotations

from conftest import run_cli


def test_one_epoch_is_one_epoch(capsys):
    code, out, _ = run_cli(capsys, "train", "--device", "cpu", "--epochs", "1", "--hidden", "8", "--no-save", "-q")
    assert code == 0
    assert out.rstrip().endswith("after 1 epoch"), out


def test_one_text_epoch_is_one_epoch(capsys, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(" ".join(["alpha bravo charlie delta echo"] * 400))
    code, out, err = run_cli(capsys, "text", "train", corpus, "--merges", "5", "--context", "2", "--dim", "4",
                             "--hidden", "8", "--epochs", "1", "--device", "cpu", "-o", tmp_path / "m.safetensors",
                             "--no-progress")
    assert code == 0, err
    assert " after 1 epoch (" in out and "1 epochs" not in out, out


def test_plot_help_names_what_is_plotted(capsys):
    code, out, _ = run_cli(capsys, "plot", "--help")
    text = " ".join(out.split())
    assert "train and test" not in text
    assert "validation or test where the run recorded them" in text
    assert "or from a model or checkpoint nnxp train wrote" in text
