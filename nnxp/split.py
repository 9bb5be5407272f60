"""Holding out a validation set: a stratified, seeded split of the training data.

Model selection (the epoch to stop at, the learning rate, the size) must not
look at the test set; ``fit(validation_split=0.1)`` and ``nnxp train
--val-split 0.1`` hold out a part of the *training* data instead.  The split
is stratified (each class keeps its share, as scikit-learn's
``train_test_split(stratify=y)``) and depends only on the labels and the seed.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError

__all__ = ["stratified_split", "check_fraction"]


def check_fraction(fraction: float) -> float:
    """``fraction`` as a float in (0, 1), or a clear error."""
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise ConfigError(f"validation split must be a fraction between 0 and 1, got {fraction!r}") from None
    if not 0.0 < value < 1.0:
        raise ConfigError(f"validation split must be a fraction between 0 and 1 (e.g. 0.1), got {fraction!r}")
    return value


def stratified_split(labels: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) of ``labels`` (N,) with ``fraction`` held out per class.

    Each class c with n_c samples gives round(fraction * n_c) of them to the
    validation set (at least one when n_c >= 2, never all of them), chosen by
    ``numpy.random.default_rng(seed)``; both index arrays are sorted.
    """
    fraction = check_fraction(fraction)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = int(round(fraction * len(members)))
        k = min(max(k, 1 if len(members) >= 2 else 0), len(members) - 1)
        held.append(rng.permutation(members)[:k])
    val = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    if len(val) == 0:
        raise ConfigError(f"validation split {fraction} of {len(labels)} samples holds out none: "
                          "use a larger fraction or more data")
    keep = np.ones(len(labels), dtype=bool)
    keep[val] = False
    return np.flatnonzero(keep), val
