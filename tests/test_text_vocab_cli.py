"""`nnxp text vocab`: a streamed corpus gives what the whole text gives; bad input (undecodable
arguments, binary, not UTF-8, empty, a huge line with no place to cut) is one error line, exit 2."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import one_line_error, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnxp.text import Tokenizer, learn
from nnxp.text import pretokenize
from nnxp.text.corpus import MAX_RUN, corpus_blocks

REPO = Path(__file__).resolve().parent.parent


def _text(n_words: int, seed: int = 0) -> str:
    import random

    rng = random.Random(seed)
    words = ["the", "cat", "Sat", "on", "a", "mat,", "σοφός", "ΣΟΦΟΣ", "don't", "42", "İ", "ß", "\n\n", "  ", "\t"]
    return " ".join(rng.choice(words) for _ in range(n_words))


def test_a_streamed_corpus_learns_what_the_whole_text_learns(tmp_path, capsys):
    text = _text(60_000)  # ~300 KB: several blocks
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    blocks, _ = corpus_blocks(corpus, block_size=1000)
    assert "".join(blocks) == text
    for mode in ("byte", "word"):
        code, out, err = run_cli(capsys, "text", "vocab", corpus, "--mode", mode, "--merges", "10", "-o",
                                 tmp_path / f"{mode}.json")
        assert code == 0, err
        tokenizer, result = learn(text, 10, mode)
        assert out.splitlines() == result.vocabulary_lines()
        assert Tokenizer.load(tmp_path / f"{mode}.json").merges == tokenizer.merges
        assert f"{len(text.encode()):,} bytes" in err


def test_gpt4_pre_tokenizer_from_the_command_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("regex")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(_text(3000), encoding="utf-8")
    out_file = tmp_path / "t.json"
    code, _, err = run_cli(capsys, "text", "vocab", corpus, "--mode", "byte", "--pre-tokenizer", "gpt4",
                           "--merges", "30", "-o", out_file)
    assert code == 0, err
    assert Tokenizer.load(out_file).pre_tokenizer == "gpt4"
    code, _, err = run_cli(capsys, "text", "vocab", corpus, "--pre-tokenizer", "gpt4")  # word mode
    assert code == 2 and "is for the byte mode" in one_line_error(err)
    # Without the regex package: one line naming it.
    monkeypatch.setitem(sys.modules, "regex", None)
    monkeypatch.delitem(pretokenize._FINDERS, "gpt4", raising=False)
    code, _, err = run_cli(capsys, "text", "vocab", corpus, "--mode", "byte", "--pre-tokenizer", "gpt4")
    assert code == 2 and "pip install regex" in one_line_error(err)


@pytest.mark.parametrize("content, message", [
    (b"the cat " * 30_000 + b"\0\1\2", "is a binary file"),
    (b"the cat " * 30_000 + b"caf\xe9", "is not UTF-8 text (invalid byte at offset 240003)"),
    (b" \n\t\n  ", "is empty"),
    (b"", "is empty"),
    (b"a" * (MAX_RUN + 10) + b" cat", "has a run of more than"),
])
def test_bad_corpora_are_one_error_line(tmp_path, capsys, content, message):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(content)
    for mode in ("byte", "word"):
        code, out, err = run_cli(capsys, "text", "vocab", corpus, "--mode", mode, "-o", tmp_path / "t.json")
        assert code == 2 and out == ""
        line = one_line_error(err)
        assert str(corpus) in line and message in line, line
    assert not (tmp_path / "t.json").exists()
    # `text train` reads the whole corpus (it encodes it) and refuses the same files; a huge run is
    # also a line over its MAX_LINE, which it names first.
    code, _, err = run_cli(capsys, "text", "train", corpus, "--device", "cpu", "-o", tmp_path / "m.safetensors")
    line = one_line_error(err)
    assert code == 2 and (message in line or (message == "has a run of more than" and "characters long" in line))


def test_a_huge_line_of_words_is_fine(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(_text(400_000).replace("\n", " "), encoding="utf-8")  # one 2 MB line
    code, out, err = run_cli(capsys, "text", "vocab", corpus, "--mode", "byte", "--merges", "10")
    assert code == 0, err


def _nnxp(*argv: bytes | str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "nnxp", *argv], cwd=cwd, env=env, capture_output=True,
                          timeout=120)


def test_undecodable_arguments(tmp_path):
    # Command-line bytes that are not UTF-8 reach Python as lone surrogates.
    done = _nnxp("text", "vocab", b"\xff\xfe.txt", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == b""
    line = one_line_error(done.stderr.decode("utf-8", "replace"))
    assert "not found" in line
    (tmp_path / os.fsdecode(b"c\xff.txt")).write_text(_text(500), encoding="utf-8")
    done = _nnxp("text", "vocab", b"c\xff.txt", "--merges", "5", "-o", b"t\xfe.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / os.fsdecode(b"t\xfe.json")).read_text())["model"]["type"] == "BPE"
    done = _nnxp("text", "vocab", "--merges", b"\xff", cwd=tmp_path)
    assert done.returncode == 2
    one_line_error(done.stderr.decode("utf-8", "replace"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
       merges=st.none() | st.integers(-2, 40).map(str) | st.text(max_size=3),
       mode=st.sampled_from([None, "word", "byte"]), pre=st.sampled_from([None, "gpt2", "gpt4"]))
def test_any_vocab_invocation_succeeds_or_is_one_error_line(tmp_path, content, merges, mode, pre):
    # Property: whatever the corpus bytes and flags, exit 0 with `count symbol` lines, or exit 2
    # with one `nnxp: error:` line; the corpus is never changed.
    from nnxp.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(content)
    argv = ["text", "vocab", str(corpus)]
    for flag, value in (("--merges", merges), ("--mode", mode), ("--pre-tokenizer", pre)):
        if value is not None:
            argv += [f"{flag}={value}"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert corpus.read_bytes() == content
    if code == 0:
        assert all(line.split(" ", 1)[0].isdigit() for line in out.getvalue().splitlines())
    else:
        assert code == 2 and out.getvalue() == ""
        one_line_error(err.getvalue())
