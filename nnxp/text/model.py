"""A next-token model in the style of Bengio et al. (2003), and the bigram baseline it must beat.

A context of ``k`` token ids -> their embeddings concatenated -> a tanh
hidden layer -> a softmax over the vocabulary, trained with cross-entropy::

    x = [E[t1], ..., E[tk]]  (B, k*d)      h = tanh(x W1^T + b1)  (B, H)
    z = h W2^T + b2  (B, V)                C = -(1/B) sum log softmax(z)[target]

Weights are stored (out, in) as in :mod:`nnxp.network`; the loss is nnxp's
fused softmax cross-entropy, the optimizers nnxp's (:mod:`nnxp.optim`), and
every array lives on the chosen backend (NumPy, CuPy, ...).  The layer-list
``Network`` does not take an embedding layer yet, so the training loop is
written here, with nnxp's losses, optimizers, progress bar and file format.

The baseline is a count-based bigram model with add-k smoothing,
P(b | a) = (c(a, b) + k) / (c(a) + k V), counted on the same training split
and scored on the same held-out targets; k is the value of a grid that gives
the baseline its *lowest* held-out perplexity (its best case).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from array_api_compat import array_namespace

from ..activations import get_activation
from ..backend import get_backend, to_numpy
from ..errors import ConfigError, DataError, DivergenceError
from ..init import initial_parameters
from ..losses import CrossEntropy
from ..optim import Optimizer, get_optimizer
from ..serialization import read_arrays, write_arrays
from .embedding import Embedding
from .tokenizer import Tokenizer

__all__ = ["NextTokenModel", "contexts", "bigram_perplexity", "train_model", "neighbours", "EpochRecord"]

MODEL_KIND = "nnxp.text.NextTokenModel"
ADD_K_GRID = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 0.0003, 0.0001)


def contexts(stream: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(X (N, k), y (N,)) for every position with k tokens before it: X[i] = stream[i:i+k], y[i] = stream[i+k]."""
    stream = np.asarray(stream, dtype=np.int64)
    n = len(stream) - k
    if n < 2:
        raise DataError(f"the text has {len(stream)} tokens, too few for a context of {k}: give more text")
    x = np.lib.stride_tricks.sliding_window_view(stream, k)[:n]
    return np.ascontiguousarray(x), stream[k:].copy()


def bigram_perplexity(prev_train: np.ndarray, next_train: np.ndarray, prev_test: np.ndarray,
                      next_test: np.ndarray, vocabulary: int, k: float) -> float:
    """Held-out perplexity of the add-k bigram model counted on the training pairs."""
    v = np.int64(vocabulary)
    codes, pair_counts = np.unique(prev_train.astype(np.int64) * v + next_train, return_counts=True)
    context_counts = np.bincount(prev_train, minlength=vocabulary)
    test = prev_test.astype(np.int64) * v + next_test
    pos = np.minimum(np.searchsorted(codes, test), len(codes) - 1)
    c_ab = np.where(codes[pos] == test, pair_counts[pos], 0)
    p = (c_ab + k) / (context_counts[prev_test] + k * vocabulary)
    return float(np.exp(-np.mean(np.log(p))))


def best_bigram(prev_train, next_train, prev_test, next_test, vocabulary) -> tuple[float, float]:
    """(perplexity, k) of the add-k bigram with the k of :data:`ADD_K_GRID` that scores best."""
    return min((bigram_perplexity(prev_train, next_train, prev_test, next_test, vocabulary, k), k)
               for k in ADD_K_GRID)


