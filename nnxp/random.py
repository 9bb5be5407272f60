"""Random numbers for training-time randomness (dropout masks), reproducible per seed.

The Array API has no random numbers.  :func:`uniform` draws U[0, 1) values
shaped like a batch, on the batch's device: with the backend's own generator
where it has one (PyTorch, CuPy: no host-to-device copy), else on the host
with NumPy and copied over once.  Either way the values are determined by
the host generator ``rng`` passed in (seeded by the training loop from the
run's seed, the epoch and the step), so a seed reproduces a run, and a
resumed run draws what an uninterrupted one would have.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

__all__ = ["uniform"]


def uniform(rng: np.random.Generator, shape: tuple[int, ...], like: Any) -> Any:
    """U[0, 1) values of ``shape``, with ``like``'s dtype, namespace and device."""
    if array_api_compat.is_torch_array(like):
        import torch

        generator = torch.Generator(device=like.device).manual_seed(int(rng.integers(2**63)))
        return torch.rand(shape, generator=generator, dtype=like.dtype, device=like.device)
    if array_api_compat.is_cupy_array(like):
        import cupy

        with like.device:
            generator = cupy.random.default_rng(int(rng.integers(2**63)))
            return generator.random(shape, dtype=like.dtype)
    xp = array_api_compat.array_namespace(like)
    host = rng.random(shape, dtype=np.float64)
    return xp.asarray(host, dtype=like.dtype, device=array_api_compat.device(like))
