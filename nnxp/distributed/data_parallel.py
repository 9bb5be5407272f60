"""Data-parallel training: every rank holds the whole network and takes a share of each batch.

The maths (what makes N ranks give the numbers of one process):

- Every rank draws the same shuffle (``default_rng([seed, epoch])``) and cuts
  the same global batches of ``batch_size`` rows; rank r of N takes a
  contiguous slice of each: ``b_r`` rows, sizes differing by at most one.
- Its backward pass gives g_r, the mean gradient over its ``b_r`` rows.  The
  global batch's mean gradient is ``g = sum_r (b_r / B) g_r``, so each rank
  scales its g_r by ``b_r / B`` while flattening all its gradients into one
  contiguous buffer, and a single all-reduce (sum) of that buffer gives g on
  every rank.  This weighting is exact for a last batch that does not split
  evenly; a rank with no row (B < N) contributes zeros.
- Every rank then applies the same optimizer update to the same parameters
  with the same g: the replicas stay identical without further communication.
  (They start identical: the seed, and :meth:`DataParallel.prepare` broadcasts
  rank 0's parameters and optimizer state, as PyTorch DDP does.)
- Epoch metrics and the validation pass (each rank takes a contiguous slice
  of the validation set) are sums reduced once per epoch.

``batch_size`` is the *global* batch: results do not depend on N, and a run
checkpointed on N ranks resumes on any other number (Horovod and DDP instead
give the per-rank batch; multiply by N to compare).

One flat buffer, one all-reduce per step: with the all-reduce after the
whole backward pass, buckets would only add per-message latency.  Buckets pay
when they overlap the backward pass (start reducing layer L's gradients while
layer L-1's are computed), which needs a per-layer hook in the backward loop;
see benchmarks/README.md, "Scaling out", for when that matters.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
from array_api_compat import array_namespace, is_writeable_array

from ..errors import ConfigError
from .agree import check_agreement
from .faults import DEFAULT_TIMEOUT, Watchdog, install_excepthook

__all__ = ["DataParallel", "shard_bounds"]


def shard_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """[lo, hi) of rank's contiguous share of n rows (the first n mod size ranks get one more)."""
    q, rem = divmod(n, size)
    lo = rank * q + min(rank, rem)
    return lo, lo + q + (1 if rank < rem else 0)


