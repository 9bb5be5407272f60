"""Count-based n-gram baselines: interpolated Kneser-Ney (orders 2-4) and the add-k bigram.

Interpolated Kneser-Ney (Kneser & Ney 1995; Chen & Goodman 1998, eq. 26),
one absolute discount ``D_m`` in (0, 1) per order m.  For an m-gram
``h w`` (context ``h`` of m-1 tokens, ``h'`` = ``h`` without its first token)::

    P_m(w | h) = max(c_m(h w) - D_m, 0) / c_m(h .)  +  D_m N_m(h .) / c_m(h .) * P_{m-1}(w | h')
    P_m(w | h) = P_{m-1}(w | h')                    when c_m(h .) = 0 (an unseen context)
    P_0(w)     = 1 / V                              (so every token of the vocabulary has P > 0)

where ``c_m(h .) = sum over w of c_m(h w)`` and ``N_m(h .)`` is the number of
tokens w with ``c_m(h w) > 0``.  At the model's own order n, ``c_n`` is the
raw count of the n-gram in the training text; below it, ``c_m(g)`` is the
*continuation* count: the number of distinct tokens that precede ``g`` in
the training text (how many contexts ``g`` completes, not how often it
occurs).  Each P_m sums to 1 over the vocabulary for every context, seen or
not (tested by brute force).  The discounts are chosen on a validation
split by :func:`tune_discounts`; the test split is then scored once.

The add-k bigram is ``P(b | a) = (c(a, b) + k) / (c(a) + k V)``, k from
:data:`ADD_K_GRID`, also chosen on validation.

Counts are kept as sorted integer codes (an m-gram of ids ``t_1..t_m`` is
``sum t_j V^(m-j)``) and looked up with ``searchsorted``: NumPy on the host,
as the counting is a one-off preprocessing step, not part of training.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["KneserNey", "tune_discounts", "add_k_log_probs", "tune_add_k", "perplexity", "ADD_K_GRID",
           "DISCOUNT_GRID"]

ADD_K_GRID = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 0.0003, 0.0001)
DISCOUNT_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 ... 0.95


def perplexity(log_probs: np.ndarray) -> float:
    """exp(-mean log P): the perplexity of natural-log probabilities."""
    return float(math.exp(-float(np.mean(log_probs))))


def _codes(grams: np.ndarray, vocabulary: int) -> np.ndarray:
    """(N, m) ids -> (N,) int64 codes sum t_j V^(m-j) (exact: the caller checks V^m fits)."""
    codes = np.zeros(grams.shape[0], dtype=np.int64)
    for j in range(grams.shape[1]):
        codes = codes * np.int64(vocabulary) + grams[:, j].astype(np.int64)
    return codes


class _Table:
    """Counts c_m(g) of m-grams g (raw or continuation), with per-context totals c_m(h .) and types N_m(h .)."""

    def __init__(self, grams: np.ndarray, counts: np.ndarray, vocabulary: int):
        self.vocabulary = vocabulary
        self.codes = _codes(grams, vocabulary)                 # sorted, unique
        self.counts = counts.astype(np.float64)
        contexts = self.codes // np.int64(vocabulary)          # the m-gram without its last token
        self.context_codes, first = np.unique(contexts, return_index=True)
        self.totals = np.add.reduceat(self.counts, first)      # c_m(h .)
        self.types = np.diff(np.append(first, len(contexts))).astype(np.float64)  # N_m(h .)

    @staticmethod
    def _lookup(keys: np.ndarray, table: np.ndarray, values: np.ndarray) -> np.ndarray:
        if len(keys) == 0:
            return np.zeros(len(table), dtype=np.float64)
        pos = np.minimum(np.searchsorted(keys, table), len(keys) - 1)
        return np.where(keys[pos] == table, values[pos], 0.0)

    def stats(self, grams: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(c_m(h w), c_m(h .), N_m(h .)) for each row ``h w`` of ``grams`` (N, m)."""
        codes = _codes(grams, self.vocabulary)
        contexts = codes // np.int64(self.vocabulary)
        return (self._lookup(self.codes, codes, self.counts),
                self._lookup(self.context_codes, contexts, self.totals),
                self._lookup(self.context_codes, contexts, self.types))


