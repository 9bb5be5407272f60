"""A next-token model in the style of Bengio et al. (2003), and the bigram baseline it must beat.

A context of ``k`` token ids -> their embeddings concatenated -> a tanh
hidden layer -> a softmax over the vocabulary, trained with cross-entropy::

    x = [E[t1], ..., E[tk]]  (B, k*d)      h = tanh(x W1^T + b1)  (B, H)
    z = h W2^T + b2  (B, V)                C = -(1/B) sum log softmax(z)[target]

The model is an nnxp :class:`~nnxp.network.Network` of three layers
(:class:`~nnxp.text.embedding.Embedding`, then two :class:`~nnxp.layers.Dense`,
weights stored (out, in)), trained by its ``train_step`` with nnxp's fused
softmax cross-entropy and optimizers, on any backend (NumPy, CuPy, ...), and
saved as an nnxp model file with the tokenizer in its metadata.  The epoch
loop is written here rather than with :func:`nnxp.train.fit` because ``fit``
turns all targets into one-hot rows at once (N x V floats: 0.5 GB for the
default corpus); here each batch's targets become one-hot rows on the device.

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

from ..activations import get_activation
from ..backend import get_backend, to_numpy
from ..errors import ConfigError, DataError, DivergenceError
from ..init import initial_parameters
from ..kernels import ArrayAPIOps, ops_for
from ..layers import Dense
from ..network import Network
from ..optim import Optimizer, get_optimizer
from ..network import network_from
from ..serialization import read_arrays, save
from ..validation import check_parameter_memory
from .embedding import Embedding
from .tokenizer import Tokenizer

__all__ = ["NextTokenModel", "contexts", "bigram_perplexity", "train_model", "neighbours", "EpochRecord"]

MODEL_KIND = "nnxp.text.NextTokenModel"
_REFERENCE = ArrayAPIOps()
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


# Above this, math.exp overflows a float.
_MAX_EXP = math.log(sys.float_info.max)


class NextTokenModel:
    """Embedding (V, d) over k tokens -> Dense tanh (H) -> Dense softmax (V): a
    :class:`~nnxp.network.Network` of three layers (``self.net``)."""

    def __init__(self, vocabulary: int, context: int = 3, dimension: int = 32, hidden: int = 128, *,
                 device: Any = "auto", dtype: str = "float32", seed: int = 0):
        for name, value in (("vocabulary", vocabulary), ("context", context), ("dimension", dimension),
                            ("hidden", hidden)):
            if int(value) < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        itemsize = np.dtype(dtype).itemsize if dtype in ("float32", "float64") else 8
        check_parameter_memory([vocabulary, dimension], itemsize)  # the embedding table
        check_parameter_memory([context * dimension, hidden, vocabulary], itemsize)  # huge sizes: one line
        backend = get_backend(device)
        float_dtype = backend.dtype(dtype)
        rng = np.random.default_rng(seed)
        embedding = Embedding.create(vocabulary, dimension, context, backend=backend, dtype=dtype, rng=rng)
        layers: list[Any] = [embedding]
        for n_in, n_out, act in ((context * dimension, hidden, "tanh"), (hidden, vocabulary, "softmax")):
            w, b = initial_parameters(rng, n_out, n_in, "xavier", get_activation(act))
            layers.append(Dense(backend.asarray(w, float_dtype, copy=True),
                                backend.asarray(b, float_dtype, copy=True), act))
        self.net = Network.from_layers(layers, loss="cross_entropy", device=backend, dtype=dtype)

    @classmethod
    def _wrap(cls, net: Network) -> "NextTokenModel":
        model = cls.__new__(cls)
        model.net = net
        return model

    @property
    def embedding(self) -> Embedding:
        return self.net.layers[0]

    @property
    def backend(self) -> Any:
        return self.net.backend

    def parameters(self) -> list[Any]:
        """[embedding table, hidden W, hidden b, output W, output b]."""
        return self.net.parameters()

    def set_parameters(self, arrays: Sequence[Any]) -> None:
        self.net.set_parameters(arrays)

    def config(self) -> dict[str, Any]:
        return {"vocabulary": self.embedding.vocabulary_size, "context": self.embedding.context,
                "dimension": self.embedding.dimension, "hidden": self.net.layers[1].out_features,
                "dtype": self.net.dtype_name}

    # -- forward and backward ------------------------------------------------------------
    def one_hot(self, targets: Any) -> Any:
        """(B,) target ids on the device -> (B, V) one-hot rows (no host read: ids are checked before)."""
        xp = self.net.xp
        classes = xp.arange(self.embedding.vocabulary_size, dtype=targets.dtype, device=self.net.device)
        return xp.astype(targets[:, None] == classes[None, :], self.net.dtype)

    def cost_and_gradients(self, ids: Any, targets: Any, ops: Any = _REFERENCE) -> tuple[Any, list[Any]]:
        """(batch-mean cross-entropy, a 0-d device array; gradients matching :meth:`parameters`)."""
        cost, grads, _ = self.net.backprop(ids, self.one_hot(targets), ops)
        return cost, grads

    def summed_cost(self, ids: Any, targets: Any, ops: Any = _REFERENCE) -> Any:
        """Sum over the batch of -log P(target), a 0-d device array (no gradients)."""
        xp = self.net.xp
        z, _ = self.net.forward_pass(ids, ops)
        shifted = z - xp.max(z, axis=1, keepdims=True)
        log_norm = xp.log(xp.sum(xp.exp(shifted), axis=1))
        picked = xp.sum(shifted * self.one_hot(targets), axis=1)  # shifted[i, target_i] (2023.12: no take_along_axis)
        return xp.sum(log_norm - picked)

    def perplexity(self, x: Any, y: Any, batch_size: int = 1024, ops: Any = _REFERENCE) -> float:
        """exp(mean -log P(y | x)) over device arrays x (N, k), y (N,)."""
        total = None
        n = x.shape[0]
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)  # out-of-bounds slice stops are not in the standard
            part = self.summed_cost(x[start:stop, ...], y[start:stop], ops)
            total = part if total is None else total + part
        mean = float(total) / n
        return math.exp(mean) if mean < _MAX_EXP else math.inf  # a diverged model: inf, not OverflowError

    # -- files -----------------------------------------------------------------------
    def save(self, path: Any, tokenizer: Tokenizer, extra: dict[str, Any] | None = None) -> None:
        """Write the network and its tokenizer to one safetensors file, atomically."""
        save(self.net, path, extra_metadata={**self.file_metadata(tokenizer), **(extra or {})})

    @staticmethod
    def file_metadata(tokenizer: Tokenizer) -> dict[str, Any]:
        """What marks a model file (or checkpoint) as a text model: its kind and its tokenizer."""
        return {"kind": MODEL_KIND, "tokenizer": tokenizer.to_json()}

    @classmethod
    def load(cls, path: Any, device: Any = "cpu") -> tuple["NextTokenModel", Tokenizer, dict[str, Any]]:
        arrays, metadata = read_arrays(path)
        if metadata.get("kind") != MODEL_KIND:
            raise DataError(f"{path} is not a text model (it has no token embeddings): give a file "
                            "written by `nnxp text train`")
        net = network_from(arrays, metadata, path, device)
        if not isinstance(net.layers[0], Embedding) or len(net.layers) != 3:
            raise DataError(f"{path}: its network is not embedding -> hidden -> output")
        return cls._wrap(net), Tokenizer.from_json(metadata["tokenizer"], str(path)), metadata


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
                seed: int = 0, progress: bool | None = None, fast: bool = True, initial_epoch: int = 0,
                on_epoch: Callable[[EpochRecord, TextRun], None] | None = None) -> TextRun:
    """Train on the first ``1 - held_out`` of the contexts of ``stream``; score the rest each epoch.

    The split is contiguous (the held-out text comes after the training text);
    the bigram baseline is counted and scored on the same split.  Epoch e
    shuffles with ``default_rng([seed, e])``, so a run resumed after
    ``initial_epoch`` epochs (with its optimizer state) ends with the weights of
    an uninterrupted one.  ``optimizer`` is a name (with ``lr``) or an
    :class:`~nnxp.optim.Optimizer` instance, whose state carries over.  Each step is the network's
    ``train_step`` on the backend's executor (``fast``: its fast path, else
    the reference); the targets become one-hot rows one batch at a time.
    """
    if not 0.0 < held_out < 1.0:
        raise ConfigError(f"held_out must be a fraction between 0 and 1, got {held_out}")
    k, vocabulary = model.embedding.context, model.embedding.vocabulary_size
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
    ops = ops_for(backend, fast)
    ids = backend.index_dtype
    x_dev, y_dev = backend.asarray(x, ids), backend.asarray(y, ids)
    x_train, y_train, x_test, y_test = x_dev[:split, ...], y_dev[:split], x_dev[split:, ...], y_dev[split:]
    show = sys.stderr.isatty() if progress is None else progress
    for epoch in range(initial_epoch + 1, epochs + 1):
        start = time.perf_counter()
        order = backend.asarray(np.random.default_rng([seed, epoch]).permutation(split), ids)
        total = None
        bar = _progress_bar(epoch, epochs, split) if show else None
        with backend.context():
            for lo in range(0, split, batch_size):
                batch = order[lo:min(lo + batch_size, split)]
                bx = ops.take_rows(x_train, batch, "x")
                by = model.one_hot(ops.take_rows(y_train, batch, "y"))
                cost, _ = model.net.train_step(bx, by, optimizer, ops)
                part = cost * float(batch.shape[0])
                total = part if total is None else total + part
                if bar is not None:
                    bar.update(min(lo + batch_size, split), total)
            loss = float(total) / split
            if not math.isfinite(loss):
                raise DivergenceError(f"epoch {epoch}: the training loss is {loss}; lower --lr")
            ppl = model.perplexity(x_test, y_test, ops=ops)
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
