"""The training loop: mini-batch fitting, evaluation, history and checkpoints.

Device discipline (what makes ``--device cuda`` fast, and what the tests on
array-api-strict's non-default device enforce):

- the data is moved to the network's device once, by :func:`fit`;
- each epoch's shuffle is a permutation drawn on the host from
  ``numpy.random.default_rng([seed, epoch])`` and moved over once, so a run
  resumed at epoch e shuffles exactly as an uninterrupted run would;
- mini-batches are gathered on the device;
- the epoch's loss and correct count are summed on the device and read once,
  at the end of the epoch.  The only other reads are the progress bar's,
  at most twice a second and only when a bar is shown.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from .backend import to_numpy
from .divergence import PROBE_ROWS, check_epoch
from .errors import ConfigError
from .kernels import ArrayAPIOps, EpochTotals, ops_for
from .optim import Optimizer, _positive, get_optimizer
from .split import stratified_split
from .threads import thread_limit
from .trainable import Trainable
from .validation import count_correct, nonnegative_int, positive_int

__all__ = ["fit", "evaluate", "History", "Callback", "count_correct", "SCHEDULES"]


@dataclass
class History:
    """Per-epoch records: ``epoch`` (1-based), ``loss``, ``accuracy``, ``val_loss``,
    ``val_accuracy`` (when validation data is given), ``seconds`` (whole epoch)
    and ``samples_per_second`` (training phase)."""

    records: list[dict[str, float]] = field(default_factory=list)

    def __getitem__(self, key: str) -> list[float]:
        return [r[key] for r in self.records if key in r]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def last(self) -> dict[str, float]:
        return self.records[-1] if self.records else {}


class Callback:
    """Hooks called by :func:`fit`; subclass and override what you need."""

    def on_epoch_end(self, net: Trainable, optimizer: Optimizer, record: dict[str, float],
                     history: History) -> None:
        pass

    def summary(self) -> str | None:
        """A line :func:`fit` prints after the last epoch when verbose (e.g. why training
        stopped early); None for none."""
        return None


def fit(
    net: Trainable,
    x: Any,
    y: Any,
    *,
    epochs: int = 20,
    batch_size: int = 32,
    optimizer: str | Optimizer = "adam",
    lr: float | None = None,
    schedule: str = "constant",
    validation_data: tuple[Any, Any] | None = None,
    validation_split: float = 0.0,
    shuffle: bool = True,
    seed: int = 0,
    initial_epoch: int = 0,
    history: History | None = None,
    callbacks: Iterable[Callback] = (),
    verbose: int = 1,
    progress: bool | None = None,
    fast: bool = True,
    threads: int | str | None = None,
    cuda_graphs: bool = True,
    blas: str | None = None,
    out: Callable[[str], None] | None = None,
    distributed: Any = None,
) -> History:
    """Train ``net`` on ``(x, y)`` with mini-batch gradient descent.

    Parameters
    ----------
    x : (N, n_0) inputs; y : (N,) integer class labels or (N, n_L) targets.
        Arrays of any supported library; they are moved to the network's
        device once.
    epochs : train until this many epochs are done (counting ``initial_epoch``).
        The defaults (20 epochs, batch 32, Adam 1e-3) are ``nnxp train``'s.
    batch_size : samples per step; the last batch of an epoch may be smaller.
    optimizer : an :class:`~nnxp.optim.Optimizer` or a name (``sgd``,
        ``momentum``, ``nesterov``, ``adam``, ``adamw``) with learning rate ``lr``
        (default: the optimizer's, 1e-3 for Adam).
    schedule : ``"constant"``, or ``"cosine"``: epoch e (0-based) of E trains
        with ``lr * (1 + cos(pi e / E)) / 2``, ending near zero.
    validation_data : optional ``(x_val, y_val)`` evaluated after each epoch
        (records ``val_loss``, ``val_accuracy``).
    validation_split : instead, hold out this fraction of ``(x, y)``,
        stratified by class and seeded by ``seed`` (:mod:`nnxp.split`).
    seed : seeds the shuffles (epoch e uses ``default_rng([seed, e])``).
    initial_epoch : epochs already done (to resume from a checkpoint).
    verbose : 1 prints one summary line per epoch; 0 prints nothing.
    progress : show a progress bar per epoch (default: when verbose and
        stderr is a terminal).
    fast : use the backend's fast path (buffers, in-place, fused kernels).
    threads : CPU threads for the matrix products (None: the measured
        default of :mod:`nnxp.threads`).
    callbacks : objects with ``on_epoch_end(net, optimizer, record, history)``
        (:class:`Callback`, :class:`~nnxp.callbacks.EarlyStopping`, ...), called
        in order after each epoch, before its line is printed (so they may add
        values to ``record``); one that sets ``net.stop_training = True`` ends
        training after that epoch.  When verbose, the line a callback's
        ``summary()`` returns is printed at the end (EarlyStopping: the epoch it
        stopped after and the best epoch, whose weights are restored).
    cuda_graphs : on CuPy, replay each full-batch step as a CUDA graph (the fused
        step; ``NNXP_CUDA_GRAPHS=0`` also turns this off).
    blas : NumPy only: the BLAS library for the products, ``"auto"`` (calibrated
        once per machine and shape, see :mod:`nnxp.kernels.blas.choice`),
        ``"openblas"`` (NumPy's own) or ``"mkl"`` (``pip install 'nnxp[mkl]'``);
        None: the process setting (:func:`nnxp.set_blas`, default ``auto``).
    distributed : a :class:`~nnxp.distributed.DataParallel` (from
        ``nnxp.distributed.init()`` under ``mpiexec``): this process trains on
        its share of every global batch of ``batch_size`` rows, gradients are
        averaged over the ranks before each update, and only rank 0 prints.
        Callbacks run on every rank (write files where ``distributed.is_root``).

    Returns
    -------
    History
        the :class:`History` (``history`` extended, if given).

    Raises
    ------
    DivergenceError
        when an epoch diverges (a NaN
        or infinite loss, parameter or optimizer state, or a loss exploding
        relative to its start: the rule is in :mod:`nnxp.divergence`), before
        that epoch's callbacks run, so a checkpoint callback never saves a
        diverged network; the network then holds the diverged weights.
    """
    epochs, batch_size = positive_int("epochs", epochs), positive_int("batch_size", batch_size)
    initial_epoch = nonnegative_int("initial_epoch", initial_epoch)
    seed = nonnegative_int("seed", seed)  # not None: shuffles must repeat for a resumed run
    if isinstance(optimizer, str):
        optimizer = get_optimizer(optimizer, lr=lr)
    elif not isinstance(optimizer, Optimizer):
        raise ConfigError(f"optimizer must be a name (sgd, momentum, nesterov, adam, adamw) or an "
                          f"nnxp Optimizer, got {type(optimizer).__name__}")
    elif lr is not None:
        optimizer.lr = optimizer.initial_lr = _positive("learning rate", lr)
    if not isinstance(schedule, str) or schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {schedule!r}: choose one of {', '.join(SCHEDULES)}")
    x = net.inputs(x)
    y = net.targets(y, x.shape[0])
    val = None
    if validation_data is not None and validation_split:
        raise ConfigError("give validation_data or validation_split, not both")
    if validation_data is not None:
        xv = net.inputs(validation_data[0], "validation x")
        val = (xv, net.targets(validation_data[1], xv.shape[0], "validation y"))
    elif validation_split:
        x, y, val = _hold_out(net, x, y, validation_split, seed)
    n = x.shape[0]
    probe = x[:min(n, PROBE_ROWS), ...]  # its outputs must stay finite (nnxp.divergence, rule 3)
    history = history if history is not None else History()
    callbacks = list(callbacks)
    out = out or print
    reduce = None  # data-parallel: averages each step's gradients over the ranks
    if distributed is not None:
        reduce = distributed.prepare(net, optimizer, settings={  # every rank must run the same loop
            "epochs": epochs, "batch_size": batch_size, "seed": seed, "schedule": schedule, "shuffle": shuffle,
            "initial_epoch": initial_epoch, "training rows": n, "validation rows": val and val[0].shape[0]})
        verbose, progress = (verbose, progress) if distributed.is_root else (0, False)
    if progress is None:
        progress = bool(verbose) and (sys.stderr.isatty() or _in_notebook())

    backend = net.backend
    ops = ops_for(backend, fast=fast, cuda_graphs=cuda_graphs, blas=blas)
    index_dtype = backend.index_dtype
    steps = math.ceil(n / batch_size)
    first_cost = None  # the run's first batch loss (before any update): divergence.check_epoch's reference
    run_started = time.perf_counter()
    net.stop_training = False
    # CPU threads: nnxp.threads' choice, unless data-parallel ranks already share the cores.
    threads_ = (thread_limit(threads, batch_size, net.sizes, backend) if distributed is None or threads is not None
                else contextlib.nullcontext())
    with backend.context(), threads_:  # CuPy: run on the network's GPU
        for epoch in range(initial_epoch, epochs):
            started = time.perf_counter()
            optimizer.lr = optimizer.initial_lr * SCHEDULES[schedule](epoch, epochs)
            order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
            order = backend.asarray(order, index_dtype)
            totals = EpochTotals.zeros(backend, net.dtype)  # the batches' loss and hits, on the device
            key = [seed, epoch, 1] + ([distributed.rank] if distributed is not None else [])
            rng = np.random.default_rng(key) if net.has_randomness else None  # dropout
            eta = _run_eta(run_started, epoch - initial_epoch, epochs - epoch)
            bar = _ProgressBar(epoch + 1, epochs, n, eta) if progress else None
            # A diverging run overflows; that is reported once, below, not as NumPy warnings.
            with np.errstate(over="ignore", invalid="ignore"):
                for step in range(steps):
                    lo, hi = step * batch_size, min(n, (step + 1) * batch_size)
                    index, rows = order[lo:hi], hi - lo
                    if distributed is not None:
                        index, rows = distributed.shard(index)  # this rank's rows (0: a stand-in)
                    cost, _ = ops.train_batch(net, x, y, index, optimizer, rng=rng, reduce=reduce,
                                              totals=totals if rows else None)
                    if first_cost is None and not history.records:  # the first batch's loss, before any update
                        first_cost = cost * 1.0 if cost is not None else totals.loss * (1.0 / rows)  # copies
                    if backend.lazy:  # dask: evaluate the step now, or the graph grows all epoch
                        totals.loss, totals.correct = _materialise(backend, net, optimizer, totals.loss,
                                                                   totals.correct)
                    if bar is not None:
                        bar.update(hi, totals.loss)
                if distributed is not None:
                    totals.loss, totals.correct = distributed.reduce_sums(totals.loss, totals.correct)
                loss = float(totals.loss) / n  # the epoch's one read of training results
                accuracy = int(totals.correct) / n
                train_seconds = time.perf_counter() - started
                if bar is not None:
                    bar.close()
                record: dict[str, float] = {"epoch": epoch + 1, "loss": loss, "accuracy": accuracy}
                if val is not None:
                    evaluate_ = distributed.evaluate if distributed is not None else _evaluate_on_device
                    record.update(evaluate_(net, *val, prefix="val_"))
            record["seconds"] = time.perf_counter() - started
            record["samples_per_second"] = n / train_seconds
            # Before the callbacks, so a diverged network is never checkpointed.
            check_epoch(net, optimizer, record, history.records,
                        float(first_cost) if first_cost is not None and not history.records else None,
                        probe=probe)
            history.records.append(record)
            for callback in callbacks:  # may add to the record (test_loss, ...) or stop training
                callback.on_epoch_end(net, optimizer, record, history)
            if verbose:
                left = 0 if net.stop_training else epochs - epoch - 1
                out(format_record(record, epochs, _run_eta(run_started, epoch + 1 - initial_epoch, left)))
            if net.stop_training:
                break
    if verbose:  # e.g. EarlyStopping: the epoch it stopped after, and the weights kept
        for callback in callbacks:
            line = getattr(callback, "summary", lambda: None)()
            if line:
                out(line)
    return history


def _hold_out(net: Trainable, x: Any, y: Any, fraction: float, seed: int) -> tuple[Any, Any, tuple[Any, Any]]:
    """(x_train, y_train, (x_val, y_val)): a stratified ``fraction`` of (x, y) held out.

    Classes are read from the targets once (argmax, or >= 0.5 for one
    output), on the host; the rows are gathered on the device.
    """
    xp = net.xp
    classes = y[:, 0] >= 0.5 if y.shape[1] == 1 else xp.argmax(y, axis=1)
    keep, held = stratified_split(to_numpy(classes), fraction, seed)
    keep, held = (net.backend.asarray(i, net.backend.index_dtype) for i in (keep, held))
    return (xp.take(x, keep, axis=0), xp.take(y, keep, axis=0),
            (xp.take(x, held, axis=0), xp.take(y, held, axis=0)))


SCHEDULES: dict[str, Callable[[int, int], float]] = {
    "constant": lambda epoch, epochs: 1.0,
    "cosine": lambda epoch, epochs: 0.5 * (1.0 + math.cos(math.pi * epoch / epochs)),
}


def evaluate(net: Trainable, x: Any, y: Any, batch_size: int = 4096,
             ops: ArrayAPIOps | None = None) -> dict[str, float]:
    """{"loss": mean cost, "accuracy": fraction correct} over all of (x, y).

    Runs ``batch_size`` rows at a time; sums stay on the device and are read once.
    """
    batch_size = positive_int("batch_size", batch_size)
    x = net.inputs(x)
    y = net.targets(y, x.shape[0])
    with net.backend.context():
        return _evaluate_on_device(net, x, y, batch_size, ops)


def _evaluate_on_device(net: Trainable, x: Any, y: Any, batch_size: int = 4096,
                        ops: ArrayAPIOps | None = None, prefix: str = "") -> dict[str, float]:
    """:func:`evaluate` for inputs and targets already checked and on the device."""
    n = x.shape[0]
    xp = net.xp
    ops = ops or ArrayAPIOps()
    index_dtype = net.backend.index_dtype
    loss_sum = xp.zeros((), dtype=net.dtype, device=net.device)
    correct = xp.zeros((), dtype=index_dtype, device=net.device)
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        xb, yb = x[lo:hi, ...], y[lo:hi, ...]
        z, _ = net.forward_pass(xb, ops)
        a = net.output.forward(z)
        loss_sum = loss_sum + net.loss.value(net.output, z, a, yb) * float(xb.shape[0])
        correct = correct + count_correct(a, yb, index_dtype)
    return {prefix + "loss": float(loss_sum) / n, prefix + "accuracy": int(correct) / n}


def _materialise(backend: Any, net: Trainable, optimizer: Optimizer, *others: Any) -> list[Any]:
    """Compute a lazy backend's pending work for the parameters, optimizer state and ``others``."""
    params = net.parameters()
    names = list(optimizer.state)
    state = [a for name in names for a in optimizer.state[name]]
    done = backend.persist([*params, *state, *others])
    new_params, start, new_state = done[:len(params)], len(params), {}
    for name in names:
        count = len(optimizer.state[name])
        new_state[name] = done[start:start + count]
        start += count
    net.set_parameters(new_params)
    optimizer.rebind(new_params, new_state)
    return done[start:]


def _run_eta(started: float, done: int, left: int) -> float | None:
    """Seconds the ``left`` epochs of this run will take at the pace of the ``done`` ones."""
    if done <= 0:
        return None
    return (time.perf_counter() - started) / done * left


def _clock(seconds: float) -> str:
    """``1:05`` or ``1:02:03``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_record(record: dict[str, float], epochs: int, eta: float | None = None) -> str:
    """One summary line per epoch, e.g. ``epoch  3/10  loss 0.2345  acc 93.21% ...``;
    with ``eta`` (seconds for the rest of the run) it ends in ``ETA m:ss``."""
    width = len(str(epochs))
    parts = [f"epoch {int(record['epoch']):>{width}}/{epochs}",
             f"loss {record['loss']:.4f}", f"acc {100 * record['accuracy']:6.2f}%"]
    for prefix, name in (("val_", "val"), ("test_", "test")):
        if prefix + "loss" in record:
            parts += [f"{name} loss {record[prefix + 'loss']:.4f}",
                      f"{name} acc {100 * record[prefix + 'accuracy']:6.2f}%"]
    parts += [f"{record['seconds']:.1f}s", f"{record['samples_per_second']:,.0f} samples/s"]
    if eta:
        parts.append(f"ETA {_clock(eta)}")
    return "  ".join(parts)


def _in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (where tqdm.auto draws a widget)."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


class _ProgressBar:
    """A tqdm bar for one epoch (a widget in notebooks, via tqdm.auto); reads the
    running loss at most twice a second.  ``eta``: the run's remaining seconds."""

    def __init__(self, epoch: int, epochs: int, total: int, eta: float | None = None):
        from tqdm.auto import tqdm

        desc = f"epoch {epoch}/{epochs}" + (f" (run ETA {_clock(eta)})" if eta else "")
        self._bar = tqdm(total=total, desc=desc, unit="sample",
                         unit_scale=True, leave=False, file=sys.stderr, dynamic_ncols=True)
        self._last_read = 0.0
        self._done = 0

    def update(self, done: int, loss_sum: Any) -> None:
        self._bar.update(done - self._done)
        self._done = done
        now = time.perf_counter()
        if now - self._last_read >= 0.5:
            self._last_read = now
            self._bar.set_postfix(loss=f"{float(loss_sum) / done:.4f}", refresh=False)

    def close(self) -> None:
        self._bar.close()
