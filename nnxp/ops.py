"""The array operations of a training step: one generic path, backend fast paths.

:class:`ArrayAPIOps` is the reference: plain Array-API expressions that return
new arrays, correct on every backend.  A fast path subclasses it and computes
the *same* maths into preallocated buffers or in place:

- :class:`NumPyOps` uses ``out=`` for every matrix product (transposes are
  passed to BLAS as flags, never copied) and updates activations in place.
- ``nnxp._cupy_ops.CuPyOps`` (GPU only) adds fused elementwise kernels
  (opt-in with ``NNXP_CUPY_FUSED=1`` until they have been checked on a GPU).

Buffers are keyed by a role and layer, e.g. ``("z", 0)``, and reused while
shapes allow.  An array a fast path returns is only valid until the next call
with the same key, so fast ops are for the training loop's own use; the
public API (``Network.forward``, ``Network.gradients``) uses the generic path.
The test-suite checks that both paths give the same numbers.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, NamedTuple

import numpy as np
from array_api_compat import array_namespace

from ._blas import available as blas_available
from ._blas import gemm_tn_into
from .activations import Activation
from .backend import EMULATED_CUPY, Backend

__all__ = ["ArrayAPIOps", "BufferedOps", "NumPyOps", "ops_for"]


class ArrayAPIOps:
    """Layer maths as plain Array-API expressions (batch is rows, W is (out, in))."""

    name = "array_api"

    def linear(self, x: Any, w: Any, b: Any, key: Hashable) -> Any:
        """z = x W^T + b: (B, in) -> (B, out)."""
        return x @ w.T + b

    def activate(self, act: Activation, z: Any) -> Any:
        """a = f(z) for a hidden layer; fast paths may overwrite ``z``."""
        return act.forward(z)

    def linear_activate(self, x: Any, w: Any, b: Any, act: Activation, key: Hashable) -> Any:
        """a = f(x W^T + b) for a hidden layer (fast paths fuse the bias and f)."""
        return self.activate(act, self.linear(x, w, b, key))

    def activation_backward(self, act: Activation, a: Any, g: Any) -> Any:
        """dC/dz = f'(z) * g from the layer output ``a``; fast paths may overwrite ``g``."""
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

    def take_rows(self, x: Any, index: Any, key: Hashable) -> Any:
        """x[index] along the first axis (a mini-batch gathered on the device)."""
        return array_namespace(x).take(x, index, axis=0)

    def optimizer_update(self, optimizer: Any) -> Callable[[Any, Any, dict[str, Any]], None] | None:
        """A fused in-place update ``f(p, g, state)`` for ``optimizer``, or None for its own."""
        return None

    def loss_forward(self, loss: Any, output: Activation, z: Any, y: Any) -> tuple[Any, Any, Any]:
        """(a_L, batch cost, dC/dz_L) for the output layer (see ``Loss.forward``)."""
        return loss.forward(output, z, y)


class WeightGradient(NamedTuple):
    """dC/dW = delta^T a_prev, not yet multiplied out.

    With plain SGD (or heavy-ball momentum) :class:`NumPyOps` hands this to the
    update, which computes the product and the update in one BLAS call
    (:func:`nnxp._blas.gemm_tn_into`).  ``delta`` and ``a_prev`` are the step's
    own buffers, valid until the update has run.
    """

    delta: np.ndarray
    a_prev: np.ndarray

    def materialise(self) -> np.ndarray:
        return self.delta.T @ self.a_prev


class BufferedOps(ArrayAPIOps):
    """Base of the fast paths: reusable output arrays, keyed by role and layer."""

    def __init__(self) -> None:
        self._buffers: dict[Hashable, Any] = {}

    def _empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        raise NotImplementedError

    def buffer(self, key: Hashable, shape: tuple[int, ...], dtype: Any) -> Any:
        """A reusable (uninitialised) array; a smaller batch gets a leading slice."""
        buf = self._buffers.get(key)
        if buf is None or buf.dtype != dtype or buf.shape[1:] != shape[1:] or buf.shape[0] < shape[0]:
            buf = self._empty(shape, dtype)
            self._buffers[key] = buf
        return buf[: shape[0]] if buf.shape[0] != shape[0] else buf


