"""The train / validation / test split of a token stream, and the n-gram baselines scored on it.

The split is contiguous, in text order, and does not depend on the model's
context length: with N tokens, the targets at positions ``[0, v)`` are the
training text, ``[v, t)`` the validation text and ``[t, N)`` the test text,
``v = round((1 - val - test) N)`` and ``t = round((1 - test) N)``.  A target's
context is the tokens just before it, which may lie in the split before (as
when one reads on).  The count-based baselines are counted on the training
text alone (``stream[:v]``), their settings (add-k's k, Kneser-Ney's
discounts) are chosen on the validation targets, and the test targets are
scored once with those settings: the discipline the model is held to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, DataError
from .ngram import KneserNey, add_k_log_probs, perplexity, tune_add_k, tune_discounts

__all__ = ["Split", "split_stream", "Baseline", "baselines", "mixture", "KN_ORDERS"]

#: the Kneser-Ney orders reported beside the model
KN_ORDERS = (2, 3, 4)


@dataclass(frozen=True)
class Split:
    """Target positions of each part: train ``[context, val_start)``, validation
    ``[val_start, test_start)``, test ``[test_start, len(stream))``."""

    stream: np.ndarray
    val_start: int
    test_start: int

    def contexts(self, part: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(X (n, k) ids, y (n,) ids) of ``part`` ("train", "val" or "test"): X[i] are the k tokens before y[i]."""
        lo, hi = {"train": (0, self.val_start), "val": (self.val_start, self.test_start),
                  "test": (self.test_start, len(self.stream))}[part]
        positions = np.arange(max(lo, k), hi)
        x = np.stack([self.stream[positions - k + j] for j in range(k)], axis=1) if k else \
            np.zeros((len(positions), 0), dtype=np.int64)
        return x.astype(np.int64), self.stream[positions].astype(np.int64)


def split_stream(stream: np.ndarray, val: float, test: float, context: int) -> Split:
    """The :class:`Split` of ``stream`` holding out fractions ``val`` and ``test`` at its end."""
    stream = np.asarray(stream, dtype=np.int64)
    for name, f in (("validation", val), ("test", test)):
        if not 0.0 < f < 1.0:
            raise ConfigError(f"the {name} fraction must be between 0 and 1, got {f}")
    if val + test >= 1.0:
        raise ConfigError(f"the validation and test fractions ({val} + {test}) leave no training text")
    n = len(stream)
    split = Split(stream, int(round((1.0 - val - test) * n)), int(round((1.0 - test) * n)))
    smallest = min(split.val_start - max(context, 4), split.test_start - split.val_start, n - split.test_start)
    if smallest < 1:
        raise DataError(f"the text has {n} tokens, too few to split into training, validation ({val:.0%}) and "
                        f"test ({test:.0%}) text with a context of {context}: give more text")
    return split


@dataclass
class Baseline:
    """One count-based model: its name, its setting chosen on validation, its perplexities."""

    name: str
    setting: str
    val: float
    test: float
    #: log P of each validation and test target (for a mixture with the model); not saved
    log_probs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


def baselines(split: Split, vocabulary: int) -> list[Baseline]:
    """Add-k bigram and interpolated Kneser-Ney of orders :data:`KN_ORDERS`, each tuned on the
    validation text and scored once on the test text."""
    train = split.stream[:split.val_start]
    width = max(KN_ORDERS) - 1
    xv, yv = split.contexts("val", width)
    xt, yt = split.contexts("test", width)
    k = tune_add_k(train[:-1], train[1:], xv[:, -1], yv, vocabulary)
    rows = [Baseline("add-k bigram", f"k={k:g}",
                     perplexity(add_k_log_probs(train[:-1], train[1:], xv[:, -1], yv, vocabulary, k)),
                     perplexity(add_k_log_probs(train[:-1], train[1:], xt[:, -1], yt, vocabulary, k)))]
    kn = KneserNey(train, vocabulary, max(KN_ORDERS))
    for order in KN_ORDERS:
        d = tune_discounts(kn, order, xv, yv)
        logs = {"val": kn.log_probs(order, xv, yv, d), "test": kn.log_probs(order, xt, yt, d)}
        rows.append(Baseline(f"KN {order}-gram", "D=" + "/".join(f"{x:g}" for x in d),
                             perplexity(logs["val"]), perplexity(logs["test"]), logs))
    return rows


def mixture(model_logs: dict[str, np.ndarray], baseline: Baseline,
            grid: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))) -> Baseline:
    """The linear interpolation ``lam P_model + (1 - lam) P_baseline``, ``lam`` chosen on validation
    (a classic lever, Bengio et al. 2003, section 4; reported apart from the model itself)."""
    def mix(part, lam):
        return np.logaddexp(np.log(lam) + model_logs[part], np.log1p(-lam) + baseline.log_probs[part])

    lam = min(grid, key=lambda lam: perplexity(mix("val", lam)))
    return Baseline(f"model + {baseline.name}", f"lambda={lam:g}", perplexity(mix("val", lam)),
                    perplexity(mix("test", lam)))
