"""Optimizers: SGD (with momentum and Nesterov), Adam and AdamW.

They follow PyTorch's definitions, so results can be compared with
``torch.optim`` one step at a time.  For a parameter p with gradient g:

SGD, momentum mu, weight decay wd (L2, added to the gradient)::

    g <- g + wd p
    v <- mu v + g                      (v starts at 0, so the first v is g)
    p <- p - lr (g + mu v)   if nesterov   else   p - lr v

Adam (Kingma & Ba 2015), step t = 1, 2, ...::

    g <- g + wd p                      (AdamW instead decays p <- p (1 - lr wd))
    m <- b1 m + (1 - b1) g             v <- b2 v + (1 - b2) g^2
    p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

``Adam(eps_before_correction=True)`` adds eps to sqrt(v) before the bias
correction, the "efficient" form of Kingma & Ba's Algorithm 1 that
scikit-learn's MLP uses (its bias-corrected learning rate)::

    p <- p - lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)

which is the line above with eps replaced by ``eps_hat = eps / sqrt(1 - b2^t)``.

Each rule is written once, as :meth:`Optimizer.update`: a pure function of
the parameter, its gradient and its state that returns new arrays, so it is
correct on every Array API library, including those whose arrays cannot be
changed in place (JAX, dask, ndonnx).  :meth:`Optimizer.step` returns the new
parameters; the caller rebinds them.  Backend fast paths
(:mod:`nnxp.kernels`) run the same rule in place, registered by exact class,
reading only public attributes (``lr``, ``momentum``, ``step_size``, ...).
Hyperparameters are Python floats and the step count a Python int: no
host-device traffic.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from array_api_compat import array_namespace

from .backend import backend_of
from .errors import ConfigError

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "get_optimizer", "OPTIMIZERS"]


def _positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be finite and {bound}, got {value}")
    return value


class Optimizer:
    """Base class.  ``new_params = step(params, grads)``.

    ``params`` and ``grads`` are matching lists of arrays.  State (momentum,
    moments) and the step count belong to the parameter arrays of the last
    step (or of :meth:`load_state_dict`): the arrays :meth:`step` returned,
    or the same arrays again when a fast path updated them in place.  Given
    other arrays (another network, or this one after ``Network.to`` or
    ``set_weights``) the state starts afresh.
    """

    name = ""
    #: names of the per-parameter state buffers, e.g. ("m", "v") for Adam.
    buffers: tuple[str, ...] = ()

    def __init__(self, lr: float, weight_decay: float = 0.0):
        #: the learning rate set by the user; ``lr`` is the one in use (a schedule may lower it)
        self.initial_lr = _positive("learning rate", lr)
        self.lr = self.initial_lr
        self.weight_decay = _positive("weight_decay", weight_decay, allow_zero=True)
        self.t = 0  # steps taken
        self.state: dict[str, list[Any]] = {}
        self._params: list[Any] = []  # the parameter arrays the state belongs to

    # -- the formula ---------------------------------------------------------------
    def update(self, p: Any, g: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """One step for one parameter: (new p, new state).  Must not modify its arguments."""
        raise NotImplementedError

    # -- running it -----------------------------------------------------------------
    def step(self, params: Sequence[Any], grads: Sequence[Any]) -> list[Any]:
        """Apply :meth:`update` to every parameter; returns the new parameter arrays."""
        self.begin_step(params, grads)
        new = []
        for i, (p, g) in enumerate(zip(params, grads)):
            p, state = self.update(p, g, self.slot(i))
            for name, value in state.items():
                self.state[name][i] = value
            new.append(p)
        self._params = new
        return new

    def begin_step(self, params: Sequence[Any], grads: Sequence[Any]) -> None:
        """Make the state belong to ``params`` and count the step (``t`` is then this step's number).

        Fast paths that update in place call this, then :meth:`slot` per parameter.
        """
        if len(params) != len(grads):
            raise ConfigError(f"{len(params)} parameters but {len(grads)} gradients")
        if len(params) != len(self._params) or any(p is not q for p, q in zip(params, self._params)):
            # Other parameter arrays (another network, or this one moved or reloaded):
            # the state of the old ones means nothing for them, so start afresh.
            self.state = {name: [array_namespace(p).zeros_like(p) for p in params] for name in self.buffers}
            self.t = 0
            self._params = list(params)
        self.t += 1

    def state_for(self, params: Sequence[Any]) -> dict[str, list[Any]] | None:
        """The state arrays by buffer name if they belong to ``params`` (the very same arrays), else None."""
        if len(params) == len(self._params) and all(p is q for p, q in zip(params, self._params)):
            return self.state
        return None

    def rebind(self, params: Sequence[Any], state: dict[str, list[Any]]) -> None:
        """The same parameters moved to new arrays ``params`` (a fast path's flat buffer), their
        state copied to ``state``: the step count goes on."""
        self._params = list(params)
        self.state = {name: list(arrays) for name, arrays in state.items()}

    def slot(self, i: int) -> dict[str, Any]:
        """The state arrays of parameter ``i`` by buffer name."""
        return {name: bufs[i] for name, bufs in self.state.items()}

    # -- checkpoints ----------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(JSON-able settings and step count, state arrays by name) for checkpoints."""
        info = {"config": self.config(), "t": self.t}
        arrays = {f"{name}.{i}": a for name, bufs in self.state.items() for i, a in enumerate(bufs)}
        return info, arrays

    def load_state_dict(self, info: dict[str, Any], arrays: dict[str, Any], params: Sequence[Any]) -> None:
        """Restore what :meth:`state_dict` gave, as arrays like ``params`` (same device and dtype)."""
        self.t = int(info["t"])
        self.state = {}
        for name in self.buffers:
            bufs = []
            for i, p in enumerate(params):
                try:
                    host = arrays[f"{name}.{i}"]
                except KeyError:
                    raise ConfigError(f"optimizer state {name}.{i} is missing") from None
                if tuple(host.shape) != tuple(p.shape):
                    raise ConfigError(f"optimizer state {name}.{i} has shape {tuple(host.shape)}, "
                                      f"its parameter {tuple(p.shape)}")
                bufs.append(backend_of(p).asarray(host, p.dtype, copy=True))
            self.state[name] = bufs
        self._params = list(params)

    def reset(self) -> None:
        """Forget the step count and all state."""
        self.t = 0
        self.state = {}
        self._params = []

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "lr": self.initial_lr, "weight_decay": self.weight_decay}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum."""

    name = "sgd"

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        self.momentum = _positive("momentum", momentum, allow_zero=True)
        if self.momentum >= 1.0:
            raise ConfigError(f"momentum must be < 1, got {self.momentum}")
        if nesterov and self.momentum == 0.0:
            raise ConfigError("nesterov=True needs momentum > 0, e.g. momentum=0.9")
        self.nesterov = bool(nesterov)
        self.buffers = ("velocity",) if self.momentum else ()

    def update(self, p, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if not self.momentum:
            return p - self.lr * g, {}
        v = self.momentum * state["velocity"] + g
        step = g + self.momentum * v if self.nesterov else v
        return p - self.lr * step, {"velocity": v}

    def config(self):
        return {**super().config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam with L2 weight decay added to the gradient (as ``torch.optim.Adam``)."""

    name = "adam"
    buffers = ("m", "v")
    decoupled = False

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0, *, eps_before_correction: bool = False):
        super().__init__(lr, weight_decay)
        self.eps_before_correction = bool(eps_before_correction)
        self.beta1 = _positive("beta1", beta1, allow_zero=True)
        self.beta2 = _positive("beta2", beta2, allow_zero=True)
        if self.beta1 >= 1.0 or self.beta2 >= 1.0:
            raise ConfigError(f"Adam betas must be in [0, 1), got {self.beta1}, {self.beta2}")
        self.eps = _positive("eps", eps)

    @property
    def step_size(self) -> float:
        """lr / (1 - beta1^t): the bias-corrected step of step ``t`` (a host float)."""
        return self.lr / (1.0 - self.beta1**self.t)

    @property
    def inv_sqrt_bc2(self) -> float:
        """1 / sqrt(1 - beta2^t), so that sqrt(v_hat) = sqrt(v) * inv_sqrt_bc2."""
        return 1.0 / math.sqrt(1.0 - self.beta2**self.t)

    @property
    def eps_hat(self) -> float:
        """The eps added to sqrt(v_hat) at step ``t``: ``eps``, or ``eps / sqrt(1 - beta2^t)``
        with ``eps_before_correction`` (scikit-learn's form)."""
        return self.eps * self.inv_sqrt_bc2 if self.eps_before_correction else self.eps

    @property
    def decay_factor(self) -> float:
        """AdamW's p <- p (1 - lr wd) factor (1.0 for Adam)."""
        return 1.0 - self.lr * self.weight_decay if self.decoupled else 1.0

    def update(self, p, g, state):
        xp = array_namespace(p, g)
        if self.weight_decay:
            if self.decoupled:
                p = p * self.decay_factor
            else:
                g = g + self.weight_decay * p
        m = self.beta1 * state["m"] + (1.0 - self.beta1) * g
        v = self.beta2 * state["v"] + (1.0 - self.beta2) * (g * g)
        p = p - self.step_size * m / (xp.sqrt(v) * self.inv_sqrt_bc2 + self.eps_hat)
        return p, {"m": m, "v": v}

    def config(self):
        config = {**super().config(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}
        if self.eps_before_correction:  # only when set: model files written before it stay readable
            config["eps_before_correction"] = True
        return config


class AdamW(Adam):
    """Adam with decoupled weight decay p <- p (1 - lr wd) (Loshchilov & Hutter 2019)."""

    name = "adamw"
    decoupled = True

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(lr, beta1, beta2, eps, weight_decay)


OPTIMIZERS = {"sgd": SGD, "momentum": SGD, "nesterov": SGD, "adam": Adam, "adamw": AdamW}


def get_optimizer(spec: str | Optimizer | dict, lr: float | None = None, **params: Any) -> Optimizer:
    """An optimizer from a name: ``sgd``, ``momentum`` (SGD, momentum 0.9),
    ``nesterov`` (SGD, Nesterov momentum 0.9), ``adam`` or ``adamw``; or from
    the dict :meth:`Optimizer.config` returns."""
    if isinstance(spec, Optimizer):
        return spec
    if isinstance(spec, dict):
        params = {**{k: v for k, v in spec.items() if k != "name"}, **params}
        spec = spec.get("name", "")
    name = str(spec).strip().lower()
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {spec!r}: choose one of {', '.join(OPTIMIZERS)}")
    if name in ("momentum", "nesterov") and "nesterov" not in params:
        params.setdefault("momentum", 0.9)
        params["nesterov"] = name == "nesterov"
    if lr is not None:
        params["lr"] = lr
    try:
        return OPTIMIZERS[name](**params)
    except TypeError as exc:
        raise ConfigError(f"optimizer {name!r}: {exc}") from None