class DataParallel:
    """What :func:`nnxp.train.fit` calls (``fit(..., distributed=dp)``) to train on N ranks:
    :meth:`prepare` once, :meth:`shard` and (as ``train_step``'s ``reduce``)
    :meth:`average_gradients` every step, :meth:`reduce_sums` and
    :meth:`evaluate` every epoch.

    Build it with :func:`nnxp.distributed.init` under ``mpiexec``, or from any
    :class:`~nnxp.distributed.comm.Communicator`.  ``timeout``: seconds one rank
    may wait in a collective before the job is stopped (0 disables the watchdog).
    """

    def __init__(self, comm: Any, timeout: float | None = None):
        self.comm = comm
        self.rank, self.size = int(comm.rank), int(comm.size)
        self.watchdog = Watchdog(comm, DEFAULT_TIMEOUT if timeout is None else timeout)
        install_excepthook(comm)
        self._weight = 1.0  # b_r / B of the current step
        #: host seconds spent in the gradient all-reduce, and how many (MPI: the whole
        #: collective, waiting for the slowest rank included; NCCL: only the enqueueing)
        self.allreduce_seconds, self.allreduce_calls = 0.0, 0
        self._flat: Any = None
        self._views: list[Any] = []
        self._layout: list[tuple[tuple[int, ...], str]] = []

    @property
    def is_root(self) -> bool:
        """True on rank 0, the one rank that prints, shows progress and writes files."""
        return self.rank == 0

    def __repr__(self) -> str:
        return f"DataParallel(rank {self.rank} of {self.size}, {getattr(self.comm, 'name', 'comm')})"

    # -- before training -------------------------------------------------------------
    def agree(self, settings: dict[str, Any], fix: str) -> None:
        """ConfigError on every rank unless all ranks have the same ``settings``
        (:func:`nnxp.distributed.agree.check_agreement`)."""
        with self.watchdog.watch("the start-up agreement check"):
            check_agreement(self.comm, settings, fix)
        self.watchdog.disarm()

    def prepare(self, net: Any, optimizer: Any,
                settings: dict[str, Any] | None = None) -> Callable[[Sequence[Any]], list[Any]]:
        """Make every rank start from rank 0's parameters and optimizer state.

        First every rank checks that all ranks have the same network
        description, optimizer settings, ``settings`` (``fit``'s: epochs,
        batch size, seed, ...) and the same shapes and dtypes of the arrays
        broadcast next (:meth:`agree`), so a mismatch is one ConfigError on
        every rank, never a broadcast into a buffer of another size.

        Returns the gradient reduction for ``Network.train_step(..., reduce=)``:
        :meth:`average_gradients`.
        """
        self._flat, self._views, self._layout = None, [], []  # this run's buffers are made on its first step
        layout = [[list(a.shape), str(a.dtype)] for a in net.parameters()]
        state = {name: [[list(a.shape), str(a.dtype)] for a in bufs] for name, bufs in optimizer.state.items()}
        self.agree({"the network": net.config(), "the optimizer": optimizer.config(), **(settings or {}),
                    "the parameter shapes": layout, "the optimizer state": state},
                   "build the same network and optimizer, and train with the same arguments, on every rank")
        self._broadcast(net.parameters(), "parameters")
        for name, buffers in optimizer.state.items():
            self._broadcast(buffers, f"optimizer state {name!r}")
        with self.watchdog.watch("the start-up broadcast"):
            optimizer.t = int(self.comm.allreduce_host([optimizer.t if self.is_root else 0])[0])
        self.watchdog.disarm()
        return self.average_gradients

    def _broadcast(self, arrays: Sequence[Any], what: str) -> None:
        """Rank 0's values into ``arrays``: written in place (so the optimizer's state
        still belongs to the same parameter arrays); arrays that cannot be written
        (JAX, dask) must already agree, as the same seed or checkpoint makes them."""
        if not arrays:
            return
        with self.watchdog.watch("the start-up broadcast"):
            root = self.comm.broadcast(self._flatten(arrays, 1.0, new=True), 0)
        if all(is_writeable_array(a) for a in arrays):
            for a, view in zip(arrays, self._unflatten(root, arrays)):
                a[...] = view
            return
        local = self._flatten(arrays, 1.0, new=True)
        differs = float(not bool(array_namespace(local).all(root == local)))
        with self.watchdog.watch("the start-up broadcast"):
            if self.comm.allreduce_host([differs])[0]:
                raise ConfigError(f"the ranks start from different {what}: give every rank the same "
                                  "seed (or the same checkpoint)")

    # -- each step ---------------------------------------------------------------------
    def shard(self, index: Any) -> tuple[Any, int]:
        """This rank's rows of one global batch ``index`` (B,): (their indices, how many).

        With no row for this rank (B < N) it returns one stand-in row and 0; the
        step's gradient is then weighted 0, and the caller counts no metrics for it.
        """
        self.watchdog.arm("a training step")  # a step that never ends: a peer hangs
        b = int(index.shape[0])
        lo, hi = shard_bounds(b, self.rank, self.size)
        self._weight = (hi - lo) / b
        if hi == lo:
            return index[:1], 0
        return index[lo:hi], hi - lo

    def average_gradients(self, grads: Sequence[Any]) -> list[Any]:
        """The global batch's mean gradients from this rank's (one all-reduce).

        ``grads`` are this rank's batch-mean gradients for the rows :meth:`shard`
        gave; the result (views into one flat buffer, valid until the next
        call) is the same on every rank.
        """
        flat = self._flatten(grads, self._weight)
        started = time.perf_counter()
        with self.watchdog.watch("the gradient all-reduce"):
            reduced = self.comm.allreduce_sum(flat)
        self.allreduce_seconds += time.perf_counter() - started
        self.allreduce_calls += 1
        if reduced is not flat:  # a library without in-place writes, or a host round trip
            self._flat, self._views = reduced, self._unflatten(reduced, grads)
        return self._views

    def _flatten(self, arrays: Sequence[Any], weight: float, new: bool = False) -> Any:
        """``weight`` * the arrays, concatenated into one flat buffer (reused between calls)."""
        xp = array_namespace(*arrays)
        layout = [(tuple(a.shape), str(a.dtype)) for a in arrays]
        flat = None if new else self._flat
        if flat is None or layout != self._layout or not is_writeable_array(flat):
            parts = [xp.reshape(a, (-1,)) for a in arrays]
            flat = xp.concat(parts) if len(parts) > 1 else xp.asarray(parts[0], copy=True)
            if weight != 1.0:
                flat = flat * weight
            if not new:
                self._flat, self._layout = flat, layout
                self._views = self._unflatten(flat, arrays)
            return flat
        offset = 0
        for a in arrays:
            n = _size(a)
            if isinstance(flat, np.ndarray):
                np.multiply(a.reshape(-1), weight, out=flat[offset:offset + n])
            else:
                flat[offset:offset + n] = xp.reshape(a, (n,))
            offset += n
        if weight != 1.0 and not isinstance(flat, np.ndarray):
            flat *= weight
        return flat

    @staticmethod
    def _unflatten(flat: Any, like: Sequence[Any]) -> list[Any]:
        xp = array_namespace(flat)
        views, offset = [], 0
        for a in like:
            n = _size(a)
            views.append(xp.reshape(flat[offset:offset + n], tuple(a.shape)))
            offset += n
        return views

    # -- each epoch --------------------------------------------------------------------
    def reduce_sums(self, loss_sum: Any, correct: Any) -> tuple[float, int]:
        """The epoch's summed loss and correct count over all ranks (this rank's are device arrays)."""
        with self.watchdog.watch("the epoch's metric all-reduce"):
            # The read waits for this rank's queued device work (with NCCL, its all-reduces).
            total = self.comm.allreduce_host([float(loss_sum), float(int(correct))])
        self.watchdog.disarm()  # the epoch's steps are done
        return total[0], int(round(total[1]))

    def evaluate(self, net: Any, x: Any, y: Any, prefix: str = "") -> dict[str, float]:
        """:func:`nnxp.train.evaluate`'s numbers, each rank evaluating a contiguous slice."""
        from ..train import _evaluate_on_device

        n = int(x.shape[0])
        lo, hi = shard_bounds(n, self.rank, self.size)
        sums = [0.0, 0.0]
        if hi > lo:
            part = _evaluate_on_device(net, x[lo:hi, ...], y[lo:hi, ...])
            sums = [part["loss"] * (hi - lo), part["accuracy"] * (hi - lo)]
        with self.watchdog.watch("the validation all-reduce"):
            total = self.comm.allreduce_host(sums)
        self.watchdog.disarm()
        return {prefix + "loss": total[0] / n, prefix + "accuracy": round(total[1]) / n}


def _size(a: Any) -> int:
    n = 1
    for s in a.shape:
        n *= int(s)
    return n
