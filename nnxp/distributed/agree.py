"""Ranks that must agree, agree: one check before any array is broadcast.

Data-parallel training is only right when every rank runs the same
computation: the same network (sizes, activations, dropout, dtype), optimizer
and hyperparameters, seed, schedule, batch size, epochs, validation split and
data.  Ranks started with different settings would otherwise train silently
to wrong numbers, or, when the arrays they broadcast differ in size, corrupt
memory in the broadcast itself.

:func:`check_agreement` compares a canonical JSON text of the settings that
must match: every rank sends its text to every other (an all-gather of the
lengths, then of the bytes, into a buffer sized from those lengths, so no
difference can overrun it).  Every rank then sees the same texts and raises
the same :class:`~nnxp.errors.ConfigError`, naming the first differing
setting and its values on rank 0 and on the first rank that differs::

    the ranks disagree on --seed: 0 on rank 0, 1 on rank 1; start every rank with the same command

Under ``nnxp train --distributed`` that error stops every rank with one line
and exit status 2 (:mod:`nnxp.distributed.faults`).  The command checks its
flags (and a digest of the training data);
:meth:`~nnxp.distributed.DataParallel.prepare` checks, for library use,
the network's description, the optimizer's settings, the shapes and dtypes
of every array it broadcasts, and ``fit``'s own settings.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import ConfigError

__all__ = ["canonical", "check_agreement", "first_difference"]


def canonical(value: Any) -> str:
    """The canonical JSON text of a setting (sorted keys, no spaces; other objects as ``str``)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def first_difference(texts: list[str], order: list[str]) -> tuple[str, int, Any, Any] | None:
    """(key, rank, rank 0's value, that rank's value) of the first key in ``order`` whose value
    differs from rank 0's on some rank; None when all agree.  ``texts``: each rank's settings."""
    if all(t == texts[0] for t in texts):
        return None
    settings = [json.loads(t) for t in texts]
    keys = order + sorted({k for s in settings for k in s} - set(order))
    missing = object()
    for key in keys:
        ours = settings[0].get(key, missing)
        for rank, other in enumerate(settings[1:], start=1):
            theirs = other.get(key, missing)
            if (ours is missing) != (theirs is missing) or canonical(ours) != canonical(theirs):
                show = (lambda v: "(not set)" if v is missing else _short(v if isinstance(v, str) else canonical(v)))
                return key, rank, show(ours), show(theirs)
    return None  # pragma: no cover - the texts differ, so some key does


def check_agreement(comm: Any, settings: dict[str, Any], fix: str) -> None:
    """Raise ConfigError (on every rank alike) unless every rank has the same ``settings``.

    ``settings`` maps a name the user knows (a flag, ``the network``) to a
    JSON-able value; the first differing name, in this order, is reported.
    ``fix`` ends the message (what to do).
    """
    if comm.size == 1:
        return
    texts = [b.decode("utf-8") for b in comm.allgather_bytes(canonical(settings).encode("utf-8"))]
    found = first_difference(texts, list(settings))
    if found is not None:
        key, rank, ours, theirs = found
        raise ConfigError(f"the ranks disagree on {key}: {ours} on rank 0, {theirs} on rank {rank}; {fix}")


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."
