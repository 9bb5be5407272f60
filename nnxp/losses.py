"""Cost functions, averaged over the samples of a batch.

For a batch of B samples (rows) with outputs ``a`` (B, K), pre-activations
``z`` and targets ``y`` (B, K):

``squared_error`` (the seeds' cost)::

    C = (1/B) sum_samples sum_j (a_j - y_j)^2          dC/da = (2/B) (a - y)

``half_squared_error`` (scikit-learn's MLPRegressor's)::

    C = (1/2B) sum_samples sum_j (a_j - y_j)^2         dC/da = (1/B) (a - y)

``cross_entropy`` with a softmax output (categorical) or a sigmoid output
(one binary cross-entropy per unit), computed from ``z`` through a stable
log-softmax / softplus so it never takes log(0)::

    C = -(1/B) sum y_j log a_j   (softmax)       dC/dz = (1/B) (a - y)
    C = -(1/B) sum [y log a + (1 - y) log(1 - a)]  (sigmoid)   same dC/dz

Each loss also gives its per-sample costs (``rows``: C is their mean), from
which a sample-weighted cost is formed (:func:`weighted_mean`), and
:func:`l2_penalty` is the L2 term (alpha/2) sum ||W||^2 that scikit-learn's
MLP adds to its loss.

The cross-entropy gradient is *fused* with the output activation: it is
written directly for dC/dz, which is both cheaper and exact where the
softmax Jacobian would lose digits.  The fused formulas hold for exactly
:class:`~nnxp.activations.Softmax` and :class:`~nnxp.activations.Sigmoid`; a
subclass that changes the maths gets the chain rule through its own
``backward`` (dC/da = -y/a, or (a - y)/(a(1 - a)) for one-per-unit outputs).
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from .activations import Activation, Sigmoid, Softmax
from .errors import ConfigError

__all__ = ["Loss", "SquaredError", "HalfSquaredError", "CrossEntropy", "get_loss", "log_softmax",
           "weighted_mean", "l2_penalty", "LOSSES"]


def log_softmax(z: Any) -> Any:
    """log(softmax(z)) row by row, without forming softmax: z - max - log(sum(exp(z - max)))."""
    xp = array_namespace(z)
    shifted = z - xp.max(z, axis=1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))


class Loss:
    name: str = ""

    def check_output(self, output: Activation) -> None:
        """Raise a clear error if this loss cannot follow ``output``."""

    def value(self, output: Activation, z: Any, a: Any, y: Any) -> Any:
        """The batch-mean cost, a 0-d array on the inputs' device."""
        raise NotImplementedError

    def delta(self, output: Activation, z: Any, a: Any, y: Any) -> Any:
        """dC/dz for the output layer, shape (B, K)."""
        raise NotImplementedError

    def rows(self, output: Activation, z: Any, a: Any, y: Any, clip: float = 0.0) -> Any:
        """The cost of each sample, shape (B,): :meth:`value` is their mean.

        ``clip`` (cross-entropy only): compute it from the probabilities ``a`` clipped to
        [clip, 1 - clip], as scikit-learn's ``log_loss`` does (finite where a rounds to 0 or 1).
        """
        raise NotImplementedError

    def forward(self, output: Activation, z: Any, y: Any) -> tuple[Any, Any, Any]:
        """(a = output(z), batch cost, dC/dz) in one go, for a training step."""
        a = output.forward(z)
        return a, self.value(output, z, a, y), self.delta(output, z, a, y)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


class SquaredError(Loss):
    """The seeds' cost C = sum_j (a_j - y_j)^2 per sample, gradient 2(a - y), batch-averaged."""

    name = "squared_error"

    def value(self, output, z, a, y):
        xp = array_namespace(a, y)
        diff = a - y
        return xp.sum(diff * diff) * (1.0 / a.shape[0])

    def delta(self, output, z, a, y):
        return output.backward(a, (2.0 / a.shape[0]) * (a - y))

    def rows(self, output, z, a, y, clip=0.0):
        xp = array_namespace(a, y)
        diff = a - y
        return xp.sum(diff * diff, axis=1)


class HalfSquaredError(SquaredError):
    """Half the squared error, C = (1/2) sum_j (a_j - y_j)^2 per sample, gradient a - y, batch-averaged
    (scikit-learn's MLPRegressor's loss, whose gradient is the plain residual)."""

    name = "half_squared_error"

    def value(self, output, z, a, y):
        return super().value(output, z, a, y) * 0.5

    def delta(self, output, z, a, y):
        return output.backward(a, (1.0 / a.shape[0]) * (a - y))

    def rows(self, output, z, a, y, clip=0.0):
        return super().rows(output, z, a, y) * 0.5


