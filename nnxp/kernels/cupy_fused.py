"""The fused CuPy training step: a few kernel launches per step, no allocation.

For a network of Dense layers ending in softmax + cross-entropy, trained by
SGD, Adam or AdamW (exactly those classes), one step of
:meth:`nnxp.kernels.cupy.CuPyOps.train_step` launches, for L layers:

- per hidden layer: one GEMM ``z = a W^T`` and one kernel ``a = f(z + b)``;
- output layer: one GEMM, then one loss kernel (:data:`RAW_KERNELS`
  ``nnxp_softmax_xent_*``, a thread per row) adding the bias, taking the
  softmax (a_L written over z_L), the gradient ``(a - y) / B``, the row's
  loss and its hit (counted on the device), then one kernel
  (``nnxp_xent_sums_*``) summing the output bias gradient and adding the
  batch's loss to the epoch's total;
- per layer backwards: one GEMM for dC/dW (written into a flat gradient
  buffer), and below the output one GEMM for dC/da and one kernel doing
  ``g *= f'(a)`` and summing each column into the bias gradient;
- one optimizer kernel over the flat parameter buffer (every parameter at
  once), which also zeroes the gradients it read.

784-H-10 (two layers): 2 batch gathers + 10 = 12 launches per step, counted
by the CPU EMULATION in tests/test_cupy_emulation.py.  Every float sum is
taken in a fixed order (a thread per column and part of 32 rows, then the
parts in order; no atomic float adds, whose order varies on a GPU), so the
same seed gives bitwise the same training on a GPU too
(cuBLAS GEMMs are deterministic on one GPU model and library version); the
hit count is an integer atomic add, exact in any order.  tests/test_cuda_graphs.py
shuffles the emulated thread order to check it.

Parameters live in one flat buffer (the network's arrays become views of
it) and so do the optimizer's moments (its state arrays become views too,
keeping their values and step count, so checkpoints see them as before).
"""

from __future__ import annotations

from typing import Any

import numpy as _np  # host-side only: the dtype of the arrival counts

from ..activations import Identity, Softmax
from ..layers import Dense
from ..losses import CrossEntropy
from ..optim import SGD, Adam, AdamW

__all__ = ["RAW_KERNELS", "FusedStep", "fuses"]

_C_TYPES = {"float32": "float", "float64": "double"}

# One thread per row of z (B, K): z + b, softmax, the row's loss, (a - y)/B, and the row's hit
# (an integer atomic add: exact, in any order).  No float is summed across threads here.
_XENT = r"""
typedef %(ctype)s T;
extern "C" __global__ void nnxp_softmax_xent_%(dtype)s(T* z, const T* b, const T* y, T* delta, T* row_loss,
        long long* correct, long long rows, long long k, T inv_rows) {
    long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    T* zr = z + r * k;
    const T* yr = y + r * k;
    T* dr = delta + r * k;
    T m = zr[0] + b[0];
    for (long long j = 0; j < k; ++j) {
        T v = zr[j] + b[j];
        zr[j] = v;
        m = v > m ? v : m;
    }
    T s = (T)0;
    for (long long j = 0; j < k; ++j) s += exp(zr[j] - m);
    T log_s = log(s), loss = (T)0, a_best = (T)-1, y_best = yr[0];
    long long predicted = 0, target = 0;
    for (long long j = 0; j < k; ++j) {
        T shifted = zr[j] - m;
        T a = exp(shifted) / s;
        loss += yr[j] * (shifted - log_s);
        zr[j] = a;
        dr[j] = (a - yr[j]) * inv_rows;
        if (a > a_best) { a_best = a; predicted = j; }
        if (yr[j] > y_best) { y_best = yr[j]; target = j; }
    }
    row_loss[r] = -loss;
    if (predicted == target) atomicAdd((unsigned long long*)correct, 1ULL);
}
"""

# Deterministic column sums without atomic float adds, in one launch: thread (column j, part p)
# sums rows [p*chunk, (p+1)*chunk) of column j into partial[p][j]; the last part of column j to
# finish (an integer atomic count, exact in any order) adds the parts in part order 0, 1, ...
# and resets the count.  The order of every float addition is fixed: bitwise the same each run.
# (The partial sums are read through a volatile pointer, after __threadfence, not from L1.)

