"""A next-token model in the style of Bengio et al. (2003), trained with validation-based early stopping.

A context of ``k`` token ids -> their embeddings concatenated -> dropout ->
a tanh hidden layer -> dropout -> a softmax over the vocabulary, trained with
cross-entropy::

    x = [E[t1], ..., E[tk]] * m1  (B, k*d)      h = tanh(x W1^T + b1) * m2  (B, H)
    z = h W2^T + b2  (B, V)                      C = -(1/B) sum log softmax(z)[target]

``m1``, ``m2`` are inverted-dropout masks (:class:`~nnxp.layers.Dropout`,
keep probability 1 - p, scaled by 1/(1 - p); identity at evaluation).  The
model is an nnxp :class:`~nnxp.network.Network` of five layers
(:class:`~nnxp.text.embedding.Embedding`, Dropout, :class:`~nnxp.layers.Dense`,
Dropout, Dense; weights stored (out, in)), trained by its ``train_step`` with
nnxp's fused softmax cross-entropy and optimizers (weight decay included), on
any backend (NumPy, CuPy, ...), and saved as an nnxp model file with the
tokenizer in its metadata.  Files of the earlier three-layer model (no
dropout layers) still load.  The epoch loop is written here rather than with
:func:`nnxp.train.fit` because ``fit`` turns all targets into one-hot rows at
once (N x V floats: 0.5 GB for the default corpus); here each batch's targets
become one-hot rows on the device.

Training (:func:`train_model`) follows the validation split only
(:mod:`nnxp.text.baselines`): after each epoch the validation perplexity is
measured; when it did not improve, the best epoch's weights are restored, the
optimizer state restarted (zero moments, step 0) and the learning rate
multiplied by ``lr_decay`` (the schedule of Mikolov's RNNLM); after ``patience`` such epochs in a row training stops.  So after every
epoch the network holds the best weights so far, which is what the checkpoint
stores and what a resumed run continues from.  The test text is scored once,
at the end, with those weights.
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
from ..divergence import check_epoch
from ..errors import ConfigError, DataError, DivergenceError
from ..init import initial_parameters
from ..kernels import ArrayAPIOps, ops_for
from ..layers import Dense, Dropout
from ..network import Network
from ..optim import Optimizer, get_optimizer
from ..network import network_from
from ..serialization import read_arrays, save
from ..validation import check_parameter_memory
from .baselines import Baseline, Split, baselines, mixture
from .embedding import Embedding
from .ngram import add_k_log_probs, perplexity
from .tokenizer import Tokenizer

__all__ = ["NextTokenModel", "contexts", "bigram_perplexity", "train_model", "neighbours", "EpochRecord",
           "TextRun"]

MODEL_KIND = "nnxp.text.NextTokenModel"
_REFERENCE = ArrayAPIOps()


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
    """Held-out perplexity of the add-k bigram model counted on the training pairs
    (:func:`nnxp.text.ngram.add_k_log_probs`)."""
    return float(np.exp(-np.mean(add_k_log_probs(prev_train, next_train, prev_test, next_test, vocabulary, k))))


# Above this, math.exp overflows a float.
_MAX_EXP = math.log(sys.float_info.max)


class NextTokenModel:
    """Embedding (V, d) over k tokens -> Dropout -> Dense tanh (H) -> Dropout -> Dense softmax (V):
    a :class:`~nnxp.network.Network` (``self.net``).  ``dropout`` is the hidden units' dropout
    probability, ``embedding_dropout`` the concatenated embeddings'."""

    def __init__(self, vocabulary: int, context: int = 5, dimension: int = 64, hidden: int = 256, *,
                 dropout: float = 0.0, embedding_dropout: float = 0.0, device: Any = "auto",
                 dtype: str = "float32", seed: int = 0):
        for name, value in (("vocabulary", vocabulary), ("context", context), ("dimension", dimension),
                            ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
                raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}")
        itemsize = np.dtype(dtype).itemsize if dtype in ("float32", "float64") else 8
        check_parameter_memory([vocabulary, dimension], itemsize)  # the embedding table
        check_parameter_memory([context * dimension, hidden, vocabulary], itemsize)  # huge sizes: one line
        backend = get_backend(device)
        float_dtype = backend.dtype(dtype)
        rng = np.random.default_rng(seed)
        embedding = Embedding.create(vocabulary, dimension, context, backend=backend, dtype=dtype, rng=rng)
        layers: list[Any] = [embedding, Dropout(embedding_dropout, context * dimension)]
        for n_in, n_out, act in ((context * dimension, hidden, "tanh"), (hidden, vocabulary, "softmax")):
            w, b = initial_parameters(rng, n_out, n_in, "xavier", get_activation(act))
            layers.append(Dense(backend.asarray(w, float_dtype, copy=True),
                                backend.asarray(b, float_dtype, copy=True), act))
            if act == "tanh":
                layers.append(Dropout(dropout, hidden))
        self.net = Network.from_layers(layers, loss="cross_entropy", device=backend, dtype=dtype)

    @classmethod
    def _wrap(cls, net: Network, source: Any = "the network") -> "NextTokenModel":
        """The model around ``net``, after checking that its layers are this model's."""
        kinds = [type(layer) for layer in net.layers]
        if kinds not in ([Embedding, Dense, Dense], [Embedding, Dropout, Dense, Dropout, Dense]) \
                or net.layers[-2 if kinds[-2] is Dense else -3].activation.name != "tanh" \
                or net.output.name != "softmax" \
                or net.layers[-1].out_features != net.layers[0].vocabulary_size:
            raise DataError(f"{source}: its network is not embedding -> tanh layer -> softmax over the "
                            "vocabulary (a next-token model); give a file written by `nnxp text train`")
        model = cls.__new__(cls)
        model.net = net
        return model

    @property
    def embedding(self) -> Embedding:
        return self.net.layers[0]

    @property
    def backend(self) -> Any:
        return self.net.backend

    def _dropout(self, which: int) -> float:
        drops = [layer for layer in self.net.layers if isinstance(layer, Dropout)]
        return drops[which].p if drops else 0.0

    def parameters(self) -> list[Any]:
        """[embedding table, hidden W, hidden b, output W, output b]."""
        return self.net.parameters()

    def set_parameters(self, arrays: Sequence[Any]) -> None:
        self.net.set_parameters(arrays)

    def config(self) -> dict[str, Any]:
        return {"vocabulary": self.embedding.vocabulary_size, "context": self.embedding.context,
                "dimension": self.embedding.dimension, "hidden": self.net.layers[-1].in_features,
                "embedding_dropout": self._dropout(0), "dropout": self._dropout(1), "dtype": self.net.dtype_name}

    # -- forward and backward ------------------------------------------------------------
    def one_hot(self, targets: Any) -> Any:
        """(B,) target ids on the device -> (B, V) one-hot rows (no host read: ids are checked before)."""
        xp = self.net.xp
        classes = xp.arange(self.embedding.vocabulary_size, dtype=targets.dtype, device=self.net.device)
        return xp.astype(targets[:, None] == classes[None, :], self.net.dtype)

    def cost_and_gradients(self, ids: Any, targets: Any, ops: Any = _REFERENCE) -> tuple[Any, list[Any]]:
        """(batch-mean cross-entropy, a 0-d device array; gradients matching :meth:`parameters`);
        evaluation mode (no dropout)."""
        cost, grads, _ = self.net.backprop(ids, self.one_hot(targets), ops, training=False)
        return cost, grads

    def summed_cost(self, ids: Any, targets: Any, ops: Any = _REFERENCE) -> Any:
        """Sum over the batch of -log P(target), a 0-d device array (no gradients, no dropout)."""
        xp = self.net.xp
        z, _ = self.net.forward_pass(ids, ops)
        shifted = z - xp.max(z, axis=1, keepdims=True)
        log_norm = xp.log(xp.sum(xp.exp(shifted), axis=1))
        picked = xp.sum(shifted * self.one_hot(targets), axis=1)  # shifted[i, target_i] (2023.12: no take_along_axis)
        return xp.sum(log_norm - picked)

    def log_probs(self, x: Any, y: Any, batch_size: int = 1024, ops: Any = _REFERENCE) -> np.ndarray:
        """log P(y | x) of every row, copied to the host once at the end (for reports, not training)."""
        xp = self.net.xp
        parts = []
        n = x.shape[0]
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            z, _ = self.net.forward_pass(x[start:stop, ...], ops)
            shifted = z - xp.max(z, axis=1, keepdims=True)
            log_norm = xp.log(xp.sum(xp.exp(shifted), axis=1))
            parts.append(xp.sum(shifted * self.one_hot(y[start:stop]), axis=1) - log_norm)
        return to_numpy(xp.concat(parts)).astype(np.float64)

    def perplexity(self, x: Any, y: Any, batch_size: int = 1024, ops: Any = _REFERENCE) -> float:
        """exp(mean -log P(y | x)) over device arrays x (N, k), y (N,); inf when it overflows."""
        total = None
        n = x.shape[0]
        with np.errstate(over="ignore", invalid="ignore"):
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)  # out-of-bounds slice stops are not in the standard
                part = self.summed_cost(x[start:stop, ...], y[start:stop], ops)
                total = part if total is None else total + part
            mean = float(total) / n
        return math.exp(mean) if mean < _MAX_EXP else (math.inf if mean == mean else math.nan)

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
        """(model, tokenizer, file metadata) of a file written by ``nnxp text train``, all checked."""
        arrays, metadata = read_arrays(path)
        if metadata.get("kind") != MODEL_KIND:
            raise DataError(f"{path} is not a text model (it has no token embeddings): give a file "
                            "written by `nnxp text train`")
        model = cls._wrap(network_from(arrays, metadata, path, device), path)
        return model, model.checked_tokenizer(metadata.get("tokenizer"), path), metadata

    def checked_tokenizer(self, spec: Any, path: Any) -> Tokenizer:
        """The tokenizer a file's metadata holds, refused unless it has one token per embedding row."""
        if not isinstance(spec, dict):
            raise DataError(f"{path}: tokenizer: missing or not an object; give a file written by `nnxp text train`")
        tokenizer = Tokenizer.from_json(spec, f"{path}: tokenizer")
        if len(tokenizer) != self.embedding.vocabulary_size:
            raise DataError(f"{path}: tokenizer: {len(tokenizer)} tokens for an embedding table of "
                            f"{self.embedding.vocabulary_size} rows; the file is damaged (train it again)")
        return tokenizer


