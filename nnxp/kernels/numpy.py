"""The NumPy executor: the reference formulas into reused buffers, in place, through BLAS.

Each entry below runs one formula of :mod:`nnxp.activations`,
:mod:`nnxp.losses` or :mod:`nnxp.optim` with NumPy's ``out=`` arguments and
in-place operators, and is registered by the formula's exact class: a class
without an entry (a user's subclass included) runs the reference.
``tests/test_kernels.py`` checks every entry against its formula, edge values
(+-0, +-large, NaN, +-inf) included.

- Products go to BLAS with transposes as flags, never copied.
- Masks are multiplied, not written through ``where=`` (NumPy's masked
  writes are ~10x slower than a multiply by a 0/1 factor).
- With plain SGD (or heavy-ball momentum) the weight update is folded into
  the weight gradient's GEMM through BLAS ``beta`` (:mod:`nnxp.kernels.blas`):
  ``W <- (1 - lr wd) W - lr delta^T a`` in one call, no gradient array.
- Every product of a training step (forward ``x W^T``, weight gradient with
  the folded update, bias sums, input gradient ``delta W``) goes to one BLAS
  provider, chosen at the step's first use (``blas=``: ``auto``, ``openblas``,
  ``mkl``; see :mod:`nnxp.kernels.blas.choice`), so one library's threads do
  all of a step's products and another's never spin beside them.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from ..activations import Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from ..losses import CrossEntropy
from ..optim import SGD, Adam, AdamW
from . import blas as blas_module
from .buffers import BufferedOps
from .elementwise import ChunkRunner

__all__ = ["NumPyOps", "FORWARD", "BACKWARD", "LOSSES", "UPDATES"]


# -- activations: a = f(z) in place ----------------------------------------------------


def _relu(act: ReLU, z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0, out=z)


def _leaky_factor(act: LeakyReLU, x: np.ndarray) -> np.ndarray:
    """1 where x > 0, else alpha: the same arithmetic as LeakyReLU.derivative."""
    factor = np.multiply(x > 0, 1.0 - act.alpha, dtype=x.dtype)
    factor += act.alpha
    return factor


def _leaky_relu(act: LeakyReLU, z: np.ndarray) -> np.ndarray:
    # where(z > 0, z, alpha z) as a product, so alpha = 0 and +-inf agree with the reference
    return np.multiply(z, np.where(z > 0, z.dtype.type(1), z.dtype.type(act.alpha)), out=z)


def _tanh(act: Tanh, z: np.ndarray) -> np.ndarray:
    return np.tanh(z, out=z)


def _identity(act: Identity, z: np.ndarray) -> np.ndarray:
    return z


FORWARD: dict[type, Callable[[Any, np.ndarray], np.ndarray]] = {
    ReLU: _relu, LeakyReLU: _leaky_relu, Tanh: _tanh, Identity: _identity,
}


# -- activations: g <- g * f'(z) in place, f' from the output a -------------------------


def _relu_backward(act: ReLU, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    return np.multiply(g, a > 0, out=g)


def _leaky_relu_backward(act: LeakyReLU, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    return np.multiply(g, _leaky_factor(act, a), out=g)


def _tanh_backward(act: Tanh, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    g *= 1.0 - a * a
    return g


def _sigmoid_backward(act: Sigmoid, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    g *= a * (1.0 - a)
    return g


def _identity_backward(act: Identity, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g


BACKWARD: dict[type, Callable[[Any, np.ndarray, np.ndarray], np.ndarray]] = {
    ReLU: _relu_backward, LeakyReLU: _leaky_relu_backward, Tanh: _tanh_backward,
    Sigmoid: _sigmoid_backward, Identity: _identity_backward,
}


# -- losses ---------------------------------------------------------------------------------


def _softmax_cross_entropy(loss: CrossEntropy, output: Softmax, z: np.ndarray, y: np.ndarray):
    """CrossEntropy.forward for softmax in plain NumPy calls (on a (B, 10) output the
    Array-API wrappers' overhead is most of the cost)."""
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    a = e / s
    scale = 1.0 / z.shape[0]
    cost = np.asarray(-np.vdot(y, shifted - np.log(s)) * scale)
    delta = a - y
    delta *= scale
    return a, cost, delta


LOSSES: dict[tuple[type, type], Callable[..., tuple[Any, Any, Any]]] = {
    (CrossEntropy, Softmax): _softmax_cross_entropy,
}


# -- optimizers: the update in place, elementwise, the gradient used as scratch -------------
# Each entry updates p and its state in place from g (which it may overwrite), with
# ``t`` (same shape) for temporaries.  It is elementwise, so the training step runs it on
# cache-sized chunks of all parameters at once, on a small thread pool (.elementwise).


def _scratch(p: np.ndarray, t: np.ndarray | None) -> np.ndarray:
    return np.empty_like(p) if t is None else t


def _sgd(opt: SGD, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray],
         t: np.ndarray | None = None) -> None:
    t = _scratch(p, t)
    if opt.weight_decay:
        np.multiply(p, opt.weight_decay, out=t)
        g += t                                   # g + wd p
    step = g
    if opt.momentum:
        v = step = state["velocity"]
        v *= opt.momentum
        v += g                                   # v = mu v + g
        if opt.nesterov:
            np.multiply(v, opt.momentum, out=t)
            g += t                               # g + mu v
            step = g
    np.multiply(step, -opt.lr, out=t)
    p += t


