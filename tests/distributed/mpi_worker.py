"""Run under ``mpiexec -n N``: data-parallel training scenarios for the tests.

``python mpi_worker.py equality OUT``: every scenario of ``SCENARIOS`` trained
with ``fit(..., distributed=...)``; each rank writes its final weights to
``OUT/<scenario>.rank<r>.npz`` (the test compares them with one process).

``python mpi_worker.py agree OUT``: ``nnxp train --distributed`` with one
setting different on each rank, case after case (``AGREEMENT_CASES``), and the
library's ``fit``/``prepare`` with different networks or seeds; each rank
writes ``OUT/agree.rank<r>.json``: {case: [exit status, stderr]}.

``python mpi_worker.py fault OUT MODE``: two epochs with a checkpoint after
each (rank 0), then in epoch 2 rank 1 raises (``raise``), kills itself
(``die``) or hangs (``hang``, with a 3 s collective timeout).  ``idle``:
two fits (with and without validation), then 5 s idle with a 3 s timeout:
the watchdog must stay quiet.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

_TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_TESTS.parent))  # this checkout's nnxp

import nnxp  # noqa: E402
from nnxp.distributed import init  # noqa: E402

# (name, optimizer, dtype, backend): n=61 rows in global batches of 15 give
# uneven shards (8 + 7) and a last batch of one row (one rank gets none).
SCENARIOS = [
    ("sgd-float64-numpy", "sgd", "float64", "numpy"),
    ("momentum-float64-numpy", "momentum", "float64", "numpy"),
    ("adam-float64-numpy", "adam", "float64", "numpy"),
    ("sgd-float32-numpy", "sgd", "float32", "numpy"),
    ("momentum-float32-numpy", "momentum", "float32", "numpy"),
    ("adam-float32-numpy", "adam", "float32", "numpy"),
    ("adam-float64-strict", "adam", "float64", "strict"),
    ("momentum-float32-strict", "momentum", "float32", "strict"),
    # Libraries without in-place writes: the flat buffer is rebuilt each step, the reduced one rebound.
    ("adam-float32-jax", "adam", "float32", "jax"),
    ("sgd-float64-dask", "sgd", "float64", "dask"),
]
# With dropout each rank draws its own masks, so only the ranks' agreement is checked.
DROPOUT_SCENARIO = ("dropout-adam-float64-numpy", "adam", "float64", "numpy")
N_ROWS, BATCH, EPOCHS, SIZES = 61, 15, 2, [6, 5, 3]
LR = {"sgd": 0.3, "momentum": 0.1, "adam": 0.01}


def problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, labels, x_val, labels_val): a small 3-class problem, the same on every rank."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_ROWS + 23, SIZES[0]))
    labels = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    return x[:N_ROWS], labels[:N_ROWS], x[N_ROWS:], labels[N_ROWS:]


def _test_backends():
    """tests/conftest.py (the backend fixture's ``make_backend``), loaded under its own name."""
    import importlib.util

    name = "nnxp_tests_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _TESTS / "conftest.py")
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


def train(optimizer: str, dtype: str, backend_name: str, distributed=None, dropout: float = 0.0):
    """The scenario's network after ``EPOCHS`` epochs, and its history."""
    make_backend = _test_backends().make_backend
    x, y, xv, yv = problem()
    net = nnxp.Network(SIZES, hidden="tanh", seed=3, dtype=dtype, device=make_backend(backend_name),
                       dropout=dropout)
    history = nnxp.fit(net, x, y, epochs=EPOCHS, batch_size=BATCH, optimizer=optimizer, lr=LR[optimizer],
                       validation_data=(xv, yv), seed=5, verbose=0, distributed=distributed)
    return net, history


def equality(out: Path) -> None:
    dp = init()
    import pytest

    for name, optimizer, dtype, backend_name in [*SCENARIOS, DROPOUT_SCENARIO]:
        try:
            net, history = train(optimizer, dtype, backend_name, dp, dropout=0.3 if "dropout" in name else 0.0)
        except pytest.skip.Exception as skipped:  # a library this machine lacks (JAX): say why, go on
            (out / f"{name}.skipped").write_text(str(skipped.msg))
            continue
        arrays = {f"p{i}": nnxp.to_numpy(p) for i, p in enumerate(net.parameters())}
        last = history.last
        np.savez(out / f"{name}.rank{dp.rank}.npz", size=dp.size, loss=last["loss"], accuracy=last["accuracy"],
                 val_loss=last["val_loss"], val_accuracy=last["val_accuracy"], **arrays)


# (flag, value on rank 0, value on rank 1)
AGREEMENT_CASES = [("--seed", "0", "1"), ("--lr", "0.1", "0.2"), ("--optimizer", "sgd", "adam"),
                   ("--dropout", "0", "0.2"), ("--schedule", "constant", "cosine"), ("--hidden", "8", "16"),
                   ("--dtype", "float32", "float64"), ("--batch-size", "50", "60")]


def agree(out: Path) -> None:
    """Every case in one job: the error that would stop the job is raised instead (and reported)."""
    import contextlib
    import io
    import json

    import nnxp.distributed.faults as faults
    from nnxp.cli import main

    def stop_job(comm, exc):  # the CLI reports it (one line, exit 2); the job goes on to the next case
        raise exc

    faults.stop_job = stop_job
    rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
    results = {}
    for flag, *values in AGREEMENT_CASES:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["train", "--distributed", "--device", "cpu", "--epochs", "1", "--hidden", "8",
                         "--no-save", "-q", flag, values[rank]])
        results[flag] = [code, err.getvalue()]
    dp = init()
    x, y, _, _ = problem()
    for case, make in [("sizes", lambda: nnxp.Network([6, 5 + rank, 3], seed=3)),
                       ("dtype", lambda: nnxp.Network(SIZES, seed=3, dtype=["float32", "float64"][rank]))]:
        try:
            dp.prepare(make(), nnxp.optim.get_optimizer("adam"))
            results[case] = [0, ""]
        except nnxp.ConfigError as exc:
            results[case] = [2, str(exc)]
    try:
        nnxp.fit(nnxp.Network(SIZES, seed=3), x, y, epochs=1, batch_size=BATCH, verbose=0, distributed=dp,
                 seed=rank)
        results["fit seed"] = [0, ""]
    except nnxp.ConfigError as exc:
        results["fit seed"] = [2, str(exc)]
    (out / f"agree.rank{rank}.json").write_text(json.dumps(results))