@dataclass
class EpochRecord:
    """One epoch: its training loss (dropout on), the validation perplexity after it, whether that
    improved on every epoch before (else the best weights were restored), the learning rate used
    and the one the next epoch gets, and its seconds."""

    epoch: int
    train_loss: float
    val_perplexity: float
    improved: bool
    lr: float
    next_lr: float
    seconds: float

    def as_dict(self) -> dict[str, float]:
        return {"epoch": self.epoch, "loss": self.train_loss, "val_perplexity": self.val_perplexity,
                "improved": int(self.improved), "lr": self.lr, "next_lr": self.next_lr, "seconds": self.seconds}


@dataclass
class TextRun:
    """What :func:`train_model` measured: the baselines, the epochs, and at the end the train,
    validation and test perplexities of the final (best-validation) weights."""

    baselines: list[Baseline]
    train_tokens: int
    val_tokens: int
    test_tokens: int
    epochs: list[EpochRecord] = field(default_factory=list)
    stopped_early: bool = False
    train_perplexity: float = math.nan
    val_perplexity: float = math.nan
    test_perplexity: float = math.nan
    #: the model interpolated with each Kneser-Ney baseline (weight chosen on validation), reported apart
    mixtures: list[Baseline] = field(default_factory=list)


def train_model(model: NextTokenModel, split: Split, *, epochs: int = 20, batch_size: int = 128,
                optimizer: str | Optimizer = "adam", lr: float | None = 1e-3, seed: int = 0,
                patience: int = 2, lr_decay: float = 0.5, progress: bool | None = None, fast: bool = True,
                history: Sequence[dict[str, float]] = (), compare: bool = True,
                on_epoch: Callable[[EpochRecord, TextRun], None] | None = None) -> TextRun:
    """Train on ``split``'s training text with early stopping on its validation text; score its test text once.

    Epoch e shuffles with ``default_rng([seed, e])`` and draws dropout masks from
    ``default_rng([seed, e, 1])``, so a run resumed after the epochs in
    ``history`` (records from :meth:`EpochRecord.as_dict`, with its optimizer state
    and the weights it saved) ends with the weights of an uninterrupted one.
    ``optimizer`` is a name (with ``lr``) or an :class:`~nnxp.optim.Optimizer`
    instance, whose state carries over.  Each step is the network's
    ``train_step`` on the backend's executor (``fast``: its fast path, else the
    reference); the targets become one-hot rows one batch at a time.
    ``compare``: count and score the n-gram baselines (:func:`~nnxp.text.baselines.baselines`).
    """
    if not 0.0 < lr_decay <= 1.0:
        raise ConfigError(f"lr_decay must be in (0, 1], got {lr_decay}")
    if patience < 1:
        raise ConfigError(f"patience must be at least 1 epoch, got {patience}")
    k, vocabulary = model.embedding.context, model.embedding.vocabulary_size
    if int(split.stream.max()) >= vocabulary or int(split.stream.min()) < 0:
        raise DataError(f"token ids must be in [0, {vocabulary}), the model's vocabulary")
    parts = {part: split.contexts(part, k) for part in ("train", "val", "test")}
    run = TextRun(baselines(split, vocabulary) if compare else [], *(len(parts[p][1]) for p in parts))
    optimizer = get_optimizer(optimizer, lr)
    backend, xp = model.backend, model.net.xp
    ops = ops_for(backend, fast)
    ids = backend.index_dtype
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = (
        (backend.asarray(x, ids), backend.asarray(y, ids)) for x, y in parts.values())
    n = run.train_tokens
    best = min((r["val_perplexity"] for r in history), default=math.inf)
    stale = 0
    for r in history:
        stale = 0 if r.get("improved") else stale + 1
    if history:
        optimizer.lr = float(history[-1]["next_lr"])
    show = sys.stderr.isatty() if progress is None else progress
    best_params = [xp.asarray(p, copy=True) for p in model.parameters()]
    done = [dict(r) for r in history]  # the records so far, for the divergence rule
    first = None
    for epoch in range(len(history) + 1, epochs + 1):
        if stale >= patience:
            run.stopped_early = True
            break
        start = time.perf_counter()
        order = backend.asarray(np.random.default_rng([seed, epoch]).permutation(n), ids)
        rng = np.random.default_rng([seed, epoch, 1]) if model.net.has_randomness else None
        total = None
        bar = _progress_bar(epoch, epochs, n) if show else None
        with backend.context():
            # A diverging run overflows; that is reported once, below, not as NumPy warnings.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                for lo in range(0, n, batch_size):
                    batch = order[lo:min(lo + batch_size, n)]
                    bx = ops.take_rows(x_train, batch, "x")
                    by = model.one_hot(ops.take_rows(y_train, batch, "y"))
                    cost, _ = model.net.train_step(bx, by, optimizer, ops, rng=rng)
                    if first is None:
                        first = cost * 1.0  # the run's first batch loss (a copy), read after the epoch
                    part = cost * float(batch.shape[0])
                    total = part if total is None else total + part
                    if bar is not None:
                        bar.update(min(lo + batch_size, n), total)
                loss = float(total) / n
            if bar is not None:
                bar.close()
                bar = None
            record = {"epoch": epoch, "loss": loss}
            first_loss = float(first) if first is not None and not done else None
            check_epoch(model.net, optimizer, record, done, first_loss)  # one line (DivergenceError) if diverged
            val = model.perplexity(x_val, y_val, ops=ops)
            if not math.isfinite(val):
                raise DivergenceError(f"training diverged in epoch {epoch}: the validation perplexity is {val}; "
                                      f"the learning rate ({optimizer.lr:g}) is probably too high, try a lower one")
            used = optimizer.lr
            improved = val < best
            if improved:
                best, stale = val, 0
                best_params = [xp.asarray(p, copy=True) for p in model.parameters()]
            else:  # back to the best weights, with a smaller step and a fresh optimizer state
                model.set_parameters([xp.asarray(p, copy=True) for p in best_params])
                _restart(optimizer, model.parameters())
                optimizer.lr = used * lr_decay
                stale += 1
        record = EpochRecord(epoch, loss, val, improved, used, optimizer.lr, time.perf_counter() - start)
        run.epochs.append(record)
        done.append(record.as_dict())
        if on_epoch is not None:
            on_epoch(record, run)
    else:
        run.stopped_early = stale >= patience
    with backend.context():
        run.train_perplexity = model.perplexity(x_train, y_train, ops=ops)
        logs = {"val": model.log_probs(x_val, y_val, ops=ops),
                "test": model.log_probs(x_test, y_test, ops=ops)}  # the one look at the test text
    run.val_perplexity, run.test_perplexity = perplexity(logs["val"]), perplexity(logs["test"])
    run.mixtures = [mixture(logs, b) for b in run.baselines
                    if b.log_probs and all(len(b.log_probs[p]) == len(logs[p]) for p in logs)]
    return run


def _restart(optimizer: Optimizer, params: Sequence[Any]) -> None:
    """Zero the optimizer's state (moments, step count) and bind it to ``params``: what a checkpoint
    then stores, so a run resumed after a restore continues exactly as an uninterrupted one."""
    optimizer.reset()
    optimizer.rebind(params, {name: [array_namespace(p).zeros_like(p) for p in params]
                              for name in optimizer.buffers})


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