def _adam(opt: Adam, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray],
          t: np.ndarray | None = None) -> None:
    """Adam in 12 passes (13 with L2 decay); sqrt(v_hat) + eps = c (sqrt(v) + eps / c), c = 1/sqrt(1 - b2^t)."""
    if opt.weight_decay:
        if opt.decoupled:
            p *= opt.decay_factor
        else:
            t = _scratch(p, t)
            np.multiply(p, opt.weight_decay, out=t)
            g += t
    m, v = state["m"], state["v"]
    c = opt.inv_sqrt_bc2
    m *= opt.beta1
    g *= 1.0 - opt.beta1                         # g <- (1 - b1) g
    m += g                                       # m = b1 m + (1 - b1) g
    g *= g
    g *= (1.0 - opt.beta2) / (1.0 - opt.beta1) ** 2
    v *= opt.beta2
    v += g                                       # v = b2 v + (1 - b2) g^2
    np.sqrt(v, out=g)
    g += opt.eps_hat / c
    np.divide(m, g, out=g)                       # m / (sqrt(v) + eps / c)
    g *= -opt.step_size / c
    p += g


def _descend(opt: SGD, p: np.ndarray, v: np.ndarray, state: dict[str, np.ndarray],
             t: np.ndarray | None = None) -> None:
    """p <- p - lr v: the rest of heavy-ball momentum once v is updated (by a GEMM)."""
    t = _scratch(p, t)
    np.multiply(v, -opt.lr, out=t)
    p += t


UPDATES: dict[type, Callable[..., None]] = {
    SGD: _sgd, Adam: _adam, AdamW: _adam,
}


class _Product(NamedTuple):
    """dC/dW = delta^T a_prev not yet multiplied out; lives only inside one folded step."""

    delta: np.ndarray
    a_prev: np.ndarray


def _folded_sgd(opt: SGD, p: np.ndarray, g: _Product, state: dict[str, np.ndarray],
                gemm: blas_module.Provider | None = None) -> tuple[Any, ...] | None:
    """The SGD formulas with the weight gradient's product done by the update's GEMM (``gemm``'s).

    Heavy-ball momentum returns the task that finishes the update (p <- p - lr v).
    """
    if opt.momentum:  # v <- mu v + (dW + wd p);  p <- p - lr v   (heavy ball, not Nesterov)
        v = state["velocity"]
        if opt.weight_decay:
            v *= opt.momentum
            v += opt.weight_decay * p
            blas_module.gemm_tn_into(v, g.delta, g.a_prev, alpha=1.0, beta=1.0, blas=gemm)
        else:
            blas_module.gemm_tn_into(v, g.delta, g.a_prev, alpha=1.0, beta=opt.momentum, blas=gemm)
        return (_descend, p, v, {})
    # p <- p - lr (dW + wd p) = (1 - lr wd) p - lr dW
    blas_module.gemm_tn_into(p, g.delta, g.a_prev, alpha=-opt.lr, beta=1.0 - opt.lr * opt.weight_decay,
                             blas=gemm)
    return None


