"""Activation functions a = f(z) and their derivatives: the one place each formula lives.

Every activation works on a batch ``z`` of shape (samples, units) and takes its
array namespace from its input.  Derivatives are written in terms of the
*output* ``a = f(z)``, which every function here allows, so a layer need not
keep ``z``::

    sigmoid     f'(z) = a (1 - a)
    tanh        f'(z) = 1 - a^2
    relu        f'(z) = 1 if a > 0 else 0          (0 at z = 0, as PyTorch)
    leaky_relu  f'(z) = 1 if a > 0 else alpha      (alpha >= 0 keeps sign(a) = sign(z))
    identity    f'(z) = 1
    softmax     the Jacobian-vector product  a * (g - sum_k g_k a_k)  row by row

``backward(a, g)`` returns dC/dz = g * f'(z) given g = dC/da (a product, so a
NaN or infinity in g stays visible).  Backend fast paths
(:mod:`nnxp.kernels`) run these same formulas, registered by exact class:
a subclass that changes the maths runs its own code, never its parent's kernel.

Only the 2023.12 standard is assumed (no Python scalars in ``where``/``maximum``).
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from .errors import ConfigError

__all__ = [
    "Activation",
    "Sigmoid",
    "Tanh",
    "ReLU",
    "LeakyReLU",
    "Identity",
    "Softmax",
    "get_activation",
    "ACTIVATIONS",
]


class Activation:
    """Base class.  Subclasses define ``forward(z)`` and ``backward(a, g)``."""

    name: str = ""
    #: True when each output depends on its own input only (everything but softmax).
    elementwise: bool = True

    def forward(self, z: Any) -> Any:
        raise NotImplementedError

    def derivative(self, a: Any) -> Any:
        """f'(z) written from the output ``a = f(z)`` (elementwise activations)."""
        raise NotImplementedError

    def backward(self, a: Any, g: Any) -> Any:
        """dC/dz = g * f'(z) from the output ``a`` and the upstream gradient ``g = dC/da``."""
        return g * self.derivative(a)

    def __call__(self, z: Any) -> Any:
        return self.forward(z)

    def config(self) -> dict[str, Any]:
        """What :func:`get_activation` needs to rebuild this activation."""
        return {"name": self.name}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Activation) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.config().items())))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({params})"


class Sigmoid(Activation):
    """Logistic function 1 / (1 + e^-z), written so it never overflows.

    ``exp(-z)`` overflows float32 for z < -88; with e = exp(-|z|) <= 1 the two
    branches 1/(1+e) (z >= 0) and e/(1+e) (z < 0) are both safe.
    """

    name = "sigmoid"

    def forward(self, z):
        xp = array_namespace(z)
        e = xp.exp(-xp.abs(z))
        return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

    def derivative(self, a):
        return a * (1.0 - a)


class Tanh(Activation):
    name = "tanh"

    def forward(self, z):
        return array_namespace(z).tanh(z)

    def derivative(self, a):
        return 1.0 - a * a


class ReLU(Activation):
    name = "relu"

    def forward(self, z):
        return array_namespace(z).clip(z, min=0.0)  # max(z, 0); NaN stays NaN

    def derivative(self, a):
        xp = array_namespace(a)
        return xp.astype(a > 0, a.dtype)


class LeakyReLU(Activation):
    """max(z, alpha z) for 0 <= alpha < 1; the seed network uses alpha = 0.2."""

    name = "leaky_relu"

    def __init__(self, alpha: float = 0.2):
        if isinstance(alpha, (bool, str, bytes)):
            raise ConfigError(f"leaky_relu alpha must be a number in [0, 1), got {alpha!r}")
        try:
            alpha = float(alpha)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"leaky_relu alpha must be a number in [0, 1), got {alpha!r}") from None
        if not 0.0 <= alpha < 1.0:
            raise ConfigError(f"leaky_relu alpha must be in [0, 1), got {alpha}")
        self.alpha = alpha

    def forward(self, z):
        return array_namespace(z).where(z > 0, z, self.alpha * z)

    def derivative(self, a):
        xp = array_namespace(a)
        positive = xp.astype(a > 0, a.dtype)
        return self.alpha + (1.0 - self.alpha) * positive  # 1 where a > 0, else alpha

    def config(self):
        return {"name": self.name, "alpha": self.alpha}


class Identity(Activation):
    name = "identity"

    def forward(self, z):
        return z

    def backward(self, a, g):
        return g


class Softmax(Activation):
    """Row-wise softmax e^{z_j} / sum_k e^{z_k}, computed after subtracting the row max."""

    name = "softmax"
    elementwise = False

    def forward(self, z):
        xp = array_namespace(z)
        e = xp.exp(z - xp.max(z, axis=1, keepdims=True))
        return e / xp.sum(e, axis=1, keepdims=True)

    def backward(self, a, g):
        xp = array_namespace(a, g)
        return a * (g - xp.sum(g * a, axis=1, keepdims=True))


ACTIVATIONS: dict[str, type[Activation]] = {
    cls.name: cls for cls in (Sigmoid, Tanh, ReLU, LeakyReLU, Identity, Softmax)
}
_ALIASES = {"linear": "identity", "none": "identity", "leaky": "leaky_relu", "lrelu": "leaky_relu"}


def get_activation(spec: str | Activation | dict, **params: Any) -> Activation:
    """An activation from its name, a config dict, or an instance.

    ``"leaky_relu"`` takes ``alpha`` (default 0.2, the seed's); the spelling
    ``"leaky_relu:0.1"`` sets it inline.
    """
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, dict):
        params = {**{k: v for k, v in spec.items() if k != "name"}, **params}
        spec = spec.get("name", "")
    if not isinstance(spec, str):
        raise ConfigError(f"activation must be a name or an Activation, got {type(spec).__name__}")
    name, _, inline = spec.strip().lower().partition(":")
    name = _ALIASES.get(name, name)
    if name not in ACTIVATIONS:
        raise ConfigError(
            f"unknown activation {spec!r}: choose one of {', '.join(ACTIVATIONS)}"
        )
    if inline:
        if name != "leaky_relu":
            raise ConfigError(f"activation {name!r} takes no parameter (got {spec!r})")
        try:
            params["alpha"] = float(inline)
        except ValueError:
            raise ConfigError(f"bad leaky_relu alpha in {spec!r}: write e.g. leaky_relu:0.2") from None
    try:
        return ACTIVATIONS[name](**params)
    except TypeError:
        raise ConfigError(f"activation {name!r} does not take {sorted(params)}") from None
