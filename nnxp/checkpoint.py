"""Training checkpoints: network, optimizer state and progress in one file.

A checkpoint is a model file (:mod:`nnxp.serialization`) with two additions:
the optimizer's state arrays (``optimizer.<buffer>.<i>``, e.g. Adam's moments)
and, in the metadata, the optimizer's settings and step count plus the
training progress (epochs done, history, run settings).  Written atomically
after every epoch, it lets an interrupted run resume and end with exactly the
weights an uninterrupted run would have (shuffles depend only on seed and
epoch).  ``nnxp.load`` reads a checkpoint as a plain model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .errors import DataError, NnxpError
from .network import Network
from .optim import Optimizer, get_optimizer
from .serialization import network_from, read_arrays, save
from .train import History

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint"]

_PREFIX = "optimizer."


@dataclass
class Checkpoint:
    net: Network
    optimizer: Optimizer
    epoch: int  # epochs completed
    history: History
    settings: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: str | os.PathLike, net: Network, optimizer: Optimizer, history: History,
                    settings: dict[str, Any] | None = None,
                    extra_metadata: dict[str, Any] | None = None) -> None:
    """Write the checkpoint atomically; ``extra_metadata`` (JSON-able) is stored beside it
    (the text model's tokenizer, for example)."""
    info, arrays = optimizer.state_dict()
    save(net, path,
         extra_arrays={_PREFIX + name: a for name, a in arrays.items()},
         extra_metadata={**(extra_metadata or {}), "optimizer": info,
                         "training": {"epoch": len(history), "history": history.records,
                                      "settings": settings or {}}})


def load_checkpoint(path: str | os.PathLike, device: Any = "auto") -> Checkpoint:
    arrays, metadata = read_arrays(path)
    if "optimizer" not in metadata or "training" not in metadata:
        raise DataError(f"{path} is a model file, not a training checkpoint: "
                        "resume from the file --save wrote during training")
    net = network_from(arrays, metadata, path, device)
    try:
        optimizer = get_optimizer(metadata["optimizer"]["config"])
        optimizer.load_state_dict(
            metadata["optimizer"],
            {k[len(_PREFIX):]: a for k, a in arrays.items() if k.startswith(_PREFIX)},
            net.parameters())
        training = metadata["training"]
        history = History([dict(r) for r in training["history"]])
        return Checkpoint(net, optimizer, int(training["epoch"]), history, dict(training["settings"]))
    except (KeyError, TypeError, ValueError, NnxpError) as exc:
        raise DataError(f"{path}: damaged checkpoint ({exc}); start a new run without --resume") from None
