"""Layers: the small interface a network is built from, with Dense and Dropout.

A layer maps a batch (rows are samples) to a batch, and back-propagates::

    out, saved = layer.forward(x, run)          # saved: what backward needs
    dx, grads = layer.backward(g, saved, run)   # g = dC/d(out); grads match parameters()

``run`` (:class:`Run`) carries the executor (:mod:`nnxp.kernels`: the
reference or a backend fast path), whether this is training, the layer's
position (a key for the executor's buffers) and a host random generator.
A layer's maths goes through ``run.ops`` where a fast path may run it, and
is plain Array-API code otherwise.

Parameters are rebound, never assumed to change in place:
``set_parameters`` takes the new arrays an optimizer returns.  ``config()``
is what a model file stores (with ``kind``); ``from_config`` rebuilds the
layer with placeholder parameters of the right shapes, which the loader
then fills.  A new layer type subclasses :class:`Layer` with a new ``kind``
and is then known to model files; nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from array_api_compat import array_namespace

from .activations import Activation, get_activation
from .errors import ConfigError
from .random import uniform

__all__ = ["Layer", "Run", "Dense", "Dropout", "layer_from_config", "LAYERS"]

#: Every layer class by its ``kind`` (filled as classes are defined).
LAYERS: dict[str, type["Layer"]] = {}


@dataclass
class Run:
    """What one forward/backward pass needs besides the arrays."""

    ops: Any                       # the executor: nnxp.kernels.ArrayAPIOps or a fast path
    training: bool = False         # Dropout is active only when True
    index: int = 0                 # this layer's position: a key for the executor's buffers
    need_input_grad: bool = True   # False for the first layer: dC/dx is not needed
    rng: np.random.Generator | None = None  # host generator for random masks


class Layer:
    """Base class of every layer."""

    kind: ClassVar[str] = ""
    #: names of the parameters, in the order of :meth:`parameters`
    parameter_names: ClassVar[tuple[str, ...]] = ()
    #: True when the layer takes integer ids, not floats (an embedding)
    accepts_ids: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind:
            LAYERS[kind] = cls

    in_features: int
    out_features: int

    def parameters(self) -> list[Any]:
        """The live parameter arrays, in the order of ``parameter_names``."""
        return [getattr(self, name) for name in self.parameter_names]

    def set_parameters(self, arrays: list[Any]) -> None:
        """Rebind the parameters to ``arrays`` (same order and shapes)."""
        for name, array in zip(self.parameter_names, arrays, strict=True):
            setattr(self, name, array)

    def forward(self, x: Any, run: Run) -> tuple[Any, Any]:
        raise NotImplementedError

    def backward(self, g: Any, saved: Any, run: Run) -> tuple[Any | None, list[Any]]:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any], backend: Any, dtype: Any) -> "Layer":
        raise NotImplementedError

    @classmethod
    def parameter_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]] | None:
        """{parameter name: shape} that ``from_config(config)`` would allocate, computed
        without allocating (a loader checks a file's tensors against it first);
        None when the layer cannot tell, and raises ConfigError on a bad config."""
        return {} if not cls.parameter_names else None


class Dense(Layer):
    """A fully connected layer: a = f(x W^T + b).

    Attributes: ``weight`` (out, in), ``bias`` (out,), ``activation``.
    Backpropagation, with delta = dC/dz = g * f'(z)::

        dC/dW = delta^T x        dC/db = sum of delta over rows        dC/dx = delta W
    """

    kind = "dense"
    parameter_names = ("weight", "bias")

    def __init__(self, weight: Any, bias: Any, activation: Activation | str = "identity"):
        self.weight = weight
        self.bias = bias
        self.activation = get_activation(activation)

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def forward(self, x, run):
        a = run.ops.linear_activate(x, self.weight, self.bias, self.activation, ("z", run.index))
        return a, (x, a)

    def linear(self, x: Any, run: Run) -> tuple[Any, Any]:
        """(z = x W^T + b, saved): the forward pass without f, for an output layer whose
        activation the loss takes over."""
        return run.ops.linear(x, self.weight, self.bias, ("z", run.index)), (x, None)

    def backward(self, g, saved, run):
        x, a = saved
        return self.backward_linear(run.ops.activation_backward(self.activation, a, g), saved, run)

    def backward_linear(self, delta: Any, saved: Any, run: Run) -> tuple[Any | None, list[Any]]:
        """Backward from delta = dC/dz (the output layer's, which the loss gives)."""
        x = saved[0]
        ops, i = run.ops, run.index
        grads = [ops.weight_grad(delta, x, ("dW", i)), ops.bias_grad(delta, ("db", i))]
        dx = ops.input_grad(delta, self.weight, ("da", i)) if run.need_input_grad else None
        return dx, grads

    def config(self):
        return {"kind": self.kind, "in": self.in_features, "out": self.out_features,
                "activation": self.activation.config()}

    @classmethod
    def parameter_shapes(cls, config):
        n_in, n_out = _size(config, "in"), _size(config, "out")
        return {"weight": (n_out, n_in), "bias": (n_out,)}

    @classmethod
    def from_config(cls, config, backend, dtype):
        n_in, n_out = _size(config, "in"), _size(config, "out")
        return cls(backend.zeros((n_out, n_in), dtype), backend.zeros((n_out,), dtype),
                   get_activation(config["activation"]))

    def __repr__(self) -> str:
        return f"Dense({self.in_features} -> {self.out_features}, {self.activation!r})"


class Dropout(Layer):
    """Inverted dropout: in training, each unit is kept with probability 1 - p and
    scaled by 1 / (1 - p); at evaluation the layer is the identity.

    The keep-mask m (B, n) of 0 and 1/(1-p) multiplies both ways:
    out = x * m and dC/dx = g * m.  Masks come from the backend's own generator
    where it has one (PyTorch, CuPy) and are drawn on the host otherwise, in
    both cases seeded from ``run.rng``, so a seed gives the same masks again.
    """

    kind = "dropout"

    def __init__(self, p: float, features: int):
        try:
            p = float(p)
        except (TypeError, ValueError):
            raise ConfigError(f"dropout must be a probability in [0, 1), got {p!r}") from None
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"dropout must be a probability in [0, 1), got {p}")
        self.p = p
        self.in_features = self.out_features = int(features)

    def forward(self, x, run):
        if not run.training or self.p == 0.0:
            return x, None
        if run.rng is None:
            raise ConfigError("Dropout in training needs a random generator (run.rng)")
        keep = uniform(run.rng, tuple(x.shape), x) >= self.p
        mask = _astype(keep, x) * (1.0 / (1.0 - self.p))
        return x * mask, mask

    def backward(self, g, saved, run):
        return (g if saved is None else g * saved), []

    def config(self):
        return {"kind": self.kind, "p": self.p, "features": self.in_features}

    @classmethod
    def from_config(cls, config, backend, dtype):
        return cls(config["p"], _size(config, "features"))

    def __repr__(self) -> str:
        return f"Dropout(p={self.p:g})"


def layer_from_config(config: Any, backend: Any, dtype: Any) -> Layer:
    """The layer a :meth:`Layer.config` dict describes (placeholder parameters)."""
    if not isinstance(config, dict) or not isinstance(config.get("kind"), str):
        raise ConfigError(f"a layer description must be a dict with a 'kind', got {config!r:.80}")
    cls = LAYERS.get(config["kind"])
    if cls is None:
        raise ConfigError(f"unknown layer kind {config['kind']!r}: known are {', '.join(sorted(LAYERS))}")
    return cls.from_config(config, backend, dtype)


def _size(config: dict[str, Any], key: str) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"layer {config.get('kind')!r}: {key!r} must be a positive integer, got {value!r}")
    return value


def _astype(mask: Any, like: Any) -> Any:
    return array_namespace(like).astype(mask, like.dtype)
