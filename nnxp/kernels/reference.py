"""The reference executor: each step of training as plain Array-API expressions.

:class:`ArrayAPIOps` runs the formulas of :mod:`nnxp.activations`,
:mod:`nnxp.losses` and :mod:`nnxp.optim` exactly as they are written there:
every operation returns a new array, nothing is changed in place, so it is
correct on every Array API library (JAX, dask and ndonnx included).  A
backend fast path (:mod:`nnxp.kernels.numpy`, :mod:`nnxp.kernels.cupy`)
subclasses it and runs the *same* formulas into preallocated buffers, in
place or fused, for the classes it has an entry for — looked up by exact
type, so a user's subclass runs its own formula here.

Conventions: a batch is rows; W is (out, in); ``key`` names a buffer a fast
path may reuse (role and layer, e.g. ``("z", 0)``), and the reference ignores it.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Sequence

from array_api_compat import array_namespace

from ..validation import count_correct

__all__ = ["ArrayAPIOps", "EpochTotals"]


class EpochTotals:
    """An epoch's running sums on the device: ``loss`` (the batches' cost times their rows,
    0-d, the network's dtype) and ``correct`` (rows classified right, 0-d, the index dtype).

    The training loop reads them once per epoch.  Executors add each batch to them
    (:meth:`ArrayAPIOps.accumulate`); the fused CuPy step adds inside its loss kernel,
    so they are updated in place there and rebound here.
    """

    __slots__ = ("loss", "correct")

    def __init__(self, loss: Any, correct: Any) -> None:
        self.loss, self.correct = loss, correct

    @classmethod
    def zeros(cls, backend: Any, dtype: Any) -> "EpochTotals":
        return cls(backend.zeros((), dtype), backend.zeros((), backend.index_dtype))


class ArrayAPIOps:
    """Layer maths as plain Array-API expressions (batch is rows, W is (out, in))."""

    name = "array_api"

    # -- a dense layer -------------------------------------------------------------
    def linear(self, x: Any, w: Any, b: Any, key: Hashable) -> Any:
        """z = x W^T + b: (B, in) -> (B, out)."""
        return x @ w.T + b

    def activate(self, act: Any, z: Any) -> Any:
        """a = f(z); fast paths may overwrite ``z``."""
        return act.forward(z)

    def linear_activate(self, x: Any, w: Any, b: Any, act: Any, key: Hashable) -> Any:
        """a = f(x W^T + b) for a hidden layer (fast paths fuse the bias and f)."""
        return self.activate(act, self.linear(x, w, b, key))

    def activation_backward(self, act: Any, a: Any, g: Any) -> Any:
        """dC/dz = g * f'(z) from the layer output ``a``; fast paths may overwrite ``g``."""
        return act.backward(a, g)

    def weight_grad(self, delta: Any, a_prev: Any, key: Hashable) -> Any:
        """dC/dW = delta^T a_prev: (out, B) @ (B, in) -> (out, in)."""
        return delta.T @ a_prev

    def bias_grad(self, delta: Any, key: Hashable) -> Any:
        """dC/db = sum of delta over the batch: (out,)."""
        return array_namespace(delta).sum(delta, axis=0)

    def input_grad(self, delta: Any, w: Any, key: Hashable) -> Any:
        """dC/da_prev = delta W: (B, out) @ (out, in) -> (B, in)."""
        return delta @ w

    # -- data, loss, update --------------------------------------------------------
    def take_rows(self, x: Any, index: Any, key: Hashable) -> Any:
        """x[index] along the first axis (a mini-batch gathered on the device)."""
        return array_namespace(x).take(x, index, axis=0)

    def loss_forward(self, loss: Any, output: Any, z: Any, y: Any) -> tuple[Any, Any, Any]:
        """(a_L, batch cost, dC/dz_L) for the output layer (see ``Loss.forward``)."""
        return loss.forward(output, z, y)

    def optimizer_step(self, optimizer: Any, params: Sequence[Any], grads: Sequence[Any]) -> list[Any]:
        """The optimizer's own rule (new arrays); fast paths update in place and return ``params``."""
        return optimizer.step(params, grads)

    def accumulate(self, totals: EpochTotals, cost: Any, a: Any, y: Any) -> None:
        """Add a batch to the epoch's totals: its cost times its rows, and its correct rows."""
        totals.loss = totals.loss + cost * float(y.shape[0])
        totals.correct = totals.correct + count_correct(a, y, totals.correct.dtype)

    # -- a whole step --------------------------------------------------------------
    def train_batch(self, net: Any, x: Any, y: Any, index: Any, optimizer: Any, *, rng: Any = None,
                    reduce: Callable[[list[Any]], list[Any]] | None = None,
                    totals: EpochTotals | None = None) -> tuple[Any, Any]:
        """One training step on rows ``index`` of (x, y) (the whole data, on the device):
        gathers the batch, then :meth:`train_step`.  Returns (batch cost or None, outputs a_L)."""
        xb = self.take_rows(x, index, "x_batch")
        yb = self.take_rows(y, index, "y_batch")
        return net.train_step(xb, yb, optimizer, self, rng=rng, reduce=reduce, totals=totals)

    def train_step(self, net: Any, x: Any, y: Any, optimizer: Any, *, rng: Any = None,
                   reduce: Callable[[list[Any]], list[Any]] | None = None,
                   totals: EpochTotals | None = None) -> tuple[Any, Any]:
        """Backpropagate (x, y), optionally ``reduce`` the gradients (data-parallel
        averaging), update the parameters and rebind them in ``net``, and add the
        batch to ``totals`` if given.

        Returns (batch cost, outputs a_L) as device arrays: nothing is read back.
        (The fused CuPy step returns None for the cost: it went into ``totals``.)
        """
        cost, grads, a = net.backprop(x, y, self, rng=rng)
        if reduce is not None:
            grads = reduce(grads)
        net.set_parameters(self.optimizer_step(optimizer, net.parameters(), grads))
        if totals is not None:
            self.accumulate(totals, cost, a, y)
        return cost, a
