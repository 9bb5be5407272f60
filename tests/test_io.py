"""Issue 19's cases, one test each: an output naming a file the same command reads (data loss), a FIFO
(a hang), ``/dev/zero`` (memory exhausted) — each refused with one ``nnxp: error:`` line, exit 2, every
input's bytes unchanged. The property test over every command is tests/test_cli_property.py."""

from __future__ import annotations

import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from nnxp.cli import main

from conftest import run_cli

TIMEOUT_S = 20


class Hang(Exception):
    pass


@contextmanager
def no_hang(seconds: float = TIMEOUT_S):
    """Fail (instead of hanging CI) when the body blocks longer than ``seconds``: SIGALRM interrupts
    even a blocking open() of a FIFO."""
    def alarm(signum, frame):
        raise Hang(f"blocked for over {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def refused(capsys, *argv, inputs=(), message=""):
    """Run ``nnxp *argv``: exit 2, one error line containing ``message``, every input's bytes unchanged."""
    before = {Path(p): Path(p).read_bytes() for p in inputs}
    with no_hang():
        code, _, err = run_cli(capsys, *argv)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]  # progress lines may come first
    line = lines[-1]
    assert [x for x in lines if x.startswith("nnxp: error:")] == [line], err
    assert message in line, line
    for path, data in before.items():
        assert path.read_bytes() == data, f"{path} was changed"
    return line


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corp.txt"
    path.write_text("the cat sat on the mat and the dog sat on the log\n" * 40)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny untrained 784-4-10 model file."""
    import nnxp

    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    nnxp.save(nnxp.Network([784, 4, 10], seed=0), path)
    return path


# -- data loss: an output that names an input -----------------------------------------------------

@pytest.mark.parametrize("flag", ["-o", "--metrics"])
def test_text_train_output_is_the_corpus(capsys, tmp_path, corpus, flag):
    argv = ["text", "train", corpus, flag, corpus, "--epochs", "1", "--merges", "5", "--dim", "2", "--hidden", "2"]
    if flag == "--metrics":
        argv += ["-o", tmp_path / "model.safetensors"]
    refused(capsys, *argv, inputs=[corpus], message="CORPUS")


def test_text_vocab_output_is_the_corpus(capsys, corpus):
    refused(capsys, "text", "vocab", corpus, "-o", corpus, inputs=[corpus], message="CORPUS")


def test_text_output_inside_a_corpus_directory(capsys, tmp_path, corpus):
    (tmp_path / "sub").mkdir()
    output = os.path.join(tmp_path, "sub", "..", corpus.name)  # the corpus file, by another name
    refused(capsys, "text", "vocab", tmp_path, "-o", output, inputs=[corpus], message="CORPUS")


def test_export_over_its_own_model(capsys, tmp_path, model):
    onnx_named = tmp_path / "model.onnx"  # a safetensors file named .onnx
    onnx_named.write_bytes(model.read_bytes())
    refused(capsys, "export", onnx_named, onnx_named, inputs=[onnx_named], message="MODEL")
    os.link(onnx_named, tmp_path / "hard.onnx")  # the same file by a hard link
    refused(capsys, "export", onnx_named, tmp_path / "hard.onnx", inputs=[onnx_named], message="MODEL")


def test_images_png_over_the_model(capsys, tmp_path, model):
    png = tmp_path / "m.png"
    png.write_bytes(model.read_bytes())
    refused(capsys, "images", "--model", png, "--png", png, "--no-text", inputs=[png], message="--model")


def _write_mnist(directory: Path) -> list[Path]:
    from nnxp.data.idx import write_idx

    rng = np.random.default_rng(0)
    files = []
    for stem, array in (("train-images-idx3-ubyte", rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)),
                        ("train-labels-idx1-ubyte", rng.integers(0, 10, 20, dtype=np.uint8)),
                        ("t10k-images-idx3-ubyte", rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)),
                        ("t10k-labels-idx1-ubyte", rng.integers(0, 10, 10, dtype=np.uint8))):
        write_idx(directory / stem, array)
        files.append(directory / stem)
    return files


@pytest.mark.parametrize("flag", ["--metrics", "--save", "--checkpoint", "--save-best"])
def test_train_output_over_a_dataset_file(capsys, tmp_path, monkeypatch, flag):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "D"
    data.mkdir()
    files = _write_mnist(data)
    argv = ["train", "--dataset", "mnist", "--data-dir", data, "--epochs", "1", "--hidden", "4", "--quiet",
            "--val-split", "0.5", flag, data / "t10k-labels-idx1-ubyte"]
    refused(capsys, *argv, inputs=files, message="--dataset mnist")


def test_resume_from_another_directory_writes_where_the_run_wrote(capsys, tmp_path, monkeypatch):
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    b.mkdir()
    monkeypatch.chdir(a)
    assert main(["train", "--device", "cpu", "--epochs", "1", "--hidden", "4", "--quiet",
                 "--save", "model.safetensors", "--metrics", "metrics.jsonl"]) == 0
    capsys.readouterr()
    monkeypatch.chdir(b)
    unrelated = {b / "model.safetensors": b"not yours", b / "metrics.jsonl": b"keep me"}
    for path, data in unrelated.items():
        path.write_bytes(data)
    before = (a / "model.safetensors").read_bytes()
    code, out, err = run_cli(capsys, "train", "--device", "cpu", "--resume", "../A/model.ckpt.safetensors",
                             "--epochs", "2", "--hidden", "4")
    assert code == 0, err
    for path, data in unrelated.items():
        assert path.read_bytes() == data, f"{path} was written over"
    assert (a / "model.safetensors").read_bytes() != before  # the resumed run's model went where the run's did
    assert len((a / "metrics.jsonl").read_text().splitlines()) == 2
    assert f"writing the model to {a / 'model.safetensors'}" in out  # resume says where it writes


def test_resume_of_an_old_checkpoint_with_relative_paths(capsys, tmp_path, monkeypatch):
    """Files written before this fix remember relative paths: taken relative to the checkpoint's directory."""
    from nnxp.checkpoint import load_checkpoint, save_checkpoint

    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    b.mkdir()
    monkeypatch.chdir(a)
    assert main(["train", "--device", "cpu", "--epochs", "1", "--hidden", "4", "--quiet",
                 "--save", "model.safetensors"]) == 0
    ck = a / "model.ckpt.safetensors"
    old = load_checkpoint(ck)
    save_checkpoint(ck, old.net, old.optimizer, old.history, {**old.settings, "save": "model.safetensors"})
    monkeypatch.chdir(b)
    (b / "model.safetensors").write_bytes(b"not yours")
    code, _, err = run_cli(capsys, "train", "--device", "cpu", "--resume", ck, "--epochs", "2", "--quiet")
    assert code == 0, err
    assert (b / "model.safetensors").read_bytes() == b"not yours"


