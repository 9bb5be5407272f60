"""Reusable output arrays for the fast paths, keyed by role and layer."""

from __future__ import annotations

from typing import Any, Hashable

from .reference import ArrayAPIOps

__all__ = ["BufferedOps"]


class BufferedOps(ArrayAPIOps):
    """Base of the fast paths: reusable output arrays, keyed by role and layer.

    An array a fast path returns is valid only until the next call with the
    same key, so fast ops are for the training loop's own use; the public API
    (``Network.forward``, ``Network.gradients``) runs the reference.
    """

    def __init__(self) -> None:
        self._buffers: dict[Hashable, Any] = {}

    def _empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        raise NotImplementedError

    def buffer(self, key: Hashable, shape: tuple[int, ...], dtype: Any) -> Any:
        """A reusable (uninitialised) array; a smaller batch gets a leading slice."""
        buf = self._buffers.get(key)
        if buf is None or buf.dtype != dtype or buf.shape[1:] != shape[1:] or buf.shape[0] < shape[0]:
            buf = self._empty(shape, dtype)
            self._buffers[key] = buf
        return buf[: shape[0]] if buf.shape[0] != shape[0] else buf
