"""The feed-forward network: dense layers, forward pass and backpropagation.

Conventions (the seeds'): a layer's weights ``W`` are stored (out, in), so row
j holds the weights into unit j, and biases ``b`` are (out,).  A batch is a
2-D array with one sample per row.  For layers l = 1..L::

    z_l = a_{l-1} W_l^T + b_l          a_l = f_l(z_l)          a_0 = x

Backpropagation for a batch (rows = samples), with delta_l = dC/dz_l::

    delta_L = dC/dz_L                  (the loss's output delta)
    dC/dW_l = delta_l^T a_{l-1}        dC/db_l = sum over rows of delta_l
    delta_{l-1} = (delta_l W_l) * f'_{l-1}(z_{l-1})

The cost is a batch mean (see :mod:`nnxp.losses`), so these are the means of
the per-sample gradients.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as array_device

from .activations import Activation, get_activation
from .backend import get_backend, index_dtype, to_numpy
from .errors import ConfigError, DataError, ShapeError
from .init import check_seed, initial_parameters, resolve_init
from .losses import Loss, get_loss
from .ops import ArrayAPIOps
from .validation import (check_finite as _check_finite_named, check_parameter_memory,
                         check_real, host_array, layer_sizes, positive_int)

__all__ = ["Dense", "Network"]

_GENERIC = ArrayAPIOps()


class Dense:
    """One fully connected layer: a = f(x W^T + b).

    Attributes: ``weight`` (out, in), ``bias`` (out,), ``activation``.
    """

    __slots__ = ("weight", "bias", "activation")

    def __init__(self, weight: Any, bias: Any, activation: Activation):
        self.weight = weight
        self.bias = bias
        self.activation = activation

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def __repr__(self) -> str:
        return f"Dense({self.in_features} -> {self.out_features}, {self.activation.name})"


class Network:
    """A multi-layer perceptron on any Array-API backend.

    Parameters
    ----------
    sizes : layer widths, input first: ``[784, 128, 10]`` is 784 inputs, one
        hidden layer of 128 units and 10 outputs.
    hidden : activation of the hidden layers: a name (``"relu"``,
        ``"leaky_relu"`` (alpha 0.2, or ``"leaky_relu:0.1"``), ``"sigmoid"``,
        ``"tanh"``, ``"identity"``, ``"softmax"``), an
        :class:`~nnxp.activations.Activation`, or a list with one per hidden layer.
    output : activation of the output layer.
    loss : ``"squared_error"`` (the seeds' C = sum (a - y)^2, batch mean),
        ``"cross_entropy"`` (softmax or sigmoid output), or ``"auto"``:
        cross-entropy after softmax, squared error otherwise.
    init : ``"auto"`` (He before ReLU-family, Xavier otherwise), ``"he"``,
        ``"xavier"``, or ``"uniform"`` (U[-1, 1), the seeds').
    seed : seeds the host NumPy generator the initial weights are drawn from;
        the same seed gives the same network on every backend.
    dtype : ``"float32"`` (default) or ``"float64"``.
    device : where the arrays live: ``"auto"``, ``"cpu"``, ``"cuda"``,
        ``"cuda:N"``, an array library module, or a :class:`~nnxp.backend.Backend`.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        hidden: Any = "relu",
        output: Any = "softmax",
        *,
        loss: str | Loss = "auto",
        init: str = "auto",
        seed: int | None = 0,
        dtype: str = "float32",
        device: Any = "auto",
    ):
        sizes = layer_sizes(sizes)
        n_layers = len(sizes) - 1
        if isinstance(hidden, (list, tuple)):
            if len(hidden) != n_layers - 1:
                raise ConfigError(
                    f"{len(hidden)} hidden activations given for {n_layers - 1} hidden layers"
                )
            activations = [get_activation(h) for h in hidden]
        else:
            activations = [get_activation(hidden)] * (n_layers - 1)
        activations.append(get_activation(output))

        self.backend = get_backend(device)
        self.dtype = self.backend.dtype(dtype)
        self.loss = _resolve_loss(loss, activations[-1])
        check_parameter_memory(sizes, 8 if dtype == "float64" else 4)

        init = resolve_init(init)
        rng = np.random.default_rng(check_seed(seed))
        self.layers: list[Dense] = []
        for n_in, n_out, act in zip(sizes[:-1], sizes[1:], activations):
            w, b = initial_parameters(rng, n_out, n_in, init, act)
            self.layers.append(Dense(self._param(w), self._param(b), act))

    # -- description ------------------------------------------------------------
    @property
    def sizes(self) -> list[int]:
        return [self.layers[0].in_features] + [layer.out_features for layer in self.layers]

    @property
    def activations(self) -> list[Activation]:
        return [layer.activation for layer in self.layers]

    @property
    def output(self) -> Activation:
        return self.layers[-1].activation

    @property
    def xp(self) -> Any:
        return self.backend.xp

    @property
    def device(self) -> Any:
        return self.backend.device

    @property
    def dtype_name(self) -> str:
        return "float64" if self.dtype == self.xp.float64 else "float32"

    def config(self) -> dict[str, Any]:
        """Everything but the parameters: what a model file stores beside them."""
        return {
            "sizes": self.sizes,
            "activations": [act.config() for act in self.activations],
            "loss": self.loss.name,
            "dtype": self.dtype_name,
        }

    def __repr__(self) -> str:
        acts = ", ".join(a.name if a.name != "leaky_relu" else f"leaky_relu({a.alpha:g})"
                         for a in self.activations)
        return (f"Network({self.sizes}, activations=[{acts}], loss={self.loss.name}, "
                f"{self.dtype_name}, {self.backend})")

    # -- parameters --------------------------------------------------------------
    def parameters(self) -> list[Any]:
        """The live parameter arrays [W_1, b_1, W_2, b_2, ...] (optimizers update them in place)."""
        return [p for layer in self.layers for p in (layer.weight, layer.bias)]

    def get_weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Host NumPy copies of every layer's (W, b), W as (out, in)."""
        return [(to_numpy(layer.weight).copy(), to_numpy(layer.bias).copy()) for layer in self.layers]

    def set_weights(self, weights: Iterable[tuple[Any, Any]]) -> "Network":
        """Replace every layer's (W, b) with copies of the given arrays (W as (out, in)).

        The arrays may come from the host or any supported backend; they are
        cast to the network's dtype and copied to its device.
        """
        weights = list(weights)
        if len(weights) != len(self.layers):
            raise ShapeError(f"got {len(weights)} (W, b) pairs for {len(self.layers)} layers")
        new = []
        for i, (layer, pair) in enumerate(zip(self.layers, weights)):
            try:
                w, b = pair
            except (TypeError, ValueError):
                raise ShapeError(f"layer {i}: expected a (W, b) pair") from None
            w, b = self._checked_param(w, f"layer {i} W"), self._checked_param(b, f"layer {i} b")
            want_w, want_b = (layer.out_features, layer.in_features), (layer.out_features,)
            if tuple(w.shape) != want_w or tuple(b.shape) != want_b:
                raise ShapeError(
                    f"layer {i}: W must be {want_w} (out, in) and b {want_b}, "
                    f"got {tuple(w.shape)} and {tuple(b.shape)}"
                )
            new.append((w, b))
        for layer, (w, b) in zip(self.layers, new):
            layer.weight, layer.bias = w, b
        return self

    def to(self, device: Any) -> "Network":
        """Move the parameters to another device or backend (in place); returns self."""
        backend = get_backend(device)
        dtype = backend.dtype(self.dtype_name)
        for layer in self.layers:
            layer.weight = backend.asarray(to_numpy(layer.weight), dtype, copy=True)
            layer.bias = backend.asarray(to_numpy(layer.bias), dtype, copy=True)
        self.backend, self.dtype = backend, dtype
        return self

    def _param(self, data: Any) -> Any:
        return self.backend.asarray(data, self.dtype, copy=True)

    def _checked_param(self, data: Any, name: str) -> Any:
        """A copy of user-given parameter values: real, finite numbers only."""
        data = host_array(name, data)
        check_real(name, data)
        data = self._param(data)
        _check_finite_named(name, data)
        return data

    # -- inference ---------------------------------------------------------------
    def forward(self, x: Any) -> Any:
        """Output activations a_L for a batch ``x`` (B, n_0) -> (B, n_L)."""
        x = self.inputs(x)
        with self.backend.context():
            return self._forward(x, _GENERIC)[1]

    __call__ = forward

    def predict(self, x: Any, batch_size: int = 4096) -> Any:
        """Outputs for ``x`` computed ``batch_size`` rows at a time (bounded memory)."""
        batch_size = positive_int("batch_size", batch_size)
        x = self.inputs(x)
        xp = array_namespace(x)
        n = x.shape[0]
        with self.backend.context():
            if n <= batch_size:
                return self._forward(x, _GENERIC)[1]
            parts = [self._forward(x[i:min(n, i + batch_size), ...], _GENERIC)[1]
                     for i in range(0, n, batch_size)]
            return xp.concat(parts, axis=0)

    def classify(self, x: Any, batch_size: int = 4096) -> Any:
        """Predicted class per sample: argmax of the outputs, or output >= 0.5 for one output."""
        batch_size = positive_int("batch_size", batch_size)
        return _predicted_labels(self.predict(x, batch_size))

    def _forward(self, x: Any, ops: ArrayAPIOps, output: bool = True) -> tuple[Any, Any, list[Any]]:
        """(z_L, a_L, [a_0, ..., a_{L-1}]): what backprop needs, layer by layer.

        Hidden layers may compute a = f(z) in place (fast ops), so only each
        layer's output is kept; the output layer keeps z_L for the loss.  With
        ``output=False`` a_L is left to the loss (returned as None).
        """
        acts = [x]
        a = x
        for l, layer in enumerate(self.layers[:-1]):
            a = ops.linear_activate(a, layer.weight, layer.bias, layer.activation, ("z", l))
            acts.append(a)
        last = self.layers[-1]
        z = ops.linear(a, last.weight, last.bias, ("z", len(self.layers) - 1))
        return z, (last.activation.forward(z) if output else None), acts

    # -- training maths ------------------------------------------------------------
    def gradients(self, x: Any, y: Any) -> list[tuple[Any, Any]]:
        """Per-layer (dC/dW, dC/db) of the batch-mean cost, W-gradients (out, in)."""
        x = self.inputs(x)
        y = self.targets(y, x.shape[0])
        with self.backend.context():
            return self._backprop(x, y, _GENERIC)[1]

    def cost(self, x: Any, y: Any) -> float:
        """The batch-mean cost C(x, y) as a Python float."""
        x = self.inputs(x)
        y = self.targets(y, x.shape[0])
        with self.backend.context():
            z, a, _ = self._forward(x, _GENERIC)
            return float(self.loss.value(self.output, z, a, y))

    def _backprop(self, x: Any, y: Any, ops: ArrayAPIOps) -> tuple[Any, list[tuple[Any, Any]], Any]:
        """(batch cost as a 0-d device array, [(dW_l, db_l)], outputs a_L)."""
        z, _, acts = self._forward(x, ops, output=False)
        a, cost, delta = ops.loss_forward(self.loss, self.output, z, y)  # a_L, C, dC/dz_L
        grads: list[tuple[Any, Any]] = []
        for l in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[l]
            grads.append((ops.weight_grad(delta, acts[l], ("dW", l)), ops.bias_grad(delta, ("db", l))))
            if l > 0:
                g = ops.input_grad(delta, layer.weight, ("da", l - 1))  # dC/da_{l-1}
                delta = ops.activation_backward(self.layers[l - 1].activation, acts[l], g)
        grads.reverse()
        return cost, grads, a

    def train_step(self, x: Any, y: Any, optimizer: Any, ops: ArrayAPIOps = _GENERIC) -> tuple[Any, Any]:
        """One optimizer step on the batch (x, y) already on the device.

        Returns (batch cost, outputs) as device arrays: nothing is read back.
        """
        cost, grads, a = self._backprop(x, y, ops)
        optimizer.step(self.parameters(), [g for pair in grads for g in pair],
                       update=ops.optimizer_update(optimizer))
        return cost, a

    # -- checking inputs -------------------------------------------------------------
    def inputs(self, x: Any, name: str = "x") -> Any:
        """``x`` as a (B, n_0) array of the network's dtype on its device, checked."""
        x = host_array(name, x)
        if len(x.shape) != 2:
            hint = " (use x[None, :] for a single sample)" if len(x.shape) == 1 else ""
            raise ShapeError(f"{name} must be 2-D (samples, features), got shape {tuple(x.shape)}{hint}")
        if x.shape[0] == 0:
            raise ShapeError(f"{name} has no samples: give at least one row")
        if x.shape[1] != self.sizes[0]:
            raise ShapeError(
                f"{name} has {x.shape[1]} features per sample but the network takes {self.sizes[0]}"
            )
        _check_numeric(x, name)
        x = self.backend.asarray(x, self.dtype)
        _check_finite(x, name)
        return x

    def targets(self, y: Any, n: int | None, name: str = "y") -> Any:
        """Targets as a (B, n_L) array: one-hot rows for integer class labels."""
        y = host_array(name, y)
        k = self.sizes[-1]
        if n is not None and y.shape[:1] != (n,):
            raise ShapeError(
                f"{name} has {y.shape[0] if len(y.shape) else 0} samples but x has {n}: they must match"
            )
        if len(y.shape) == 1 and _is_integer(y):
            labels = self.backend.asarray(y, self.backend.index_dtype)
            return one_hot(labels, 2 if k == 1 else k, self.dtype, name=name, binary=k == 1)
        if len(y.shape) == 1 and k == 1:
            y = self.xp.reshape(self.backend.asarray(y, self.dtype), (-1, 1))
        if len(y.shape) != 2 or y.shape[1] != k:
            raise ShapeError(
                f"{name} must be integer class labels (samples,) or targets (samples, {k}), "
                f"got shape {tuple(y.shape)}"
            )
        _check_numeric(y, name)
        y = self.backend.asarray(y, self.dtype)
        _check_finite(y, name)
        return y

    # -- Keras-style conveniences (nnxp.train does the work) ------------------------
    def fit(self, x: Any, y: Any, **kwargs: Any):
        """Train on (x, y); see :func:`nnxp.train.fit` for the options. Returns a History."""
        from .train import fit

        return fit(self, x, y, **kwargs)

    def evaluate(self, x: Any, y: Any, batch_size: int = 4096) -> dict[str, float]:
        """{"loss": batch-mean cost, "accuracy": fraction correct} over all of (x, y)."""
        from .train import evaluate

        return evaluate(self, x, y, batch_size=batch_size)

    # -- files -------------------------------------------------------------------------
    def save(self, path: Any) -> None:
        """Write the network to a ``.safetensors`` file (atomically); see :mod:`nnxp.serialization`."""
        from .serialization import save

        save(self, path)

    @classmethod
    def load(cls, path: Any, device: Any = "auto") -> "Network":
        from .serialization import load

        return load(path, device=device)

    @classmethod
    def from_config(cls, config: dict[str, Any], device: Any = "auto") -> "Network":
        """An untrained network of the shape ``config`` (from :meth:`config`) describes."""
        try:
            sizes = config["sizes"]
            acts = [get_activation(a) for a in config["activations"]]
            return cls(sizes, hidden=acts[:-1], output=acts[-1], loss=config["loss"],
                       dtype=config["dtype"], device=device, init="xavier", seed=0)
        except (KeyError, TypeError) as exc:
            raise DataError(f"incomplete network description (missing {exc})") from None


# -- helpers -------------------------------------------------------------------------


def one_hot(labels: Any, k: int, dtype: Any, *, name: str = "y", binary: bool = False) -> Any:
    """(B,) integer labels in [0, k) -> (B, k) one-hot rows (or (B, 1) 0/1 if ``binary``)."""
    xp = array_namespace(labels)
    low, high = int(xp.min(labels)), int(xp.max(labels))  # one read, at the API boundary
    if low < 0 or high >= k:
        raise ShapeError(f"{name} has class labels from {low} to {high} but the network has {k} classes")
    if binary:
        return xp.reshape(xp.astype(labels, dtype), (-1, 1))
    classes = xp.arange(k, dtype=labels.dtype, device=array_device(labels))
    return xp.astype(labels[:, None] == classes[None, :], dtype)


def _predicted_labels(a: Any) -> Any:
    xp = array_namespace(a)
    if a.shape[1] == 1:
        return xp.astype(a[:, 0] >= 0.5, index_dtype(xp, array_device(a)))
    return xp.argmax(a, axis=1)


def _is_integer(y: Any) -> bool:
    dtype = y.dtype
    if isinstance(y, np.ndarray):
        return np.issubdtype(dtype, np.integer)
    xp = array_namespace(y)
    return xp.isdtype(dtype, "integral")


def _check_numeric(x: Any, name: str) -> None:
    check_real(name, x)


def _check_finite(x: Any, name: str) -> None:
    _check_finite_named(name, x)


def _resolve_loss(loss: Any, output: Activation) -> Loss:
    if isinstance(loss, str) and loss.lower() == "auto":
        loss = "cross_entropy" if output.name == "softmax" else "squared_error"
    loss = get_loss(loss)
    loss.check_output(output)
    return loss
