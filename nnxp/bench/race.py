"""The race (``nnxp bench --race``): nnxp and the same loop in PyTorch, trained to a test accuracy."""

from __future__ import annotations

import gc
import math
import time
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import numpy as np

from ..errors import DataError
from .contenders import initial_weights, torch_usable
from .machine import Threads, machine_info
from .report import SCHEMA, log
from .timing import Budget, CpuMonitor

__all__ = ["RACE_TARGETS", "run_race"]


RACE_SIZES = (784, 256, 10)
RACE_LR = 0.1
RACE_BATCH = 512
RACE_TARGETS = {"mnist": 0.96, "fashion-mnist": 0.85}


class _Reached(Exception):
    """Raised by the stopping callback to end ``fit`` at the target."""


class _StopAtTarget:
    """Records when each epoch ended (from the first epoch's start) and stops ``fit`` at the target."""

    def __init__(self, target: float):
        self.target = target
        self.start: float | None = None
        self.epochs: list[dict[str, float]] = []

    def on_epoch_end(self, net, optimizer, record, history) -> None:
        now = time.perf_counter()
        if self.start is None:
            self.start = now - record["seconds"]  # fit's own clock started the epoch there
        self.epochs.append({"epoch": int(record["epoch"]), "val_accuracy": record["val_accuracy"],
                            "loss": record["loss"], "elapsed_s": now - self.start})
        if record["val_accuracy"] >= self.target:
            raise _Reached()


def _race_nnxp(data, target: float, max_epochs: int, device: str, seed: int,
               blas: str | None = None) -> dict[str, Any]:
    from ..network import Network
    from ..optim import SGD

    net = Network(list(RACE_SIZES), hidden="relu", output="softmax", seed=seed, device=device)
    # The data goes to the device before the clock starts (data loading is not raced).
    x, y = net.backend.asarray(data["x_train"], net.dtype), net.backend.asarray(data["y_train"], net.xp.int64)
    xv, yv = net.backend.asarray(data["x_test"], net.dtype), net.backend.asarray(data["y_test"], net.xp.int64)
    net.backend.synchronize()
    stop = _StopAtTarget(target)
    t0 = time.perf_counter()
    try:
        net.fit(x, y, epochs=max_epochs, batch_size=RACE_BATCH, optimizer=SGD(lr=RACE_LR),
                validation_data=(xv, yv), seed=seed, verbose=0, progress=False, callbacks=[stop], blas=blas)
    except _Reached:
        pass
    t_end = time.perf_counter()
    reached = bool(stop.epochs) and stop.epochs[-1]["val_accuracy"] >= target
    return {"contender": "nnxp", "reached": reached, "epochs": len(stop.epochs),
            "seconds": stop.epochs[-1]["elapsed_s"] if stop.epochs else None,
            "seconds_incl_fit_setup": t_end - t0, "final_val_accuracy": stop.epochs[-1]["val_accuracy"],
            "per_epoch": stop.epochs, "how": "Network.fit(validation_data=..., callbacks=[stop at target])"}


def _race_torch(data, target: float, max_epochs: int, device: str, seed: int, weights) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from torch import nn

    dev = torch.device("cuda" if device == "cuda" else device)
    model = nn.Sequential(nn.Linear(RACE_SIZES[0], RACE_SIZES[1]), nn.ReLU(),
                          nn.Linear(RACE_SIZES[1], RACE_SIZES[2])).to(dev)
    if weights is not None:
        with torch.no_grad():
            for lin, (w, b) in zip([model[0], model[2]], weights):
                lin.weight.copy_(torch.as_tensor(w))
                lin.bias.copy_(torch.as_tensor(b))
    x = torch.as_tensor(data["x_train"], device=dev)
    y = torch.as_tensor(data["y_train"].astype(np.int64), device=dev)
    xv = torch.as_tensor(data["x_test"], device=dev)
    yv = torch.as_tensor(data["y_test"].astype(np.int64), device=dev)
    opt = torch.optim.SGD(model.parameters(), lr=RACE_LR)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    n, nv = x.shape[0], xv.shape[0]
    steps = math.ceil(n / RACE_BATCH)
    epochs: list[dict[str, float]] = []
    sync()
    start = time.perf_counter()
    for epoch in range(max_epochs):
        # The same shuffles as nnxp.fit: default_rng([seed, epoch]), moved over once per epoch.
        order = torch.as_tensor(np.random.default_rng([seed, epoch]).permutation(n), device=dev)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        model.train()
        for step in range(steps):
            lo, hi = step * RACE_BATCH, min(n, (step + 1) * RACE_BATCH)
            index = order[lo:hi]
            xb, yb = x.index_select(0, index), y.index_select(0, index)
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * float(hi - lo)  # like fit: running sums stay on the device
            correct += (out.detach().argmax(1) == yb).sum()
        train_loss = loss_sum.item() / n
        model.eval()
        with torch.no_grad():
            vcorrect = torch.zeros((), dtype=torch.int64, device=dev)
            vloss = torch.zeros((), device=dev)
            for lo in range(0, nv, 4096):
                out = model(xv[lo:lo + 4096])
                vloss += F.cross_entropy(out, yv[lo:lo + 4096], reduction="sum")
                vcorrect += (out.argmax(1) == yv[lo:lo + 4096]).sum()
            acc = vcorrect.item() / nv
            _ = vloss.item() / nv
        epochs.append({"epoch": epoch + 1, "val_accuracy": acc, "loss": train_loss,
                       "train_accuracy": correct.item() / n, "elapsed_s": time.perf_counter() - start})
        if acc >= target:
            break
    reached = epochs[-1]["val_accuracy"] >= target
    return {"contender": "torch", "reached": reached, "epochs": len(epochs),
            "seconds": epochs[-1]["elapsed_s"], "final_val_accuracy": epochs[-1]["val_accuracy"],
            "per_epoch": epochs,
            "how": "eager loop: index_select batches, F.cross_entropy, backward, torch.optim.SGD; "
                   "eval under no_grad in 4096-row chunks"}


