"""EMULATION: the ``cupy-emulated`` backend, NumPy memory standing for a GPU's, run by nnxp's CuPy executor."""

from __future__ import annotations

from nnxp.backend import EMULATED_CUPY
from .compiler import compiler
from .device import EmulatedBackend

__all__ = ["emulated_cupy_backend"]


def emulated_cupy_backend() -> EmulatedBackend:
    """The ``cupy-emulated`` backend; :class:`EmulationUnavailable` (with the reason) without a C++ compiler."""
    import array_api_compat.numpy as xp_numpy

    compiler()
    return EmulatedBackend(xp_numpy, "cpu", EMULATED_CUPY)
