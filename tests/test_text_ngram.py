"""The n-gram baselines: interpolated Kneser-Ney against a brute-force textbook computation, normalisation
over the vocabulary for seen and unseen contexts, discounts tuned on validation, the split."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from nnxp.errors import ConfigError, DataError
from nnxp.text.baselines import baselines, split_stream
from nnxp.text.ngram import KneserNey, add_k_log_probs, perplexity, tune_add_k, tune_discounts

V = 5
TRAIN = np.array([0, 1, 2, 0, 1, 3, 0, 1, 2, 2, 4, 0, 1, 2, 3, 3, 1, 0, 2, 1])


def brute_force_kn(train: list[int], order: int, discounts: list[float], vocabulary: int):
    """P(w | h) by the textbook definition, with Python dicts and loops (no shared code)."""
    grams = {m: Counter(tuple(train[i:i + m]) for i in range(len(train) - m + 1)) for m in range(1, order + 1)}

    def count(gram: tuple[int, ...]) -> int:
        m = len(gram)
        if m == order:
            return grams[m][gram]
        return len({g[0] for g in grams[m + 1] if g[1:] == gram})  # distinct left neighbours

    def p(w: int, h: tuple[int, ...]) -> float:
        m = len(h) + 1
        lower = p(w, h[1:]) if h else 1.0 / vocabulary
        d = discounts[m - 1]
        counts = [count(h + (v,)) for v in range(vocabulary)]
        total = sum(counts)
        if total == 0:
            return lower
        types = sum(1 for c in counts if c > 0)
        return max(counts[w] - d, 0) / total + d * types / total * lower

    return p


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_kneser_ney_matches_the_textbook_and_sums_to_one_for_every_context(order):
    discounts = [0.3, 0.55, 0.7, 0.8][:order]
    kn = KneserNey(TRAIN, V, 4)
    reference = brute_force_kn(TRAIN.tolist(), order, discounts, V)
    # Every context of order-1 tokens: seen ones (0 1), unseen ones (4 4), partly seen.
    for h in itertools.product(range(V), repeat=order - 1):
        ctx = np.tile(np.array(h, dtype=np.int64), (V, 1)).reshape(V, order - 1)
        got = np.exp(kn.log_probs(order, ctx, np.arange(V), discounts))
        want = np.array([reference(w, tuple(h)) for w in range(V)])
        np.testing.assert_allclose(got, want, rtol=1e-12)
        assert abs(got.sum() - 1.0) < 1e-12 and (got > 0).all()


def test_a_token_never_seen_in_training_still_gets_probability():
    kn = KneserNey(np.array([0, 1, 0, 1, 0, 1]), 4, 3)
    p = np.exp(kn.log_probs(3, np.array([[0, 1]] * 4), np.arange(4), [0.5, 0.5, 0.5]))
    assert (p[2:] > 0).all() and abs(p.sum() - 1) < 1e-12


def test_add_k_matches_counts_and_normalises():
    k = 0.1
    logp = add_k_log_probs(TRAIN[:-1], TRAIN[1:], np.repeat(np.arange(V), V), np.tile(np.arange(V), V), V, k)
    table = np.exp(logp).reshape(V, V)
    np.testing.assert_allclose(table.sum(axis=1), 1.0, rtol=1e-12)
    pairs = Counter(zip(TRAIN[:-1].tolist(), TRAIN[1:].tolist()))
    firsts = Counter(TRAIN[:-1].tolist())
    assert table[0, 1] == pytest.approx((pairs[(0, 1)] + k) / (firsts[0] + k * V))


def test_tuning_picks_the_grid_point_with_the_lowest_validation_perplexity():
    rng = np.random.default_rng(0)
    stream = rng.integers(0, 6, 600)
    kn = KneserNey(stream[:500], 6, 3)
    x = np.stack([stream[498:598], stream[499:599]], axis=1)
    y = stream[500:600]
    grid = (0.2, 0.5, 0.9)
    chosen = tune_discounts(kn, 3, x, y, grid=grid, sweeps=10)
    scores = {d: perplexity(kn.log_probs(3, x, y, d)) for d in itertools.product(grid, repeat=3)}
    assert perplexity(kn.log_probs(3, x, y, chosen)) <= min(scores.values()) + 1e-9
    k = tune_add_k(stream[:499], stream[1:500], x[:, -1], y, 6, grid=(1.0, 0.1))
    assert k == min((1.0, 0.1), key=lambda k: perplexity(add_k_log_probs(stream[:499], stream[1:500], x[:, -1],
                                                                          y, 6, k)))


def test_split_is_contiguous_and_baselines_never_count_held_out_text():
    stream = np.arange(100) % 7
    split = split_stream(stream, 0.1, 0.2, 3)
    assert (split.val_start, split.test_start) == (70, 80)
    x, y = split.contexts("test", 3)
    assert len(y) == 20 and (x[0] == stream[77:80]).all() and y[0] == stream[80]
    assert len(split.contexts("train", 3)[1]) == 67
    # A token that occurs only in the test text: the baselines must not have counted it.
    stream = np.concatenate([np.tile([0, 1, 2], 30), [3] * 10])
    rows = baselines(split_stream(stream, 0.1, 0.1, 2), 4)
    assert [r.name for r in rows] == ["add-k bigram", "KN 2-gram", "KN 3-gram", "KN 4-gram"]
    assert all(r.val < 1.5 and r.test > 4 for r in rows)  # 3 was never seen: the test is surprising


@pytest.mark.parametrize("val, test, n, error", [
    (0.6, 0.5, 100, ConfigError), (0.0, 0.1, 100, ConfigError), (0.1, 0.1, 6, DataError)])
def test_bad_splits_are_refused(val, test, n, error):
    with pytest.raises(error):
        split_stream(np.zeros(n, dtype=np.int64), val, test, 2)


def test_the_mixture_weight_is_chosen_on_validation_and_mixes_probabilities():
    from nnxp.text.baselines import Baseline, mixture

    rng = np.random.default_rng(0)
    model = {part: np.log(rng.uniform(0.05, 1.0, 50)) for part in ("val", "test")}
    kn = {part: np.log(rng.uniform(0.05, 1.0, 50)) for part in ("val", "test")}
    row = mixture(model, Baseline("KN 4-gram", "", 0.0, 0.0, kn), grid=(0.25, 0.5))
    lam = float(row.setting.split("=")[1])
    best = min((0.25, 0.5), key=lambda g: perplexity(np.log(g * np.exp(model["val"]) + (1 - g) * np.exp(kn["val"]))))
    assert lam == best
    assert row.test == pytest.approx(perplexity(np.log(lam * np.exp(model["test"]) + (1 - lam) * np.exp(kn["test"]))))