class NumPyOps(BufferedOps):
    """The reference maths for NumPy, into reused buffers and in place.

    ``blas``: which BLAS does the products of training steps (``auto``,
    ``openblas``, ``mkl``; None: the process setting, :func:`nnxp.set_blas`),
    resolved at the first :meth:`train_step` for the network's shapes.
    """

    name = "numpy"

    def __init__(self, blas: str | None = None) -> None:
        super().__init__()
        self._defer_weight_grads = False
        self.blas_setting = blas_module.check_setting(blas) if blas is not None else None
        self.provider: blas_module.Provider | None = None  # resolved at the first train_step
        self._resolved_for: tuple[Any, ...] | None = None
        self._runner = ChunkRunner()

    @property
    def gemm(self) -> blas_module.Provider:
        """The provider doing this executor's products (NumPy's BLAS until a step resolved one)."""
        return self.provider or blas_module.openblas()

    def _empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def linear(self, x, w, b, key):
        out = self.buffer(key, (x.shape[0], w.shape[0]), x.dtype)
        self.gemm.gemm(out, x, w.T)
        out += b
        return out

    def activate(self, act, z):
        fast = FORWARD.get(type(act))
        return fast(act, z) if fast else act.forward(z)

    def activation_backward(self, act, a, g):
        fast = BACKWARD.get(type(act))
        return fast(act, a, g) if fast else act.backward(a, g)

    def weight_grad(self, delta, a_prev, key):
        if self._defer_weight_grads:
            return _Product(delta, a_prev)
        out = self.buffer(key, (delta.shape[1], a_prev.shape[1]), delta.dtype)
        return self.gemm.gemm(out, delta.T, a_prev)

    def bias_grad(self, delta, key):
        # ones^T delta: BLAS sums the columns about 3x faster than np.sum(axis=0).
        out = self.buffer(key, (delta.shape[1],), delta.dtype)
        ones = self._ones(delta.shape[0], delta.dtype)
        if self.gemm.uses_numpy_matmul:
            return np.matmul(ones, delta, out=out)
        self.gemm.gemm(out[None, :], ones[None, :], delta)
        return out

    def _ones(self, n: int, dtype: Any) -> np.ndarray:
        ones = self._buffers.get(("ones", dtype))
        if ones is None or ones.shape[0] < n:
            ones = np.ones(n, dtype=dtype)
            self._buffers[("ones", dtype)] = ones
        return ones[:n]

    def input_grad(self, delta, w, key):
        out = self.buffer(key, (delta.shape[0], w.shape[1]), delta.dtype)
        return self.gemm.gemm(out, delta, w)

    def resolve_blas(self, net: Any, batch: int, dtype: Any) -> blas_module.Provider:
        """Choose the provider for ``net``'s dense layers at this batch size (once per network shape)."""
        shapes = tuple((layer.in_features, layer.out_features) for layer in getattr(net, "dense_layers", ()))
        key = (shapes, np.dtype(dtype))
        if self.provider is None or self._resolved_for != key:
            self.provider = blas_module.resolve(self.blas_setting, shapes, batch, dtype)
            self._resolved_for = key
        return self.provider

    def take_rows(self, x, index, key):
        out = self.buffer(key, (index.shape[0],) + tuple(x.shape[1:]), x.dtype)
        return np.take(x, index, axis=0, out=out)

    def loss_forward(self, loss, output, z, y):
        fast = LOSSES.get((type(loss), type(output)))
        return fast(loss, output, z, y) if fast else loss.forward(output, z, y)

    def optimizer_step(self, optimizer, params, grads):
        # Only the training step calls this, with gradients in this object's own buffers,
        # which the in-place updates use as scratch.
        fast = UPDATES.get(type(optimizer))
        if fast is None:
            return optimizer.step(params, grads)
        optimizer.begin_step(params, grads)
        tasks = []
        for i, (p, g) in enumerate(zip(params, grads)):
            state = optimizer.slot(i)
            if isinstance(g, _Product):
                rest = _folded_sgd(optimizer, p, g, state, self.gemm)
                if rest is not None:
                    tasks.append(rest)
            else:
                tasks.append((fast, p, g, state))
        self._runner.run(optimizer, tasks)
        return list(params)

    def train_step(self, net, x, y, optimizer, *, rng=None, reduce=None, totals=None):
        self.resolve_blas(net, x.shape[0], getattr(net, "dtype", x.dtype))  # x may hold token ids
        if reduce is not None or not self._folds(optimizer):
            return super().train_step(net, x, y, optimizer, rng=rng, reduce=reduce, totals=totals)
        self._defer_weight_grads = True
        try:
            cost, grads, a = net.backprop(x, y, self, rng=rng)
        finally:
            self._defer_weight_grads = False
        self.optimizer_step(optimizer, net.parameters(), _materialise_unfoldable(grads, net.parameters()))
        if totals is not None:
            self.accumulate(totals, cost, a, y)
        return cost, a

    def _folds(self, optimizer: Any) -> bool:
        """Plain SGD or heavy-ball momentum, exactly, with a BLAS library at hand."""
        return type(optimizer) is SGD and not optimizer.nesterov and self.gemm.native


def _materialise_unfoldable(grads: Sequence[Any], params: Sequence[Any]) -> list[Any]:
    """Deferred products whose parameter or operands BLAS cannot take are multiplied out."""
    out = []
    for g, p in zip(grads, params):
        if isinstance(g, _Product) and not (p.flags.c_contiguous and p.flags.writeable
                                            and g.delta.flags.c_contiguous and g.a_prev.flags.c_contiguous):
            g = g.delta.T @ g.a_prev
        out.append(g)
    return out