class NumPyOps(BufferedOps):
    """The same maths for NumPy, into reused buffers and in place.

    ``fold_sgd=True`` (for :func:`ops_for` with an SGD optimizer and NumPy's
    own OpenBLAS available) returns weight gradients as :class:`WeightGradient`
    for the SGD update to fold into one GEMM.
    """

    name = "numpy"

    def __init__(self, fold_sgd: bool = False) -> None:
        super().__init__()
        self.fold_sgd = fold_sgd

    def _empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def linear(self, x, w, b, key):
        out = self.buffer(key, (x.shape[0], w.shape[0]), x.dtype)
        np.matmul(x, w.T, out=out)
        out += b
        return out

    def activate(self, act, z):
        name = act.name
        if name == "relu":
            return np.maximum(z, 0.0, out=z)
        if name == "leaky_relu":
            return np.maximum(z, act.alpha * z, out=z)  # max(z, alpha z), 0 <= alpha < 1
        if name == "tanh":
            return np.tanh(z, out=z)
        if name == "identity":
            return z
        return act.forward(z)

    def activation_backward(self, act, a, g):
        # Masked writes (np.copyto/np.multiply with where=, np.where) are ~10x slower
        # in NumPy than multiplying by a 0/1 (or alpha/1) factor, so multiply.  (A NaN
        # in g then stays NaN where the generic path writes 0; training has diverged then.)
        name = act.name
        if name == "relu":
            return np.multiply(g, a > 0, out=g)
        if name == "leaky_relu":
            factor = self.buffer(("leaky_factor",), g.shape, g.dtype)
            np.sign(a, out=factor)                     # -1, 0 or 1
            np.maximum(factor, act.alpha, out=factor)  # alpha where a <= 0, else 1
            return np.multiply(g, factor, out=g)
        if name == "tanh":
            g *= 1.0 - a * a
            return g
        if name == "sigmoid":
            g *= a * (1.0 - a)
            return g
        if name == "identity":
            return g
        return act.backward(a, g)

    def weight_grad(self, delta, a_prev, key):
        if self.fold_sgd:
            return WeightGradient(delta, a_prev)
        out = self.buffer(key, (delta.shape[1], a_prev.shape[1]), delta.dtype)
        return np.matmul(delta.T, a_prev, out=out)

    def bias_grad(self, delta, key):
        # ones^T delta: BLAS sums the columns about 3x faster than np.sum(axis=0).
        out = self.buffer(key, (delta.shape[1],), delta.dtype)
        ones = self._ones(delta.shape[0], delta.dtype)
        return np.matmul(ones, delta, out=out)

    def _ones(self, n: int, dtype: Any) -> np.ndarray:
        ones = self._buffers.get(("ones", dtype))
        if ones is None or ones.shape[0] < n:
            ones = np.ones(n, dtype=dtype)
            self._buffers[("ones", dtype)] = ones
        return ones[:n]

    def input_grad(self, delta, w, key):
        out = self.buffer(key, (delta.shape[0], w.shape[1]), delta.dtype)
        return np.matmul(delta, w, out=out)

    def take_rows(self, x, index, key):
        out = self.buffer(key, (index.shape[0],) + tuple(x.shape[1:]), x.dtype)
        return np.take(x, index, axis=0, out=out)

    def loss_forward(self, loss, output, z, y):
        if loss.name != "cross_entropy" or output.name != "softmax":
            return loss.forward(output, z, y)
        # CrossEntropy.forward for softmax, in plain NumPy calls: on a (B, 10) output
        # the Array-API wrappers' overhead is most of the cost.
        shifted = z - z.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        a = e / s
        scale = 1.0 / z.shape[0]
        cost = np.asarray(-np.vdot(y, shifted - np.log(s)) * scale)
        delta = a - y
        delta *= scale
        return a, cost, delta

    def optimizer_update(self, optimizer):
        """In-place updates that reuse the gradient buffer as scratch (no temporaries).

        Only for the training loop, whose gradients are this object's own buffers.
        """
        update = _NUMPY_UPDATES.get(optimizer.name)
        return (lambda p, g, state: update(optimizer, p, g, state)) if update else None