class NextTokenModel:
    """Embedding (V, d) over k tokens -> Dense tanh (H) -> Dense softmax (V)."""

    def __init__(self, vocabulary: int, context: int = 3, dimension: int = 32, hidden: int = 128, *,
                 device: Any = "auto", dtype: str = "float32", seed: int = 0):
        for name, value in (("vocabulary", vocabulary), ("context", context), ("dimension", dimension),
                            ("hidden", hidden)):
            if int(value) < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        self.backend = get_backend(device)
        self.dtype_name = dtype
        self.dtype = self.backend.dtype(dtype)
        rng = np.random.default_rng(seed)
        self.embedding = Embedding.create(vocabulary, dimension, context, backend=self.backend,
                                          dtype=dtype, rng=rng)
        self.tanh, self.softmax, self.loss = get_activation("tanh"), get_activation("softmax"), CrossEntropy()
        w1, b1 = initial_parameters(rng, hidden, context * dimension, "xavier", self.tanh)
        w2, b2 = initial_parameters(rng, vocabulary, hidden, "xavier", self.softmax)
        self.w1, self.b1, self.w2, self.b2 = (self.backend.asarray(a, self.dtype, copy=True)
                                              for a in (w1, b1, w2, b2))

    # -- parameters ------------------------------------------------------------------
    NAMES = ("embedding", "hidden.weight", "hidden.bias", "output.weight", "output.bias")

    def parameters(self) -> list[Any]:
        return [self.embedding.table, self.w1, self.b1, self.w2, self.b2]

    def set_parameters(self, arrays: Sequence[Any]) -> None:
        table, self.w1, self.b1, self.w2, self.b2 = arrays
        self.embedding.set_parameters([table])

    def config(self) -> dict[str, Any]:
        return {"vocabulary": self.embedding.vocabulary, "context": self.embedding.context,
                "dimension": self.embedding.dimension, "hidden": int(self.w1.shape[0]),
                "dtype": self.dtype_name}

    # -- forward and backward ------------------------------------------------------------
    def logits(self, ids: Any) -> tuple[Any, tuple]:
        x, flat = self.embedding.forward(ids)
        h = self.tanh.forward(x @ self.w1.T + self.b1)
        return h @ self.w2.T + self.b2, (flat, x, h)

    def cost_and_gradients(self, ids: Any, targets: Any) -> tuple[Any, list[Any]]:
        """(batch-mean cross-entropy, a 0-d device array; gradients matching :meth:`parameters`)."""
        xp = array_namespace(self.w1)
        z, (flat, x, h) = self.logits(ids)
        classes = xp.arange(z.shape[1], dtype=targets.dtype, device=self.backend.device)
        y = xp.astype(targets[:, None] == classes[None, :], z.dtype)
        _, cost, delta = self.loss.forward(self.softmax, z, y)       # delta = dC/dz (B, V)
        g_w2, g_b2 = delta.T @ h, xp.sum(delta, axis=0)
        dz1 = self.tanh.backward(h, delta @ self.w2)                  # dC/d(hidden pre-activation)
        g_w1, g_b1 = dz1.T @ x, xp.sum(dz1, axis=0)
        _, (g_table,) = self.embedding.backward(dz1 @ self.w1, flat)
        return cost, [g_table, g_w1, g_b1, g_w2, g_b2]

    def summed_cost(self, ids: Any, targets: Any) -> Any:
        """Sum over the batch of -log P(target), a 0-d device array (no gradients)."""
        xp = array_namespace(self.w1)
        z, _ = self.logits(ids)
        shifted = z - xp.max(z, axis=1, keepdims=True)
        log_norm = xp.log(xp.sum(xp.exp(shifted), axis=1))
        picked = xp.take_along_axis(shifted, targets[:, None], axis=1)[:, 0]
        return xp.sum(log_norm - picked)

    def perplexity(self, x: Any, y: Any, batch_size: int = 1024) -> float:
        """exp(mean -log P(y | x)) over device arrays x (N, k), y (N,)."""
        total = None
        n = x.shape[0]
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)  # out-of-bounds slice stops are not in the standard
            part = self.summed_cost(x[start:stop, ...], y[start:stop])
            total = part if total is None else total + part
        return math.exp(float(total) / x.shape[0])

    # -- files -----------------------------------------------------------------------
    def save(self, path: Any, tokenizer: Tokenizer, extra: dict[str, Any] | None = None) -> None:
        """Write the model and its tokenizer to one safetensors file, atomically."""
        metadata = {"kind": MODEL_KIND, "config": self.config(), "tokenizer": tokenizer.to_json(), **(extra or {})}
        write_arrays(path, dict(zip(self.NAMES, self.parameters())), metadata)

    @classmethod
    def load(cls, path: Any, device: Any = "cpu") -> tuple["NextTokenModel", Tokenizer, dict[str, Any]]:
        arrays, metadata = read_arrays(path)
        if metadata.get("kind") != MODEL_KIND:
            raise DataError(f"{path} is not a text model (it has no token embeddings): give a file "
                            "written by `nnxp text train`")
        config = metadata["config"]
        model = cls(config["vocabulary"], config["context"], config["dimension"], config["hidden"],
                    device=device, dtype=config["dtype"])
        model.set_parameters([model.backend.asarray(arrays[name], model.dtype, copy=True) for name in cls.NAMES])
        return model, Tokenizer.from_json(metadata["tokenizer"], str(path)), metadata


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    perplexity: float
    seconds: float