class Fault(nnxp.Callback):
    def __init__(self, dp, mode: str, path: Path):
        self.dp, self.mode, self.path = dp, mode, path

    def on_epoch_end(self, net, optimizer, record, history):
        if self.dp.is_root:
            from nnxp.checkpoint import save_checkpoint

            save_checkpoint(self.path, net, optimizer, history, {"note": "fault test"})
        if record["epoch"] == 1 and self.dp.rank == 1:
            if self.mode == "raise":
                raise nnxp.DataError("simulated failure on one rank")
            if self.mode == "die":
                os.kill(os.getpid(), 9)
            if self.mode == "hang":
                time.sleep(3600)


def fault(out: Path, mode: str) -> None:
    from nnxp.distributed.faults import fail_fast

    dp = init(timeout=3.0 if mode in ("hang", "idle") else None)
    if mode == "idle":  # training done, then idle longer than the timeout: no alarm
        x, y, xv, yv = problem()
        nnxp.fit(nnxp.Network(SIZES, seed=3), x, y, epochs=2, batch_size=BATCH, verbose=0, distributed=dp,
                 validation_data=(xv, yv))
        nnxp.fit(nnxp.Network(SIZES, seed=3), x, y, epochs=1, batch_size=BATCH, verbose=0, distributed=dp)
        time.sleep(5)
        print("finished all epochs", file=sys.stderr)
        return
    x, y, _, _ = problem()
    net = nnxp.Network(SIZES, hidden="tanh", seed=3)
    with fail_fast(dp.comm):
        nnxp.fit(net, x, y, epochs=5, batch_size=BATCH, verbose=0, distributed=dp,
                 callbacks=[Fault(dp, mode, out / "checkpoint.safetensors")])
    print("finished all epochs", file=sys.stderr)


if __name__ == "__main__":
    command, out = sys.argv[1], Path(sys.argv[2])
    if command == "equality":
        equality(out)
    elif command == "agree":
        agree(out)
    else:
        fault(out, sys.argv[3])