# Columns 0..K-1 of delta (B, K): the output bias gradient db; column K: the rows' losses, whose
# sum is added to the epoch's loss_sum.
_XENT_SUMS = r"""
typedef %(ctype)s T;
extern "C" __global__ void nnxp_xent_sums_%(dtype)s(const T* delta, const T* row_loss, T* db, T* loss_sum,
        T* partial, unsigned int* arrived, long long rows, long long k, long long chunk) {
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j > k) return;
    long long part = blockIdx.y, parts = gridDim.y;
    long long end = (part + 1) * chunk < rows ? (part + 1) * chunk : rows;
    T sum = (T)0;
    for (long long r = part * chunk; r < end; ++r) sum += j < k ? delta[r * k + j] : row_loss[r];
    partial[part * (k + 1) + j] = sum;
    __threadfence();
    if (atomicAdd(&arrived[j], 1u) == (unsigned int)(parts - 1)) {
        const volatile T* sums = partial;
        T total = (T)0;
        for (long long p = 0; p < parts; ++p) total += sums[p * (k + 1) + j];
        if (j < k) db[j] = total; else *loss_sum += total;
        arrived[j] = 0u;
    }
}
"""

# g <- g * f'(a) over (rows, cols), and each column's sum into the bias gradient db, summed as
# above (neighbouring threads read neighbouring addresses).  The derivative is the elementwise
# backward kernel's own operation (one formula).
_BIAS_BACKWARD = r"""
typedef %(ctype)s T;
extern "C" __global__ void nnxp_bias_backward_%(kind)s_%(dtype)s(const T* a_, T* g_, T* db, T* partial,
        unsigned int* arrived, long long rows, long long cols, long long chunk, T alpha, T c) {
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    long long part = blockIdx.y, parts = gridDim.y;
    long long end = (part + 1) * chunk < rows ? (part + 1) * chunk : rows;
    T sum = (T)0;
    for (long long r = part * chunk; r < end; ++r) {
        long long i = r * cols + j;
        const T a = a_[i];
        T g = g_[i];
        %(operation)s;
        g_[i] = g;
        sum += g;
    }
    partial[part * cols + j] = sum;
    __threadfence();
    if (atomicAdd(&arrived[j], 1u) == (unsigned int)(parts - 1)) {
        const volatile T* sums = partial;
        T total = (T)0;
        for (long long p = 0; p < parts; ++p) total += sums[p * cols + j];
        db[j] = total;
        arrived[j] = 0u;
    }
}
"""

#: Rows each thread of the column sums adds up (the parts of a column are summed by its last one).
ROWS_PER_PART = 32


def _raw_kernels() -> dict[str, str]:
    from .cupy_kernels import KERNELS

    out = {}
    for dtype, ctype in _C_TYPES.items():
        out[f"nnxp_softmax_xent_{dtype}"] = _XENT % {"ctype": ctype, "dtype": dtype}
        out[f"nnxp_xent_sums_{dtype}"] = _XENT_SUMS % {"ctype": ctype, "dtype": dtype}
        for name in [k for k in KERNELS if k.startswith("nnxp_backward_")] + ["nnxp_backward_identity"]:
            kind = name.removeprefix("nnxp_backward_")
            operation = KERNELS[name].operation if name in KERNELS else "g = g"
            out[f"nnxp_bias_backward_{kind}_{dtype}"] = _BIAS_BACKWARD % {
                "ctype": ctype, "dtype": dtype, "kind": kind, "operation": operation}
    return out


#: Every RawKernel source by name (tests/test_cupy_kernels.py compiles each with NVRTC).
RAW_KERNELS: dict[str, str] = {}


def raw_kernels() -> dict[str, str]:
    if not RAW_KERNELS:
        RAW_KERNELS.update(_raw_kernels())
    return RAW_KERNELS


def fuses(net: Any, optimizer: Any, reduce: Any, x: Any) -> bool:
    """Whether the fused step runs exactly the reference's formulas for this network and optimizer."""
    from .cupy_kernels import _BACKWARD_OF

    layers = net.layers
    return (reduce is None and type(optimizer) in (SGD, Adam, AdamW)
            and all(type(layer) is Dense for layer in layers)
            and all(type(layer.activation) in _BACKWARD_OF or type(layer.activation) is Identity
                    for layer in layers[:-1])
            and type(layers[-1].activation) is Softmax and type(net.loss) is CrossEntropy
            and str(x.dtype) in _C_TYPES)