def _race_data(dataset: str, data_dir: Path | None, download: bool = False) -> tuple[str, dict[str, np.ndarray]]:
    from ..data import image_inputs, load_dataset

    if dataset == "auto":
        try:
            ds = load_dataset("mnist", data_dir)
        except DataError:
            ds = load_dataset("fashion-mnist", data_dir, download=download)
    else:
        ds = load_dataset(dataset, data_dir, download=download)
    return ds.name, {"x_train": image_inputs(ds.train_images), "y_train": ds.train_labels.astype(np.int64),
                     "x_test": image_inputs(ds.test_images), "y_test": ds.test_labels.astype(np.int64)}


def run_race(*, dataset: str = "auto", data_dir: Path | None = None, download: bool = False,
             target: float | None = None,
             max_epochs: int = 50, device: str = "cpu", repeats: int = 2, seed: int = 0,
             threads: int | None = None, torch_init: str = "same", max_foreign: float = 0.25,
             max_wait_s: float = 600.0, argv: Sequence[str] | None = None,
             blas: str | None = None) -> dict[str, Any]:
    """The end-to-end race; runs alternate nnxp, torch, torch, nnxp, ... (ABBA) ``repeats`` times each.

    A run during which other processes used more than ``max_foreign`` cores is
    run again once the machine is quiet (while the ``max_wait_s`` budget lasts).
    """
    monitor, budget = CpuMonitor(), Budget(max_wait_s)
    name, data = _race_data(dataset, data_dir, download)
    if target is None:
        target = RACE_TARGETS.get(name, RACE_TARGETS["mnist"])
    why_no_torch = torch_usable(device)
    weights = None
    if torch_init == "same":
        weights = initial_weights(RACE_SIZES) if seed == 0 else None
        if seed != 0:
            from ..network import Network

            weights = Network(list(RACE_SIZES), seed=seed, device="cpu").get_weights()
    runs: list[dict[str, Any]] = []
    with Threads(threads) as th:
        machine = machine_info(device)
        for r in range(repeats):
            order = ["nnxp", "torch"] if r % 2 == 0 else ["torch", "nnxp"]
            for who in order:
                if who == "torch" and why_no_torch:
                    continue
                log(f"race run {r + 1}/{repeats}: {who} ...")
                retaken = 0
                while True:
                    gc.collect()
                    waited, _ = monitor.wait_idle(max_foreign, budget.left)
                    budget.spend(waited)
                    a = monitor.snapshot()
                    if who == "nnxp":
                        res = _race_nnxp(data, target, max_epochs, device, seed, blas)
                    else:
                        res = _race_torch(data, target, max_epochs, device, seed, weights)
                    load = monitor.foreign_cores(a, monitor.snapshot())
                    if load is not None and load > max_foreign and budget.left > 0:
                        retaken += 1
                        log(f"  other processes used {load:.2f} cores: running it again when quiet")
                        continue
                    break
                res.update(run=r + 1, foreign_cores=load, retaken=retaken,
                           contaminated=load is not None and load > max_foreign)
                log(f"  {who}: {res['epochs']} epochs, {res['seconds']:.2f} s, "
                     f"test accuracy {100 * res['final_val_accuracy']:.2f}%"
                     + ("" if res["reached"] else " (target not reached)"))
                runs.append(res)
    summary: dict[str, Any] = {}
    for who in ("nnxp", "torch"):
        mine = [x for x in runs if x["contender"] == who]
        if mine:
            summary[who] = {"median_seconds": float(np.median([x["seconds"] for x in mine])),
                            "epochs": [x["epochs"] for x in mine],
                            "reached": all(x["reached"] for x in mine)}
    if "nnxp" in summary and "torch" in summary:
        summary["torch_over_nnxp"] = summary["torch"]["median_seconds"] / summary["nnxp"]["median_seconds"]
    notes = [f"torch skipped: {why_no_torch}"] if why_no_torch else []
    return {"schema": SCHEMA, "kind": "race", "command": list(argv) if argv is not None else None,
            "machine": machine,
            "settings": {"dataset": name, "target": target, "max_epochs": max_epochs, "device": device,
                         "sizes": list(RACE_SIZES), "lr": RACE_LR, "batch": RACE_BATCH, "seed": seed,
                         "threads": th.count, "repeats": repeats, "blas": blas or "auto",
                         "torch_init": f"nnxp's initial weights (He, seed {seed})" if weights is not None
                         else "PyTorch's default init"},
            "runs": runs, "summary": summary, "notes": notes}