class KneserNey:
    """Interpolated Kneser-Ney n-gram models of orders 1..``max_order``, counted on ``train`` (a 1-D id stream).

    ``log_probs(order, contexts, targets, discounts)`` scores any order up to
    ``max_order`` from the same counts (the raw counts of that order, the
    continuation counts below it).
    """

    def __init__(self, train: np.ndarray, vocabulary: int, max_order: int = 4):
        train = np.asarray(train, dtype=np.int64)
        if max_order < 1:
            raise ConfigError(f"the n-gram order must be at least 1, got {max_order}")
        if float(vocabulary) ** max_order >= 2.0 ** 62:
            raise ConfigError(f"a vocabulary of {vocabulary} is too large for {max_order}-gram codes")
        if len(train) < max_order + 1:
            raise DataError(f"{len(train)} training tokens are too few for a {max_order}-gram model")
        if len(train) and (int(train.min()) < 0 or int(train.max()) >= vocabulary):
            raise DataError(f"token ids must be in [0, {vocabulary})")
        self.vocabulary, self.max_order = int(vocabulary), int(max_order)
        self.raw: dict[int, _Table] = {}
        self.continuation: dict[int, _Table] = {}
        for m in range(1, max_order + 1):
            windows = np.lib.stride_tricks.sliding_window_view(train, m)
            unique, counts = np.unique(windows, axis=0, return_counts=True)
            if m <= max_order:
                self.raw[m] = _Table(unique, counts, self.vocabulary)
            if m >= 2:  # continuation count of the (m-1)-gram g: distinct tokens before it
                tails, n_left = np.unique(unique[:, 1:], axis=0, return_counts=True)
                self.continuation[m - 1] = _Table(tails, n_left, self.vocabulary)

    def level_stats(self, order: int, contexts: np.ndarray, targets: np.ndarray) -> list[tuple[np.ndarray, ...]]:
        """For m = 1..order, the (c, c(h .), N(h .)) of each scored position: what
        :meth:`combine` needs, independent of the discounts (so tuning them is cheap)."""
        if not 1 <= order <= self.max_order:
            raise ConfigError(f"order {order} is outside 1..{self.max_order}")
        contexts = np.asarray(contexts, dtype=np.int64).reshape(len(targets), -1)
        if contexts.shape[1] < order - 1:
            raise ConfigError(f"an order-{order} model needs {order - 1} context tokens, got {contexts.shape[1]}")
        targets = np.asarray(targets, dtype=np.int64)
        levels = []
        for m in range(1, order + 1):
            grams = np.concatenate([contexts[:, contexts.shape[1] - (m - 1):], targets[:, None]], axis=1)
            table = self.raw[m] if m == order else self.continuation[m]
            levels.append(table.stats(grams))
        return levels

    def combine(self, levels: Sequence[tuple[np.ndarray, ...]], discounts: Sequence[float]) -> np.ndarray:
        """P(w | h) per position from :meth:`level_stats` and one discount per order (lowest first)."""
        if len(discounts) != len(levels) or not all(0.0 < d < 1.0 for d in discounts):
            raise ConfigError(f"give {len(levels)} discounts in (0, 1), got {list(discounts)}")
        p = np.full(len(levels[0][0]), 1.0 / self.vocabulary)        # P_0
        for (count, total, types), d in zip(levels, discounts):
            seen = total > 0
            safe = np.where(seen, total, 1.0)
            interpolated = np.maximum(count - d, 0.0) / safe + d * types / safe * p
            p = np.where(seen, interpolated, p)
        return p

    def log_probs(self, order: int, contexts: np.ndarray, targets: np.ndarray,
                  discounts: Sequence[float]) -> np.ndarray:
        """log P(target | context) of the order-``order`` model; ``contexts`` (N, >= order-1) ids."""
        return np.log(self.combine(self.level_stats(order, contexts, targets), discounts))


def tune_discounts(model: KneserNey, order: int, contexts: np.ndarray, targets: np.ndarray,
                   grid: Sequence[float] = DISCOUNT_GRID, sweeps: int = 3) -> tuple[float, ...]:
    """The discounts (lowest order first) that minimise the perplexity of (contexts, targets): coordinate
    descent over ``grid``, one order at a time, ``sweeps`` times (the validation split, never the test)."""
    levels = model.level_stats(order, contexts, targets)
    discounts = [0.75] * order

    def score(ds):
        return -float(np.mean(np.log(model.combine(levels, ds))))

    best = score(discounts)
    for _ in range(sweeps):
        changed = False
        for m in range(order):
            for d in grid:
                trial = discounts[:m] + [d] + discounts[m + 1:]
                s = score(trial)
                if s < best - 1e-12:
                    best, discounts, changed = s, trial, True
        if not changed:
            break
    return tuple(discounts)


def add_k_log_probs(prev_train: np.ndarray, next_train: np.ndarray, prev: np.ndarray, nxt: np.ndarray,
                    vocabulary: int, k: float) -> np.ndarray:
    """log P(next | prev) of the add-k bigram counted on the training pairs."""
    v = np.int64(vocabulary)
    codes, pair_counts = np.unique(prev_train.astype(np.int64) * v + next_train, return_counts=True)
    context_counts = np.bincount(prev_train, minlength=vocabulary)
    test = prev.astype(np.int64) * v + nxt
    pos = np.minimum(np.searchsorted(codes, test), len(codes) - 1)
    c_ab = np.where(codes[pos] == test, pair_counts[pos], 0)
    return np.log((c_ab + k) / (context_counts[prev] + k * vocabulary))


def tune_add_k(prev_train, next_train, prev_val, next_val, vocabulary, grid=ADD_K_GRID) -> float:
    """The k of ``grid`` with the lowest perplexity on the validation pairs."""
    return min(grid, key=lambda k: perplexity(add_k_log_probs(prev_train, next_train, prev_val, next_val,
                                                              vocabulary, k)))
