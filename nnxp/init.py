"""Weight initialisation, drawn on the host from a seeded NumPy Generator.

The standard has no random numbers, and drawing on the host gives every
backend the same stream: one seed, one initial network, on NumPy, CuPy or
anything else.  Each scheme returns float64 host arrays ``W`` (out, in) and
``b`` (out,); the network casts and moves them once.

- ``uniform``: W and b from U[-1, 1), as both seed projects did.
- ``xavier`` (Glorot & Bengio 2010): W ~ U[-r, r], r = sqrt(6 / (in + out)); b = 0.
- ``he`` (He et al. 2015): W ~ N(0, 2 / in); b = 0.
- ``auto``: ``he`` before a ReLU-family activation, ``xavier`` otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from .activations import Activation, LeakyReLU, ReLU
from .errors import ConfigError

__all__ = ["initial_parameters", "check_seed", "INITS"]

INITS = ("auto", "uniform", "xavier", "he")
_ALIASES = {"glorot": "xavier", "kaiming": "he", "seed": "uniform"}


def initial_parameters(
    rng: np.random.Generator, fan_out: int, fan_in: int, scheme: str, activation: Activation
) -> tuple[np.ndarray, np.ndarray]:
    """Host float64 (W, b) for a layer of ``fan_in`` -> ``fan_out`` units."""
    scheme = resolve_init(scheme)
    if scheme == "auto":
        scheme = "he" if isinstance(activation, (ReLU, LeakyReLU)) else "xavier"
    if scheme == "uniform":
        return rng.uniform(-1.0, 1.0, (fan_out, fan_in)), rng.uniform(-1.0, 1.0, fan_out)
    if scheme == "xavier":
        r = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-r, r, (fan_out, fan_in)), np.zeros(fan_out)
    return rng.normal(0.0, math.sqrt(2.0 / fan_in), (fan_out, fan_in)), np.zeros(fan_out)


def check_seed(seed: object) -> int | None:
    """A seed for ``numpy.random.default_rng``: None or a whole number >= 0."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int,)) and not hasattr(seed, "__index__"):
        raise ConfigError(f"seed must be a whole number >= 0 (or None), got {seed!r}")
    if int(seed) < 0:
        raise ConfigError(f"seed must be a whole number >= 0, got {seed}")
    return int(seed)


def resolve_init(scheme: str) -> str:
    name = _ALIASES.get(str(scheme).lower(), str(scheme).lower())
    if name not in INITS:
        raise ConfigError(f"unknown init {scheme!r}: choose one of {', '.join(INITS)}")
    return name
