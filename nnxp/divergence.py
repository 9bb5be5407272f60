"""When training has diverged: the one rule :func:`nnxp.train.fit` applies after every epoch.

An epoch has diverged when any of these holds (checked in this order):

1. its training loss (or validation loss) is NaN or infinite;
2. a parameter or an optimizer state value (momentum, Adam's moments) is NaN
   or infinite -- a loss computed before the last update can still look fine;
3. its training loss is finite but more than :data:`EXPLOSION_FACTOR` times
   the reference loss: the first epoch's loss for later epochs, and the loss
   of the very first batch (measured before the first update) for the first
   epoch.  A reference below :data:`MIN_REFERENCE` counts as that much, so a
   run whose loss starts near zero is not stopped by ordinary noise.  The
   reference comes from the run's history, so a resumed run decides exactly
   as an uninterrupted one would.

A diverged epoch raises :class:`~nnxp.errors.DivergenceError` *before* the
epoch's callbacks run, so no checkpoint of a diverged network is ever
written: the last checkpoint on disk is the last good one.  The message names
the epoch, what went wrong and the learning rate in use.

The checks read one boolean per epoch from the device (and nothing inside a
training step).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from array_api_compat import array_namespace

from .errors import DivergenceError

__all__ = ["EXPLOSION_FACTOR", "MIN_REFERENCE", "all_finite", "check_epoch", "nonfinite_names"]

#: A finite loss this many times its reference counts as diverged (Lightning's
#: EarlyStopping calls this a divergence threshold; nnxp makes it relative).
EXPLOSION_FACTOR = 1e3
#: The smallest reference loss the explosion rule uses.
MIN_REFERENCE = 1e-3


def all_finite(arrays: Sequence[Any]) -> bool:
    """True when every value of every array is finite (one device read in all)."""
    ok = None
    for a in arrays:
        xp = array_namespace(a)
        here = xp.all(xp.isfinite(a))
        ok = here if ok is None else xp.logical_and(ok, here)
    return True if ok is None else bool(ok)


def nonfinite_names(named: dict[str, Any]) -> list[str]:
    """The names of the arrays holding NaN or infinity (one read per array; for error messages)."""
    return [name for name, a in named.items() if not all_finite([a])]


def _state_arrays(optimizer: Any) -> list[Any]:
    state = getattr(optimizer, "state", None) or {}
    return [a for bufs in state.values() for a in bufs]


def check_epoch(net: Any, optimizer: Any, record: dict[str, float], history: Sequence[dict[str, float]],
                first_batch_loss: float | None = None) -> None:
    """Raise :class:`DivergenceError` if the epoch in ``record`` diverged (see the module rule).

    ``history`` holds the records of the epochs before this one;
    ``first_batch_loss`` is the loss of the run's first batch, used as the
    reference when ``history`` is empty.
    """
    epoch = int(record["epoch"])
    lr = getattr(optimizer, "lr", float("nan"))
    advice = f"the learning rate ({lr:g}) is probably too high, try a lower one"
    for key in ("loss", "val_loss"):
        value = record.get(key)
        if value is not None and not math.isfinite(value):
            what = "the loss" if key == "loss" else "the validation loss"
            raise DivergenceError(f"training diverged in epoch {epoch}: {what} is {value}; {advice}")
    if not all_finite(list(net.parameters()) + _state_arrays(optimizer)):
        where = "parameters hold" if not all_finite(list(net.parameters())) else "optimizer state holds"
        raise DivergenceError(f"training diverged in epoch {epoch}: the {where} NaN or infinite "
                              f"values; {advice}")
    if history:
        reference, against = float(history[0]["loss"]), "the first epoch's"
    else:
        reference, against = first_batch_loss, "the first batch's"
    loss = record["loss"]
    if reference is not None and math.isfinite(reference) \
            and loss > EXPLOSION_FACTOR * max(reference, MIN_REFERENCE):
        raise DivergenceError(f"training diverged in epoch {epoch}: the loss {loss:.4g} is more than "
                              f"{EXPLOSION_FACTOR:g} times {against} ({reference:.4g}); {advice}")