# -- hangs: FIFOs ----------------------------------------------------------------------------------

@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("argv", [["text", "vocab", "{fifo}"], ["predict", "{fifo}", "{model}"],
                                  ["predict", "{model}", "{fifo}"], ["plot", "{fifo}"],
                                  ["text", "neighbours", "{fifo}", "the"], ["evaluate", "{fifo}"]],
                         ids=lambda argv: "-".join(a.strip("{}") for a in argv))
def test_fifo_input_is_refused_not_waited_on(capsys, fifo, model, argv):
    line = refused(capsys, *[a.format(fifo=fifo, model=model) for a in argv], message="FIFO")
    assert "not a regular file" in line


def test_library_readers_refuse_a_fifo(fifo):
    import nnxp
    from nnxp.text.tokenizer import Tokenizer
    from nnxp.viz.images import read_image
    from nnxp.viz.metrics import read_metrics

    for read in (Tokenizer.load, nnxp.load, read_image, read_metrics, nnxp.data.read_idx):
        with no_hang(), pytest.raises(nnxp.DataError, match="FIFO"):
            read(fifo)


def test_blas_cache_fifo_neither_blocks_nor_breaks(fifo):
    from nnxp.kernels.blas import choice

    with no_hang():
        assert choice._read_cache(fifo) == {}
        choice._write_cache(fifo, {}, "machine", "step", {"choice": "openblas"})  # an unwritable cache is skipped
    assert fifo.is_fifo()