def _sgd_update(opt, p, g, state):
    if isinstance(g, WeightGradient):
        _folded_sgd_update(opt, p, g, state)
        return
    if opt.weight_decay:
        g += opt.weight_decay * p
    if opt.momentum:
        v = state["velocity"]
        v *= opt.momentum
        v += g                                   # v = mu v + g
        if opt.nesterov:
            g += opt.momentum * v                # g + mu v
        else:
            np.copyto(g, v)
    g *= -opt.lr
    p += g


def _folded_sgd_update(opt, p, g: WeightGradient, state):
    """The SGD formulas with the weight gradient's product done by the update's GEMM."""
    if opt.momentum:  # v <- mu v + (dW + wd p);  p <- p - lr v   (heavy ball, not Nesterov)
        v = state["velocity"]
        v *= opt.momentum
        if opt.weight_decay:
            v += opt.weight_decay * p
        gemm_tn_into(v, g.delta, g.a_prev, alpha=1.0, beta=1.0)
        p -= opt.lr * v
    else:  # p <- p - lr (dW + wd p) = (1 - lr wd) p - lr dW
        gemm_tn_into(p, g.delta, g.a_prev, alpha=-opt.lr, beta=1.0 - opt.lr * opt.weight_decay)


def _adam_update(opt, p, g, state):
    if isinstance(g, WeightGradient):  # only SGD folds; be correct anyway
        g = g.materialise()
    if opt.weight_decay:
        if opt.decoupled:
            p *= 1.0 - opt.lr * opt.weight_decay
        else:
            g += opt.weight_decay * p
    m, v = state["m"], state["v"]
    m *= opt.beta1
    v *= opt.beta2
    g *= 1.0 - opt.beta1                         # g <- (1 - b1) g
    m += g                                       # m = b1 m + (1 - b1) g
    g *= g
    g *= (1.0 - opt.beta2) / (1.0 - opt.beta1) ** 2
    v += g                                       # v = b2 v + (1 - b2) g^2
    np.sqrt(v, out=g)
    g *= opt._inv_sqrt_bc2
    g += opt.eps                                 # sqrt(v_hat) + eps
    np.divide(m, g, out=g)
    g *= -opt._step_size
    p += g


_NUMPY_UPDATES = {"sgd": _sgd_update, "adam": _adam_update, "adamw": _adam_update}


def ops_for(backend: Backend, fast: bool = True, optimizer: Any = None) -> ArrayAPIOps:
    """The fastest correct ops for ``backend`` (the generic ones if ``fast`` is False).

    Given the ``optimizer`` the training loop will use, the ops may fold its
    update into the gradient computation (NumPy with SGD).
    """
    if fast and backend.name == "numpy":
        fold = (optimizer is not None and optimizer.name == "sgd" and not optimizer.nesterov
                and blas_available())
        return NumPyOps(fold_sgd=fold)
    if fast and backend.name == "cupy":
        from ._cupy_ops import CuPyOps, fused_enabled

        if fused_enabled():
            return CuPyOps()
    if fast and backend.name == EMULATED_CUPY:  # the CuPy fast path on the CPU EMULATION of CuPy
        from ._cupy_emulation import cupy as emulated_cupy
        from ._cupy_ops import CuPyOps

        return CuPyOps(emulated_cupy)
    return ArrayAPIOps()
