"""Training checkpoints: network, optimizer state and progress in one file.

A checkpoint is a model file (:mod:`nnxp.serialization`) with two additions:
the optimizer's state arrays (``optimizer.<buffer>.<i>``, e.g. Adam's moments)
and, in the metadata, the optimizer's settings and step count plus the
training progress (epochs done, history, run settings).  Written atomically
after every epoch, it lets an interrupted run resume and end with exactly the
weights an uninterrupted run would have (shuffles depend only on seed and
epoch).  ``nnxp.load`` reads a checkpoint as a plain model.

As PyTorch's and Keras's checkpoints are, it is trusted only after checking:
a checkpoint is written only when every parameter and optimizer state value
is finite, and a loaded one is refused (one line) when its description,
progress, optimizer settings, step count or state are of the wrong type,
out of range or not finite.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable


from .divergence import all_finite
from .errors import DataError, DivergenceError, NnxpError
from .io.schema import Schema
from .network import Network
from .optim import Optimizer, get_optimizer
from .network import network_from
from .serialization import check_finite_arrays, read_arrays, save
from .train import History

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "check_settings", "save_trained_model",
           "read_training"]

_PREFIX = "optimizer."


@dataclass
class Checkpoint:
    net: Network
    optimizer: Optimizer
    epoch: int  # epochs completed
    history: History
    settings: dict[str, Any] = field(default_factory=dict)


def _training(history: History, settings: dict[str, Any] | None) -> dict[str, Any]:
    return {"epoch": len(history), "history": history.records, "settings": settings or {}}


def save_checkpoint(path: str | os.PathLike, net: Network, optimizer: Optimizer, history: History,
                    settings: dict[str, Any] | None = None,
                    extra_metadata: dict[str, Any] | None = None) -> None:
    """Write a checkpoint atomically; refuses (DivergenceError) a network or state holding NaN/inf.
    ``extra_metadata`` (JSON-able) is stored beside it (the text model's tokenizer, for example)."""
    info, arrays = optimizer.state_dict()
    if not all_finite(list(net.parameters()) + list(arrays.values())):
        raise DivergenceError(f"not writing checkpoint {path}: the parameters or optimizer state hold NaN "
                              "or infinite values; the learning rate is probably too high")
    save(net, path,
         extra_arrays={_PREFIX + name: a for name, a in arrays.items()},
         extra_metadata={**(extra_metadata or {}), "optimizer": info, "training": _training(history, settings)})


def save_trained_model(path: str | os.PathLike, net: Network, history: History,
                       settings: dict[str, Any] | None = None,
                       extra_metadata: dict[str, Any] | None = None) -> None:
    """A model file (weights and config, no optimizer state) that also records how it was
    trained: the history and settings (dataset, ...), for ``nnxp plot`` and dataset checks;
    ``extra_metadata`` (JSON-able) beside them (a table's scaling and classes, for example)."""
    save(net, path, extra_metadata={**(extra_metadata or {}), "training": _training(history, settings)})


def read_training(path: str | os.PathLike) -> dict[str, Any]:
    """The ``training`` record of a model or checkpoint file: ``epoch``, ``history``
    (per-epoch records) and ``settings``; ``{}`` for a file that has none."""
    _, metadata = read_arrays(path)
    training = metadata.get("training")
    return training if isinstance(training, dict) else {}


def load_checkpoint(path: str | os.PathLike, device: Any = "auto") -> Checkpoint:
    """The checkpoint in ``path``, everything checked; one-line DataError otherwise."""
    arrays, metadata = read_arrays(path)
    if "optimizer" not in metadata or "training" not in metadata:
        raise DataError(f"{path} is a model file, not a training checkpoint: "
                        "resume from the --checkpoint file nnxp train rewrites after every epoch")

    def damaged(why: str) -> DataError:
        return DataError(f"{path}: damaged checkpoint ({why}); start a new run without --resume")

    info, training = metadata["optimizer"], metadata["training"]
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise damaged("the optimizer settings are not an object")
    t = info.get("t")
    if type(t) is not int or t < 0:
        raise damaged(f"the optimizer step count is {t!r}, not a whole number >= 0")
    if not isinstance(training, dict):
        raise damaged("the training progress is not an object")
    records, epoch, settings = training.get("history"), training.get("epoch"), training.get("settings")
    if not isinstance(records, list) or not all(
            isinstance(r, dict) and all(isinstance(k, str) and type(v) in (int, float) for k, v in r.items())
            for r in records):
        raise damaged("the history is not a list of records of numbers")
    _check_history(records, path)
    if type(epoch) is not int or epoch != len(records):
        raise damaged(f"epoch {epoch!r} does not match the {len(records)} recorded epochs")
    if not isinstance(settings, dict):
        raise damaged("the run settings are not an object")
    state = {k[len(_PREFIX):]: a for k, a in arrays.items() if k.startswith(_PREFIX)}
    check_finite_arrays({_PREFIX + k: a for k, a in state.items()}, path)
    if any(name.startswith("v.") and bool((a < 0).any()) for name, a in state.items()):
        raise damaged("Adam's second moments hold negative values")
    net = network_from(arrays, metadata, path, device)
    try:
        optimizer = get_optimizer(info["config"])
        optimizer.load_state_dict(info, state, net.parameters())
    except (KeyError, TypeError, ValueError, NnxpError) as exc:
        raise damaged(str(exc)) from None
    return Checkpoint(net, optimizer, epoch, History([dict(r) for r in records]), dict(settings))


def _check_history(records: list[dict[str, Any]], path: Any) -> None:
    """Each record's ``epoch`` is its place (1, 2, ...) and every value a finite number
    (:mod:`nnxp.io.schema`): a resumed run writes this history to its --metrics file."""
    s = Schema(path, "the checkpoint is damaged: start a new run without --resume")
    for i, record in enumerate(records):
        field = f"training.history[{i}]"
        if s.whole(s.key(record, "epoch", field), s.at(field, "epoch")) != i + 1:
            raise s.error(s.at(field, "epoch"), f"is {record['epoch']}, not {i + 1} (records are epochs 1, 2, ...)")
        for key, value in record.items():
            s.number(value, s.at(field, key))


def check_settings(checkpoint: Checkpoint, path: Any,
                   checkers: dict[str, Callable[[Any], Any]]) -> dict[str, Any]:
    """The run settings of ``checkpoint`` that ``checkers`` names, each passed through its checker.

    A checker returns the value (normalised) or raises (any exception): then
    the checkpoint is refused as damaged, naming the setting.  Settings the
    file lacks are left out.
    """
    out = {}
    for key, check in checkers.items():
        if key not in checkpoint.settings:
            continue
        value = checkpoint.settings[key]
        try:
            out[key] = check(value)
        except Exception:  # noqa: BLE001 - any failure means a damaged value
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise DataError(f"{path}: damaged checkpoint (setting {key!r} is {shown}); start a new run "
                            "without --resume") from None
    return out
