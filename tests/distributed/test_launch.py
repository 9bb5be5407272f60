"""``nnxp train --distributed``: wrong environments, the command on 2 ranks, resume on any N, faults."""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pytest

import nnxp
import mpi_worker
from mpirun import REPO, mpiexec  # noqa: F401 - the fixture
from nnxp.checkpoint import load_checkpoint
from nnxp.cli import main
from nnxp.distributed.launch import launched_by_mpi, local_rank_from_env

_MPI_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK")


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    return lines[0]


def test_launcher_detection():
    assert launched_by_mpi({"OMPI_COMM_WORLD_RANK": "0"}) and launched_by_mpi({"PMI_RANK": "3"})
    assert not launched_by_mpi({"PATH": "/bin"})
    assert local_rank_from_env({"OMPI_COMM_WORLD_LOCAL_RANK": "2"}) == 2
    assert local_rank_from_env({}) == 0


def test_distributed_outside_mpiexec_is_one_line_and_exit_2(capsys, monkeypatch):
    for name in _MPI_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    pytest.importorskip("mpi4py", reason="mpi4py is not installed")
    assert main(["train", "--distributed", "--device", "cpu", "--epochs", "1", "--no-save"]) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith("nnxp: error: --distributed must run under MPI's launcher")
    assert "mpiexec -n 2 nnxp train --distributed" in line