class CrossEntropy(Loss):
    """Cross-entropy after a softmax (categorical) or sigmoid (binary per unit) output."""

    name = "cross_entropy"

    def check_output(self, output):
        if not isinstance(output, (Softmax, Sigmoid)):
            raise ConfigError(
                f"cross_entropy needs a softmax or sigmoid output layer, not {output.name}: "
                "use output='softmax', or loss='squared_error'"
            )

    def value(self, output, z, a, y):
        xp = array_namespace(z, y)
        scale = 1.0 / z.shape[0]
        if type(output) is Sigmoid:
            # -[y log s(z) + (1-y) log(1-s(z))] = softplus(z) - y z, and
            # softplus(z) = max(z, 0) + log1p(exp(-|z|)) never overflows.
            softplus = xp.clip(z, min=0.0) + xp.log1p(xp.exp(-xp.abs(z)))
            return xp.sum(softplus - y * z) * scale
        if type(output) is Softmax:
            return -xp.sum(y * log_softmax(z)) * scale
        if isinstance(output, Sigmoid):  # a subclass: from its own outputs
            return -xp.sum(y * xp.log(a) + (1.0 - y) * xp.log(1.0 - a)) * scale
        return -xp.sum(y * xp.log(a)) * scale

    def delta(self, output, z, a, y):
        scale = 1.0 / a.shape[0]
        if type(output) in (Softmax, Sigmoid):
            return (a - y) * scale
        if isinstance(output, Sigmoid):
            return output.backward(a, (a - y) / (a * (1.0 - a)) * scale)
        return output.backward(a, -(y / a) * scale)

    def rows(self, output, z, a, y, clip=0.0):
        xp = array_namespace(z, y)
        if clip:
            a = xp.clip(a, min=clip, max=1.0 - clip)
            if isinstance(output, Sigmoid):
                return -xp.sum(y * xp.log(a) + (1.0 - y) * xp.log(1.0 - a), axis=1)
            return -xp.sum(y * xp.log(a), axis=1)
        if type(output) is Sigmoid:
            softplus = xp.clip(z, min=0.0) + xp.log1p(xp.exp(-xp.abs(z)))
            return xp.sum(softplus - y * z, axis=1)
        if type(output) is Softmax:
            return -xp.sum(y * log_softmax(z), axis=1)
        if isinstance(output, Sigmoid):
            return -xp.sum(y * xp.log(a) + (1.0 - y) * xp.log(1.0 - a), axis=1)
        return -xp.sum(y * xp.log(a), axis=1)

    def forward(self, output, z, y):
        if type(output) is not Softmax:
            return super().forward(output, z, y)
        # softmax and its log from one shift, exp and sum: a = e / s, log a = shifted - log s.
        xp = array_namespace(z, y)
        shifted = z - xp.max(z, axis=1, keepdims=True)
        e = xp.exp(shifted)
        s = xp.sum(e, axis=1, keepdims=True)
        a = e / s
        scale = 1.0 / z.shape[0]
        cost = -xp.sum(y * (shifted - xp.log(s))) * scale
        return a, cost, (a - y) * scale


def weighted_mean(rows: Any, weight: Any) -> Any:
    """sum_i w_i c_i / sum_i w_i: the sample-weighted cost from per-sample costs ``rows`` (B,)
    and weights ``weight`` (B,) on the same device (0-d array)."""
    xp = array_namespace(rows, weight)
    return xp.sum(rows * weight) / xp.sum(weight)


def l2_penalty(weights: list[Any], strength: float) -> tuple[Any, list[Any]]:
    """(value, gradients) of the L2 term (strength/2) sum_l ||W_l||^2 over the weight
    matrices ``weights`` (biases are not passed in, so not penalised): value a 0-d array,
    gradient strength * W_l for each."""
    xp = array_namespace(*weights)
    flat = [xp.reshape(w, (-1,)) for w in weights]
    value = sum(xp.vecdot(f, f) for f in flat) * (0.5 * strength)  # ||W||^2 without a W-sized temporary
    return value, [w * strength for w in weights]


LOSSES: dict[str, type[Loss]] = {cls.name: cls for cls in (SquaredError, CrossEntropy, HalfSquaredError)}
# No "mse" alias on purpose: this cost sums over outputs (the seeds'), PyTorch's MSELoss averages.
_ALIASES = {"se": "squared_error", "ce": "cross_entropy", "crossentropy": "cross_entropy"}


def get_loss(spec: str | Loss) -> Loss:
    """A loss from its name (``squared_error``, ``cross_entropy``) or instance."""
    if isinstance(spec, Loss):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"loss must be a name or a Loss, got {type(spec).__name__}")
    key = spec.strip().lower().replace("-", "_")
    name = _ALIASES.get(key, key)
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {spec!r}: choose one of {', '.join(LOSSES)}")
    return LOSSES[name]()
