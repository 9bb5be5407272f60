"""`nnxp text`: vocab, train (beats the bigram baseline), neighbours; one-line errors with exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import one_line_error, run_cli

from nnxp.text import read_corpus
from nnxp.text.baselines import split_stream
from nnxp.text.model import NextTokenModel, train_model

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


def second_order_text(n: int = 12_000, seed: int = 0) -> str:
    """Words where the next one depends on the two before it (90%): a bigram cannot know."""
    rng = np.random.default_rng(seed)
    rule = rng.integers(0, len(WORDS), (len(WORDS), len(WORDS)))
    seq = list(rng.integers(0, len(WORDS), 2))
    for _ in range(n):
        seq.append(rule[seq[-2], seq[-1]] if rng.random() < 0.9 else rng.integers(0, len(WORDS)))
    return " ".join(WORDS[i] for i in seq)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(second_order_text(), encoding="utf-8")
    return path


SMALL = ["--context", "2", "--dim", "8", "--hidden", "32", "--dropout", "0", "--embedding-dropout", "0",
         "--device", "cpu", "--no-progress"]


def test_train_beats_the_bigram_baseline_and_neighbours_reads_the_model(capsys, tmp_path, corpus):
    model = tmp_path / "m.safetensors"
    metrics = tmp_path / "m.jsonl"
    report = tmp_path / "m.json"
    code, out, err = run_cli(capsys, "text", "train", corpus, *SMALL, "--epochs", "3", "--lr", "0.01", "-o", model,
                             "--metrics", metrics, "--json", report)
    assert code == 0, err
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    table = json.loads(report.read_text())["perplexity"]
    assert list(table) == ["add-k bigram", "KN 2-gram", "KN 3-gram", "KN 4-gram", "nnxp model",
                           "model + KN 2-gram", "model + KN 3-gram", "model + KN 4-gram"]
    # The text is second-order: the model must beat both bigrams on the test text, scored once.
    assert table["nnxp model"]["test"] < min(table["add-k bigram"]["test"], table["KN 2-gram"]["test"])
    assert min(r["val_perplexity"] for r in records) == pytest.approx(table["nnxp model"]["validation"])
    assert "the model beats add-k bigram, KN 2-gram" in out and "validation perplexity" in out
    code, out, err = run_cli(capsys, "text", "neighbours", model, "alpha", "Echo", "-n", "3")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("alpha: ") and len(lines[0].split("  ")) == 3
    assert lines[1].startswith("Echo: ")


def test_training_runs_on_every_backend(backend):
    stream = np.tile(np.arange(6), 40)
    model = NextTokenModel(6, 2, 4, 8, dropout=0.1, embedding_dropout=0.1, device=backend, dtype="float32",
                           seed=0)
    run = train_model(model, split_stream(stream, 0.1, 0.1, 2), epochs=2, batch_size=64, lr=0.1,
                      progress=False, compare=False)
    assert all(backend.owns(p) for p in model.parameters())
    # The stream is deterministic: the model learns it, far below the uniform perplexity 6.
    assert run.test_perplexity < 1.5 and len(run.epochs) == 2


def test_early_stopping_restores_the_best_weights_and_decays_the_learning_rate():
    """A learning rate far too high makes validation worse: each such epoch goes back to the best
    weights (bit for bit) with half the step, and patience ends the run."""
    stream = np.random.default_rng(0).integers(0, 8, 400)
    model = NextTokenModel(8, 2, 4, 8, device="cpu", seed=0)
    seen = []
    run = train_model(model, split_stream(stream, 0.2, 0.1, 2), epochs=10, lr=1.0, patience=2, lr_decay=0.5,
                      progress=False, compare=False,
                      on_epoch=lambda r, _: seen.append((r, [p.copy() for p in model.parameters()])))
    records = [r for r, _ in seen]
    assert run.stopped_early and len(records) < 10
    assert [r.improved for r in records[-2:]] == [False, False]
    best = max(i for i, r in enumerate(records) if r.improved)
    for r, params in seen[best + 1:]:
        assert r.next_lr == r.lr * 0.5
        for a, b in zip(params, seen[best][1]):
            np.testing.assert_array_equal(a, b)
    assert run.val_perplexity == pytest.approx(records[best].val_perplexity)


def test_vocab_prints_count_symbol_lines_and_writes_tokenizer_json(capsys, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("The cat, the CAT sat.")
    out_file = tmp_path / "tok.json"
    code, out, err = run_cli(capsys, "text", "vocab", corpus, "--merges", "4", "-o", out_file)
    assert code == 0, err
    assert out.splitlines() == ["2 cat", "2 the"]
    assert json.loads(out_file.read_text())["model"]["type"] == "BPE"


def test_vocab_on_the_default_corpus_stops_where_the_corpus_does(capsys):
    code, out, err = run_cli(capsys, "text", "vocab")
    assert code == 0
    assert out.splitlines()[0].split() == [out.splitlines()[0].split()[0], "the"]
    assert "note: the corpus allows only" in err


def test_default_corpus_is_cpython_documentation():
    text, name = read_corpus()
    assert "pydoc_data" in name and len(text) > 100_000


@pytest.mark.parametrize("content, message", [
    (b"abc\0def", "is a binary file"),
    (b"", "is empty"),
    (b"  \n\t ", "is empty"),
    (b"caf\xe9", "is not UTF-8 text"),
])
def test_bad_corpus_is_one_line_exit_2(capsys, tmp_path, content, message):
    path = tmp_path / "c.txt"
    path.write_bytes(content)
    for command in ("vocab", "train"):
        code, _, err = run_cli(capsys, "text", command, path, "-o" if command == "vocab" else "--save",
                               tmp_path / "out")
        assert code == 2 and message in one_line_error(err)


def test_directory_corpus_reads_every_text_file_and_names_a_binary_one(capsys, tmp_path):
    (tmp_path / "a.txt").write_text("the cat the cat")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("sat on the mat")
    assert read_corpus(tmp_path)[0] == "the cat the cat\nsat on the mat"
    (tmp_path / "sub" / "c.bin").write_bytes(b"\x00\x01")
    code, _, err = run_cli(capsys, "text", "vocab", tmp_path)
    assert code == 2 and "c.bin is a binary file" in one_line_error(err)


def test_too_many_merges_unknown_token_and_wrong_model_file(capsys, tmp_path, corpus):
    small = tmp_path / "s.txt"
    small.write_text("The cat, the CAT sat.")
    code, _, err = run_cli(capsys, "text", "vocab", small, "--merges", "5")
    assert code == 2 and "allows only 4 merges" in one_line_error(err)
    model = tmp_path / "m.safetensors"
    code, _, err = run_cli(capsys, "text", "train", corpus, "--epochs", "1", *SMALL, "-o", model)
    assert code == 0, err
    code, _, err = run_cli(capsys, "text", "neighbours", model, "alpha", "zulu")
    assert code == 2 and "unknown token 'zulu'" in one_line_error(err)
    code, _, err = run_cli(capsys, "text", "neighbours", small, "the")
    assert code == 2 and "not an nnxp model file" in one_line_error(err)


def test_readme_text_example_runs_and_prints_what_it_says(tmp_path, monkeypatch, capsys):
    import re

    from docs_harness import example_block

    block = example_block("vocabulary_lines", "docs/tokenizer.md", "docs/text.md")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    promised = re.search(r"print\(result\.vocabulary_lines\(\)\[:3\]\)\s+# (.*)", block).group(1)
    assert capsys.readouterr().out.strip() == promised
    assert (tmp_path / "tokenizer.json").exists()


def test_an_interrupted_run_resumes_to_the_same_weights(capsys, tmp_path, corpus):
    """Also when the interruption comes right after an epoch that restored the best weights
    (epoch 3 here): the optimizer state the checkpoint holds is the one the next epoch uses."""
    import nnxp

    common = ["--context", "2", "--dim", "4", "--hidden", "8", "--device", "cpu", "--no-progress", "--lr", "0.3"]
    whole, part = tmp_path / "whole.safetensors", tmp_path / "part.safetensors"
    assert run_cli(capsys, "text", "train", corpus, "--epochs", "5", "-o", whole, *common)[0] == 0
    code, out, err = run_cli(capsys, "text", "train", corpus, "--epochs", "3", "-o", part, *common)
    assert code == 0 and "epoch 3/3" in out and "best weights restored" in out.split("epoch 3/3")[1].splitlines()[0]
    code, out, err = run_cli(capsys, "text", "train", corpus, "--resume", part, "--epochs", "5", "--no-progress")
    assert code == 0, err
    assert "epoch 4/5" in out and "epoch 3/5" not in out
    for a, b in zip(nnxp.load(whole, device="cpu").parameters(), nnxp.load(part, device="cpu").parameters()):
        np.testing.assert_array_equal(nnxp.to_numpy(a), nnxp.to_numpy(b))
    code, _, err = run_cli(capsys, "text", "train", corpus, "--resume", part, "--epochs", "5")
    assert code == 2 and "already done 5 epochs" in one_line_error(err)
    other = tmp_path / "other.txt"
    other.write_text(second_order_text(seed=1))
    code, _, err = run_cli(capsys, "text", "train", other, "--resume", part, "--epochs", "6")
    assert code == 2 and "resume with the same CORPUS" in one_line_error(err)