@dataclass
class TextRun:
    """What :func:`train_model` measured."""

    bigram_perplexity: float
    bigram_k: float
    train_tokens: int
    test_tokens: int
    epochs: list[EpochRecord] = field(default_factory=list)


def train_model(model: NextTokenModel, stream: np.ndarray, *, epochs: int = 5, batch_size: int = 256,
                optimizer: str | Optimizer = "adam", lr: float | None = 1e-3, held_out: float = 0.1,
                seed: int = 0, progress: bool | None = None,
                on_epoch: Callable[[EpochRecord, TextRun], None] | None = None) -> TextRun:
    """Train on the first ``1 - held_out`` of the contexts of ``stream``; score the rest each epoch.

    The split is contiguous (the held-out text comes after the training text);
    the bigram baseline is counted and scored on the same split.  Epoch e
    shuffles with ``default_rng([seed, e])``.
    """
    if not 0.0 < held_out < 1.0:
        raise ConfigError(f"held_out must be a fraction between 0 and 1, got {held_out}")
    k, vocabulary = model.embedding.context, model.embedding.vocabulary
    x, y = contexts(stream, k)
    if int(y.max()) >= vocabulary:
        raise DataError(f"token id {int(y.max())} is outside the model's vocabulary of {vocabulary}")
    split = int(round(len(y) * (1.0 - held_out)))
    if split < 1 or split >= len(y):
        raise DataError(f"{len(y)} contexts are too few to hold out {held_out:.0%}: give more text")
    ppl, add_k = best_bigram(x[:split, -1], y[:split], x[split:, -1], y[split:], vocabulary)
    run = TextRun(ppl, add_k, split, len(y) - split)
    optimizer = get_optimizer(optimizer, lr)
    backend = model.backend
    ids = backend.index_dtype
    x_dev, y_dev = backend.asarray(x, ids), backend.asarray(y, ids)
    x_train, y_train, x_test, y_test = x_dev[:split, ...], y_dev[:split], x_dev[split:, ...], y_dev[split:]
    xp = backend.xp
    show = sys.stderr.isatty() if progress is None else progress
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        order = backend.asarray(np.random.default_rng([seed, epoch]).permutation(split), ids)
        total = None
        bar = _progress_bar(epoch, epochs, split) if show else None
        with backend.context():
            for lo in range(0, split, batch_size):
                batch = order[lo:min(lo + batch_size, split)]
                bx, by = xp.take(x_train, batch, axis=0), xp.take(y_train, batch, axis=0)
                cost, grads = model.cost_and_gradients(bx, by)
                optimizer.step(model.parameters(), grads)
                part = cost * float(batch.shape[0])
                total = part if total is None else total + part
                if bar is not None:
                    bar.update(min(lo + batch_size, split), total)
            loss = float(total) / split
            if not math.isfinite(loss):
                raise DivergenceError(f"epoch {epoch}: the training loss is {loss}; lower --lr")
            ppl = model.perplexity(x_test, y_test)
        if bar is not None:
            bar.close()
        record = EpochRecord(epoch, loss, ppl, time.perf_counter() - start)
        run.epochs.append(record)
        if on_epoch is not None:
            on_epoch(record, run)
    return run


def _progress_bar(epoch: int, epochs: int, total: int):
    from ..train import _ProgressBar

    return _ProgressBar(epoch, epochs, total)


def neighbours(table: Any, token: int, count: int = 8) -> list[tuple[int, float]]:
    """The ``count`` rows most similar to row ``token`` by cosine similarity: [(id, cosine)], best first."""
    e = to_numpy(table).astype(np.float64)
    norms = np.linalg.norm(e, axis=1)
    cos = (e @ e[token]) / np.maximum(norms * norms[token], 1e-12)
    cos[token] = -np.inf
    best = np.argsort(-cos, kind="stable")[:count]
    return [(int(i), float(cos[i])) for i in best]