# -- /dev/zero: refused at once, not read until memory runs out -------------------------------------

@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
@pytest.mark.parametrize("argv", [["text", "vocab", "/dev/zero"], ["predict", "{model}", "/dev/zero"],
                                  ["plot", "/dev/zero"], ["text", "train", "/dev/zero", "--epochs", "1"]],
                         ids=lambda argv: "-".join(argv[:2]))
def test_dev_zero_input(capsys, tmp_path, monkeypatch, model, argv):
    monkeypatch.chdir(tmp_path)
    line = refused(capsys, *[a.format(model=model) for a in argv], message="/dev/zero is a device")
    assert "memory" not in line


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_dev_zero_in_library_readers():
    import nnxp
    from nnxp.kernels.blas import choice
    from nnxp.text.corpus import read_corpus
    from nnxp.viz.images import read_image
    from nnxp.viz.metrics import read_metrics

    for read in (read_corpus, read_image, read_metrics, nnxp.load):
        with no_hang(), pytest.raises(nnxp.DataError, match="device, not a regular file"):
            read("/dev/zero")
    with no_hang():
        assert choice._read_cache(Path("/dev/zero")) == {}


def test_size_limit_per_kind(tmp_path, monkeypatch):
    import nnxp
    from nnxp.io import read

    monkeypatch.setitem(read.LIMITS, "metrics", 100)
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({"epoch": 1, "loss": 0.5, "accuracy": 0.5}) + "\n" * 200)
    with pytest.raises(nnxp.DataError, match=r"big.jsonl is 2\d\d bytes, over the 100 bytes limit for a metrics"):
        read.read_bytes(big, "metrics")


def test_outputs_are_checked_against_each_other_through_links(tmp_path):
    from nnxp.errors import ConfigError
    from nnxp.io.paths import Files

    (tmp_path / "a").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a")
    for other in (tmp_path / "link", tmp_path / "sub" / ".." / "a"):
        files = Files()
        files.input("IN", tmp_path / "a", "corpus")
        with pytest.raises(ConfigError, match="is also IN"):
            files.output("--out", other, "model")
    files = Files()
    files.output("--one", tmp_path / "new", "model")  # two outputs that do not exist yet
    with pytest.raises(ConfigError, match="another output"):
        files.output("--two", tmp_path / "sub" / ".." / "new", "metrics")


@pytest.mark.parametrize("flag", ["--context", "--dim", "--hidden"])
def test_huge_text_model_sizes_are_one_line(capsys, tmp_path, monkeypatch, corpus, flag):
    """Found by the property test: numpy's 'Maximum allowed dimension exceeded' escaped as a traceback."""
    monkeypatch.chdir(tmp_path)
    refused(capsys, "text", "train", corpus, "--merges", "5", "--epochs", "1", flag, "99999999999999999999",
            inputs=[corpus], message="use smaller layers")


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_text_train_with_a_huge_learning_rate_has_no_traceback(capsys, tmp_path, monkeypatch, corpus):
    """Found by the property test: a diverged model's perplexity overflowed math.exp (OverflowError)."""
    monkeypatch.chdir(tmp_path)
    with no_hang():
        code, _, err = run_cli(capsys, "text", "train", corpus, "--merges", "5", "--epochs", "1", "--dim", "2",
                               "--hidden", "4", "--lr", "1e20")
    assert code in (0, 1, 2) and "Traceback" not in err


def test_text_train_negative_seed_is_one_line(capsys, tmp_path, monkeypatch, corpus):
    """Found by the property test: --seed -1 reached NumPy's generator (ValueError traceback)."""
    monkeypatch.chdir(tmp_path)
    refused(capsys, "text", "train", corpus, "--epochs", "1", "--seed", "-1", inputs=[corpus],
            message="--seed: '-1' must be zero or more")
