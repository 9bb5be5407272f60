"""``kill -9`` at random moments of a whole ``nnxp train`` run, resumed each time: the end result is
bit for bit the uninterrupted run's (weights, optimizer state, step count, history) (issue 10).

The kills land: during the first epoch (nothing to resume yet: the run is restarted, as the "not
found" message tells users to), inside a checkpoint write (between the temporary file and its
rename; the harness slows ``fsync`` so the kill lands there), and at a random moment.  The seed of
the moments is printed on failure; ``NNXP_KILL_SEED`` replays it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import safetensors.numpy

from nnxp.serialization import read_arrays

# The nnxp command with fsync slowed down by NNXP_TEST_FSYNC_DELAY seconds (test harness only).
_HARNESS = """
import os, sys, time
_fsync, _delay = os.fsync, float(os.environ.get("NNXP_TEST_FSYNC_DELAY", "0"))
def _slow_fsync(fd):
    time.sleep(_delay)
    _fsync(fd)
os.fsync = _slow_fsync
from nnxp.cli import main
sys.exit(main(sys.argv[1:]))
"""
SETTINGS = ["--device", "cpu", "--epochs", "4", "--hidden", "32", "--optimizer", "adam", "--batch-size", "128",
            "--seed", "5", "--schedule", "cosine"]


def _start(*args, delay=0.0):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NNXP_TEST_FSYNC_DELAY": str(delay)}
    return subprocess.Popen([sys.executable, "-c", _HARNESS, "train", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def _epochs(path):
    try:
        return read_arrays(path)[1]["training"]["epoch"]
    except Exception:  # noqa: BLE001 - absent (or, never expected, damaged)
        return 0


def _temps(directory):
    return [p for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


def _wait_for(condition, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def _kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    proc.stderr.close()


def _state(path):
    arrays = safetensors.numpy.load_file(str(path))
    meta = read_arrays(path)[1]
    history = [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_second")}
               for r in meta["training"]["history"]]
    return arrays, meta["optimizer"], history


@pytest.mark.slow
def test_kill_at_random_moments_then_resume_is_bit_identical(tmp_path):
    seed = int(os.environ.get("NNXP_KILL_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    note = f"(NNXP_KILL_SEED={seed})"

    full = tmp_path / "full" / "ck.safetensors"
    full.parent.mkdir()
    reference = _start(*SETTINGS, "--checkpoint", full, "--save", full.parent / "model.safetensors", "--quiet")
    assert reference.wait(timeout=300) == 0, reference.stderr.read()
    reference.stdout.close(), reference.stderr.close()

    run = tmp_path / "run"
    run.mkdir()
    ck = run / "ck.safetensors"
    kills = {"first epoch": 0, "checkpoint write": 0, "random": 0}

    # 1. During the first epoch: no checkpoint yet, and --resume says why.
    proc = _start(*SETTINGS, "--checkpoint", ck, "--save", run / "model.safetensors")
    assert _wait_for(lambda: proc.stdout.readline().startswith("nnxp "), proc), note  # training starts
    time.sleep(rng.uniform(0.0, 0.05))
    if not ck.exists():
        _kill(proc)
        kills["first epoch"] += 1
        done = subprocess.run([sys.executable, "-m", "nnxp", "train", "--resume", ck, *SETTINGS],
                              capture_output=True, text=True)
        assert done.returncode == 2 and "first checkpoint at the end of its first epoch" in done.stderr, note
    else:
        _kill(proc)  # the machine was fast: the epoch ended first; this kill is a random one
        kills["random"] += 1

    def start_or_resume(delay=0.0):
        return _start(*(["--resume", ck] if ck.exists() else []), *SETTINGS, "--checkpoint", ck,
                      "--save", run / "model.safetensors", "--quiet", delay=delay)

    # 2. Inside a checkpoint write: kill once its temporary file exists (fsync slowed to 0.5 s).
    proc = start_or_resume(delay=0.5)
    before = _epochs(ck)
    if _wait_for(lambda: _temps(run), proc):
        _kill(proc)
        kills["checkpoint write"] += 1
        assert _epochs(ck) == before, f"a half-written checkpoint replaced the last good one {note}"
    else:
        proc.wait(), proc.stdout.close(), proc.stderr.close()

    # 3. At a random moment.
    proc = start_or_resume()
    time.sleep(rng.uniform(0.5, 3.0))
    if proc.poll() is None:
        _kill(proc)
        kills["random"] += 1
    else:
        proc.stdout.close(), proc.stderr.close()

    # Resume to the end. A finished run refuses to resume (exit 2), and still clears what a writer
    # killed in the run's last write (the model) left behind.
    finished = _epochs(ck) >= 4
    proc = start_or_resume()
    code, err = proc.wait(timeout=300), proc.stderr.read()
    proc.stdout.close(), proc.stderr.close()
    if finished:
        assert code == 2 and "already done" in err, f"{err} {note}"
    else:
        assert code == 0, f"{err} {note}"
    assert kills["first epoch"] + kills["checkpoint write"] + kills["random"] >= 2, (kills, note)
    assert _temps(run) == [], f"stale temporary files were not cleaned {note}"

    arrays, optimizer, history = _state(ck)
    ref_arrays, ref_optimizer, ref_history = _state(full)
    assert sorted(arrays) == sorted(ref_arrays)
    for name in arrays:
        np.testing.assert_array_equal(arrays[name], ref_arrays[name], err_msg=f"{name} {kills} {note}")
    assert optimizer == ref_optimizer and history == ref_history, note
