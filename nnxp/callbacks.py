"""Callbacks for :func:`nnxp.train.fit`: early stopping and keeping the best model.

A callback's ``on_epoch_end(net, optimizer, record, history)`` runs after
each epoch with that epoch's record (``loss``, ``accuracy``, ``val_loss``,
``val_accuracy``, ...).  Setting ``net.stop_training = True`` (as in Keras)
ends training after the current epoch.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .train import Callback, History

__all__ = ["EarlyStopping", "SaveBest", "Monitor"]


class Monitor:
    """Which record value is watched and whether lower or higher is better.

    ``mode="auto"``: higher is better for names containing ``acc``, lower otherwise.
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", min_delta: float = 0.0):
        if mode not in ("auto", "min", "max"):
            raise ConfigError(f"mode must be auto, min or max, got {mode!r}")
        self.monitor = monitor
        self.higher = mode == "max" or (mode == "auto" and "acc" in monitor)
        self.min_delta = abs(float(min_delta))
        self.best = -math.inf if self.higher else math.inf
        self.best_epoch = 0

    def value(self, record: dict[str, float]) -> float:
        if self.monitor not in record:
            have = ", ".join(k for k in record if k not in ("epoch", "seconds", "samples_per_second"))
            raise ConfigError(f"cannot monitor {self.monitor!r}: the epoch records have {have}; "
                              "give validation data (validation_split= or validation_data=) "
                              "to monitor val_loss or val_accuracy")
        return float(record[self.monitor])

    def improved(self, record: dict[str, float]) -> bool:
        """Whether ``record`` beats the best so far by more than ``min_delta`` (then it is the best)."""
        value = self.value(record)
        better = (value > self.best + self.min_delta) if self.higher else (value < self.best - self.min_delta)
        if better:
            self.best, self.best_epoch = value, int(record["epoch"])
        return better


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs (Keras's callback).

    With ``restore_best_weights`` (default True) the network gets back the
    weights of its best epoch when training stops early.  The weights are
    copied on the network's device, only when they improve.  After fit,
    ``stopped_epoch`` is the epoch training stopped after (0 if it ran to
    the end) and ``best_epoch`` the best one.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, *, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = True):
        if int(patience) != patience or patience < 1:
            raise ConfigError(f"patience must be a positive integer, got {patience!r}")
        self._monitor = Monitor(monitor, mode, min_delta)
        self.patience = int(patience)
        self.restore_best_weights = restore_best_weights
        self.wait = 0
        self.stopped_epoch = 0
        self.restored = False  # whether the best epoch's weights were put back
        self._best_weights: list[Any] | None = None

    def prime(self, history: History | None) -> None:
        """Take up the count from the records of epochs already done (a resumed run).

        The best epoch's weights are not in them: if that epoch came before the
        resume and training stops, the network keeps its last weights
        (``restored`` stays False); keep a copy with :class:`SaveBest`.
        """
        for record in (history.records if history is not None else []):
            if self._monitor.monitor in record:
                self.wait = 0 if self._monitor.improved(record) else self.wait + 1

    @property
    def best_epoch(self) -> int:
        return self._monitor.best_epoch

    @property
    def best(self) -> float:
        return self._monitor.best

    def summary(self) -> str | None:
        """After an early stop, one line: the epoch it stopped after and the weights kept
        (``fit`` prints it when verbose); None when training ran to the end."""
        if not self.stopped_epoch:
            return None
        monitor = self._monitor.monitor
        what = {"val_loss": "validation loss", "val_accuracy": "validation accuracy"}.get(monitor, monitor)
        if self.restored:
            kept = (f"the weights of epoch {self.best_epoch} "
                    f"({'highest' if self._monitor.higher else 'lowest'} {what}) are kept")
        elif self.restore_best_weights and self.best_epoch:
            kept = (f"the best epoch, {self.best_epoch}, came before this run resumed: the last weights are "
                    "kept (SaveBest, nnxp train --save-best, keeps the best)")
        else:
            kept = "the last weights are kept (restore_best_weights=False)"
        return f"stopped early after epoch {self.stopped_epoch}: no better {what} for {self.patience} epochs; {kept}"

    def on_epoch_end(self, net: Any, optimizer: Any, record: dict[str, float], history: History) -> None:
        if self._monitor.improved(record):
            self.wait = 0
            if self.restore_best_weights:
                self._best_weights = _device_copy(net, net.parameters())
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = int(record["epoch"])
            net.stop_training = True
            if self.restore_best_weights and self._best_weights is not None:
                net.set_parameters(_device_copy(net, self._best_weights))
                self.restored = True


class SaveBest(Callback):
    """Write the model (weights and config, no optimizer state) to ``path`` whenever
    ``monitor`` improves; the file always holds the best epoch so far."""

    def __init__(self, path: str | os.PathLike, monitor: str = "val_loss", *, mode: str = "auto",
                 min_delta: float = 0.0, metadata: dict[str, Any] | None = None):
        self.path = Path(path)
        self._monitor = Monitor(monitor, mode, min_delta)
        self.metadata = metadata or {}

    @property
    def best_epoch(self) -> int:
        return self._monitor.best_epoch

    def on_epoch_end(self, net: Any, optimizer: Any, record: dict[str, float], history: History) -> None:
        if self._monitor.improved(record):
            from .serialization import save

            save(net, self.path, extra_metadata={**self.metadata, "best": {
                "epoch": int(record["epoch"]), self._monitor.monitor: self._monitor.best}})


def _device_copy(net: Any, arrays: list[Any]) -> list[Any]:
    """Copies of ``arrays`` on the network's device (no host transfer)."""
    return [net.xp.asarray(a, copy=True) for a in arrays]