def test_distributed_without_mpi4py_is_one_line_and_exit_2(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")
    assert main(["train", "--distributed", "--device", "cpu", "--epochs", "1", "--no-save"]) == 2
    line = error_line(capsys.readouterr().err)
    assert line == "nnxp: error: --distributed needs mpi4py and an MPI library: pip install 'nnxp[mpi]'"


def _train_command(*extra) -> list[str]:
    return [sys.executable, "-m", "nnxp", "train", "--device", "cpu", "--hidden", "32", "--batch-size", "50",
            "--optimizer", "momentum", "--val-split", "0.1", "-q", *map(str, extra)]


def test_command_on_two_ranks_matches_one_process_and_resumes_on_any_n(mpiexec, tmp_path):
    # Reference: 2 epochs in one process.
    single = tmp_path / "single.safetensors"
    assert main(_train_command("--epochs", 2, "--checkpoint", single, "--save", tmp_path / "single-model.safetensors",
                               "--metrics", tmp_path / "single.jsonl")[3:]) == 0
    # 1 epoch in one process, then resumed on 2 ranks for the second.
    resumed = tmp_path / "resumed.safetensors"
    assert main(_train_command("--epochs", 1, "--checkpoint", resumed,
                               "--save", tmp_path / "resumed-model.safetensors")[3:]) == 0
    done = mpiexec([*_train_command("--distributed", "--epochs", 2, "--resume", resumed,
                                    "--metrics", tmp_path / "resumed.jsonl")], n=2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test accuracy") == 1  # rank 0 alone prints
    expected, got = load_checkpoint(single), load_checkpoint(resumed)
    assert got.epoch == 2
    for p, q in zip(expected.net.parameters(), got.net.parameters()):
        np.testing.assert_allclose(nnxp.to_numpy(q), nnxp.to_numpy(p), rtol=1e-4, atol=1e-5)
    # ... and from that 2-rank checkpoint on to epoch 3 in one process: any N, both ways.
    assert main(_train_command("--epochs", 3, "--resume", resumed)[3:]) == 0
    assert load_checkpoint(resumed).epoch == 3
    records = [json.loads(line) for line in (tmp_path / "resumed.jsonl").read_text().splitlines()]
    reference = [json.loads(line) for line in (tmp_path / "single.jsonl").read_text().splitlines()]
    # Written by rank 0 only, once per epoch; the checkpoint remembers --metrics, so the
    # single-process resume to epoch 3 keeps writing the same file.
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[1]["loss"] == pytest.approx(reference[1]["loss"], rel=1e-4)
    assert records[1]["val_accuracy"] == pytest.approx(reference[1]["val_accuracy"], abs=2e-3)


def test_readme_example_runs_on_two_ranks(mpiexec, tmp_path):
    """The library example of docs/distributed.md (formerly the README's), on 2 ranks."""
    from docs_harness import example_block

    example = example_block("nnxp.distributed", "docs/distributed.md")
    script = tmp_path / "train_dp.py"
    script.write_text(example)
    done = mpiexec([sys.executable, str(script)], n=2, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("epoch 2/2") == 1  # rank 0 alone prints
    assert nnxp.load(tmp_path / "digits-dp.safetensors").sizes == [784, 128, 10]


@pytest.mark.parametrize("mode", ["raise", "die", "hang"])
def test_a_failing_rank_stops_the_job_and_keeps_the_checkpoint(mpiexec, tmp_path, mode):
    """Rank 1 raises / is killed / hangs after epoch 1: the job ends in bounded time, one nnxp line."""
    started = time.monotonic()
    done = mpiexec([sys.executable, mpi_worker.__file__, "fault", str(tmp_path), mode], n=2, timeout=90)
    elapsed = time.monotonic() - started
    assert done.returncode != 0
    assert elapsed < 60, f"took {elapsed:.0f} s to stop"
    assert "finished all epochs" not in done.stderr
    ours = [line for line in done.stderr.splitlines() if line.startswith("nnxp")]
    if mode == "raise":
        assert ours == ["nnxp: error: rank 1/2: simulated failure on one rank; stopping all ranks"]
        assert done.returncode == 2
    elif mode == "hang":
        assert len(ours) == 1 and ours[0].startswith("nnxp: error: rank 0/2: waited more than 3 s in")
    else:  # killed outright: mpiexec reports it and ends the other rank
        assert ours == [] and "signal 9" in done.stderr
    checkpoint = load_checkpoint(tmp_path / "checkpoint.safetensors")  # complete and loadable
    assert checkpoint.epoch == 1


def test_the_watchdog_sleeps_between_fits(mpiexec, tmp_path):
    """Time outside fit (here 5 s, with a 3 s timeout) is never taken for a hung rank."""
    done = mpiexec([sys.executable, mpi_worker.__file__, "fault", str(tmp_path), "idle"], n=2, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("finished all epochs") == 2


def test_ranks_with_different_settings_stop_with_one_line_naming_it(mpiexec, tmp_path):
    """Issue 19: different --seed/--lr/--optimizer/--dropout/--schedule trained silently (exit 0);
    different --hidden/--dtype corrupted the heap in the start-up broadcast, --batch-size crashed.
    One job runs every case (the worker raises the error that would stop the job, and goes on)."""
    done = mpiexec([sys.executable, mpi_worker.__file__, "agree", str(tmp_path)], n=2, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"agree.rank{r}.json").read_text()) for r in (0, 1)]
    for flag, zero, one in mpi_worker.AGREEMENT_CASES:
        for rank, results in enumerate(ranks):
            code, err = results[flag]
            line = error_line(err)
            assert code == 2, (flag, rank, err)
            # (the job would add "rank R/N: " and "; stopping all ranks" around it: faults.stop_job)
            assert line.startswith(f"nnxp: error: the ranks disagree on {flag}: "), line
            values = line.split(": ", 3)[3]  # e.g. "[8] on rank 0, [16] on rank 1; start ..."
            assert zero in values.split(" on rank 0, ")[0] and one in values.split(" on rank 0, ")[1], line
            assert "on rank 1; " in line and "start every rank with the same nnxp train command" in line
    for case, key in [("sizes", "the network"), ("dtype", "the network"), ("fit seed", "seed")]:
        for results in ranks:
            code, message = results[case]
            assert code == 2 and message.startswith(f"the ranks disagree on {key}: "), (case, message)
