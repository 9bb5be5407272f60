"""When training has diverged: the one rule :func:`nnxp.train.fit` applies after every epoch.

An epoch has diverged when any of these holds (checked in this order):

1. its training loss (or validation loss) is NaN or infinite;
2. a parameter or an optimizer state value (momentum, Adam's moments) is NaN
   or infinite -- a loss computed before the last update can still look fine;
3. the network's outputs on a probe batch (the first :data:`PROBE_ROWS`
   training rows) are NaN or infinite: finite parameters can still be so
   large that the outputs overflow (one SGD step of learning rate 1e38 gives
   weights near 5.6e36), and with one step per epoch the epoch's loss was
   computed before that step;
4. its training loss is finite but more than :data:`EXPLOSION_FACTOR` times
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

After the last epoch the same rule covers the run's result: a final
evaluation whose loss is NaN or infinite is a divergence too
(:func:`check_result`; ``nnxp train`` evaluates the test split before it
saves the model).  A model *file* whose outputs on a probe input are not
finite is refused by ``predict``, ``evaluate`` and ``export``
(:func:`check_model_outputs`, a :class:`~nnxp.errors.DataError`).

The checks read a few booleans per epoch from the device, after the epoch's
steps (nothing inside a training step).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from array_api_compat import array_namespace

from .errors import DataError, DivergenceError

__all__ = ["EXPLOSION_FACTOR", "MIN_REFERENCE", "PROBE_ROWS", "all_finite", "check_epoch", "check_model_outputs",
           "check_result", "nonfinite_names", "outputs_finite", "probe_inputs"]

#: A finite loss this many times its reference counts as diverged (Lightning's
#: EarlyStopping calls this a divergence threshold; nnxp makes it relative).
EXPLOSION_FACTOR = 1e3
#: The smallest reference loss the explosion rule uses.
MIN_REFERENCE = 1e-3
#: Rows of the probe batch whose outputs must be finite.
PROBE_ROWS = 64


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


def outputs_finite(net: Any, x: Any) -> bool:
    """Whether the network's outputs (evaluation mode) on the batch ``x``, already checked and on
    the network's device, are all finite (one read)."""
    from .kernels.reference import ArrayAPIOps

    with np.errstate(over="ignore", invalid="ignore"), net.backend.context():  # overflow is the answer
        return all_finite([net.output.forward(net.forward_pass(x, ArrayAPIOps())[0])])


def probe_inputs(net: Any, rows: int = PROBE_ROWS) -> Any:
    """A probe batch for a network without data at hand: seeded uniform inputs in [0, 1) (the
    range of pixel inputs), plus a row of zeros and a row of ones; on the network's device."""
    host = np.random.default_rng(0).uniform(0.0, 1.0, (rows, net.sizes[0]))
    host[0], host[1] = 0.0, 1.0
    return net.backend.asarray(host, net.dtype)


def check_model_outputs(net: Any, path: Any, x: Any = None) -> None:
    """Refuse (DataError) a loaded model whose outputs on ``x`` (default :func:`probe_inputs`)
    are not finite: its weights are finite but too large, saved from a diverged run."""
    if not outputs_finite(net, probe_inputs(net) if x is None else x):
        raise DataError(f"{path}: the network's outputs on a probe input are NaN or infinite (its weights "
                        "are finite but too large: it was saved from a diverged run); retrain it with a "
                        "lower learning rate")


def check_result(scores: dict[str, float], what: str, lr: float) -> None:
    """Raise :class:`DivergenceError` when the final evaluation's ``loss`` is NaN or infinite."""
    loss = scores.get("loss")
    if loss is not None and not math.isfinite(loss):
        raise DivergenceError(f"training diverged: {what} is {loss}; the learning rate ({lr:g}) is probably "
                              "too high, try a lower one")


def _state_arrays(optimizer: Any) -> list[Any]:
    state = getattr(optimizer, "state", None) or {}
    return [a for bufs in state.values() for a in bufs]


def check_epoch(net: Any, optimizer: Any, record: dict[str, float], history: Sequence[dict[str, float]],
                first_batch_loss: float | None = None, probe: Any = None) -> None:
    """Raise :class:`DivergenceError` if the epoch in ``record`` diverged (see the module rule).

    ``history`` holds the records of the epochs before this one;
    ``first_batch_loss`` is the loss of the run's first batch, used as the
    reference when ``history`` is empty; ``probe`` is the probe batch (rows
    of the training inputs, on the network's device; None: no probe).
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
    if probe is not None and not outputs_finite(net, probe):
        raise DivergenceError(f"training diverged in epoch {epoch}: the network's outputs on a probe batch "
                              f"are NaN or infinite (its parameters are finite but too large); {advice}")
    if history:
        reference, against = float(history[0]["loss"]), "the first epoch's"
    else:
        reference, against = first_batch_loss, "the first batch's"
    loss = record["loss"]
    if reference is not None and math.isfinite(reference) \
            and loss > EXPLOSION_FACTOR * max(reference, MIN_REFERENCE):
        raise DivergenceError(f"training diverged in epoch {epoch}: the loss {loss:.4g} is more than "
                              f"{EXPLOSION_FACTOR:g} times {against} ({reference:.4g}); {advice}")