class FusedStep:
    """Flat parameter, gradient and optimizer-state buffers for one network, and its fused step."""

    def __init__(self, ops: Any, net: Any, optimizer: Any) -> None:
        cp = ops._cp
        self.ops, self.cp, self.optimizer = ops, cp, optimizer
        params = net.parameters()
        dtype = params[0].dtype
        self.shapes = [tuple(p.shape) for p in params]
        sizes = [int(_prod(s)) for s in self.shapes]
        total = sum(sizes)
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        old_state = optimizer.state_for(params)
        self.flat_p = cp.empty((total,), dtype=dtype)
        self.flat_g = cp.zeros((total,), dtype=dtype)
        self.params = self._views(self.flat_p)
        self.grads = self._views(self.flat_g)
        for view, p in zip(self.params, params):
            view[...] = p
        self.flat_state, state = {}, {}
        for name in optimizer.buffers:
            self.flat_state[name] = cp.zeros((total,), dtype=dtype)
            state[name] = self._views(self.flat_state[name])
            if old_state is not None:
                for view, old in zip(state[name], old_state[name]):
                    view[...] = old
        net.set_parameters(self.params)
        optimizer.rebind(self.params, state)
        self._counts: dict[tuple[int, int], Any] = {}
        self.scalar_count = len(_SCALARS[type(optimizer)] if type(optimizer) is not SGD or not optimizer.momentum
                                else _SCALARS["momentum"])

    def _arrived(self, layer: int, columns: int) -> Any:
        """The column sums' arrival counts for ``layer`` (zeros, made before any capture; each
        column's last part resets its count)."""
        key = (layer, columns)
        if key not in self._counts:
            self._counts[key] = self.cp.zeros((columns,), dtype=_np.uint32)
        return self._counts[key]

    def _views(self, flat: Any) -> list[Any]:
        return [flat[o:o + int(_prod(s))].reshape(s) for o, s in zip(self.offsets, self.shapes)]

    def belongs_to(self, net: Any, optimizer: Any) -> bool:
        """Whether these buffers hold ``net``'s parameters and ``optimizer``'s state."""
        params = net.parameters()
        return (optimizer is self.optimizer and len(params) == len(self.params)
                and all(p is q for p, q in zip(params, self.params)))

    # -- one step --------------------------------------------------------------------
    def step(self, net: Any, x: Any, y: Any, optimizer: Any, totals: Any, scalars: Any = None,
             gemm: Any = None) -> Any:
        """One training step; returns a_L (a buffer, valid until the next step).

        For CUDA-graph capture: ``scalars``, the device array the update reads the
        per-step scalars from (:meth:`scalar_values`; the step is then not counted
        here, the replay does), and ``gemm(a, b, out)``, products that a capture can
        record (:class:`nnxp.kernels.cublas_capture.CaptureBlas`; ``cupy.matmul``
        cannot be captured).
        """
        from .cupy_kernels import _BACKWARD_OF, _FORWARD_OF
        from .cupy_kernels import kernel as _kernel

        ops, cp = self.ops, self.cp
        capture = scalars is not None

        def product(a, b, key=None, out=None):
            out = out if out is not None else ops.buffer(key, (a.shape[0], b.shape[1]), a.dtype)
            return gemm(a, b, out) if gemm is not None else cp.matmul(a, b, out=out)

        rows = int(x.shape[0])
        dtype = str(x.dtype)
        scalar = _scalar_type(cp, dtype)
        layers = net.layers
        last = len(layers) - 1
        acts = [x]
        a = x
        for i, layer in enumerate(layers[:-1]):
            z = product(a, self.params[2 * i].T, ("z", i))
            act = layer.activation
            kind = _FORWARD_OF[type(act)]
            args = (self.params[2 * i + 1], act.alpha) if kind == "leaky_relu" else (self.params[2 * i + 1],)
            _kernel(cp, f"nnxp_forward_{kind}")(*args, z)
            a = z
            acts.append(a)
        z = product(a, self.params[2 * last].T, ("z", last))
        k = int(z.shape[1])
        delta = ops.buffer(("delta", last), (rows, k), z.dtype)
        row_loss = ops.buffer(("row_loss",), (rows,), z.dtype)
        if totals is None:
            totals = ops.scratch_totals(z.dtype)
        _raw(cp, f"nnxp_softmax_xent_{dtype}")(
            ((rows + 127) // 128,), (128,),
            (z, self.params[2 * last + 1], y, delta, row_loss, totals.correct, rows, k, scalar(1.0 / rows)))
        parts = (rows + ROWS_PER_PART - 1) // ROWS_PER_PART
        _raw(cp, f"nnxp_xent_sums_{dtype}")(
            ((k + 128) // 128, parts), (128,),
            (delta, row_loss, self.grads[2 * last + 1], totals.loss,
             ops.buffer(("sum_parts", last), (parts, k + 1), z.dtype), self._arrived(last, k + 1), rows, k,
             ROWS_PER_PART))
        a_out = z
        for i in range(last, -1, -1):
            product(delta.T, acts[i], out=self.grads[2 * i])
            if i == 0:
                break
            g = product(delta, self.params[2 * i], ("da", i - 1))
            act = layers[i - 1].activation
            kind = _BACKWARD_OF.get(type(act), "identity")
            alpha = getattr(act, "alpha", 0.0)
            cols = int(g.shape[1])
            parts = (rows + ROWS_PER_PART - 1) // ROWS_PER_PART
            _raw(cp, f"nnxp_bias_backward_{kind}_{dtype}")(
                ((cols + 127) // 128, parts), (128,),
                (acts[i], g, self.grads[2 * i - 1], ops.buffer(("sum_parts", i - 1), (parts, cols), g.dtype),
                 self._arrived(i - 1, cols), rows, cols, ROWS_PER_PART, scalar(alpha), scalar(1.0 - alpha)))
            delta = g
        if not capture:
            optimizer.begin_step(self.params, self.grads)  # host only: counts the step
        self._update(optimizer, scalars)
        return a_out

    def scalar_values(self, optimizer: Any) -> list[float]:
        """The update kernel's per-step ``T`` scalars, in its parameter order (:data:`_SCALARS`)."""
        if type(optimizer) is SGD:
            return [optimizer.lr, optimizer.weight_decay] + ([optimizer.momentum] if optimizer.momentum else [])
        wd = 0.0 if optimizer.decoupled else optimizer.weight_decay
        return [optimizer.step_size, optimizer.beta1, 1.0 - optimizer.beta1, optimizer.beta2, 1.0 - optimizer.beta2,
                optimizer.eps_hat, optimizer.inv_sqrt_bc2, wd, optimizer.decay_factor]

    def _update(self, optimizer: Any, scalars: Any = None) -> None:
        """The flat update; with ``scalars`` (a device array) its T scalars are read from there."""
        from .cupy_kernels import kernel as _kernel

        cp, p, g = self.cp, self.flat_p, self.flat_g
        values = self.scalar_values(optimizer)
        if scalars is not None:  # 1-element views, broadcast by the kernel: nothing baked into a graph
            values = [scalars[j:j + 1] for j in range(len(values))]
        if type(optimizer) is SGD and not optimizer.momentum:
            _kernel(cp, "nnxp_update_sgd_flat")(*values, p, g)
        elif type(optimizer) is SGD:
            _kernel(cp, "nnxp_update_momentum_flat")(*values, optimizer.nesterov, p, self.flat_state["velocity"], g)
        else:
            _kernel(cp, "nnxp_update_adam_flat")(*values, p, self.flat_state["m"], self.flat_state["v"], g)


# The update kernels' T scalars, in order (see scalar_values).
_SCALARS = {SGD: ("lr", "wd"), "momentum": ("lr", "wd", "mu"),
            Adam: ("step", "b1", "c1", "b2", "c2", "eps", "inv_sqrt_bc2", "wd", "decay")}
_SCALARS[AdamW] = _SCALARS[Adam]

_raw_cache: dict[tuple[int, str], Any] = {}


def _raw(cp: Any, name: str) -> Any:
    key = (id(cp), name)
    if key not in _raw_cache:
        _raw_cache[key] = cp.RawKernel(raw_kernels()[name], name)
    return _raw_cache[key]


def _scalar_type(cp: Any, dtype: str) -> Any:
    """The scalar type of a RawKernel argument ``T`` (CuPy would pass a Python float as a double)."""
    return getattr(cp, dtype)


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out
