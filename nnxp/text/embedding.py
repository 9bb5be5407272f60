"""The embedding layer: a (vocabulary, dimension) table whose rows are looked up by token id.

For a batch of ``B`` contexts of ``k`` token ids, ``ids`` (B, k) integers in
[0, V), and the table ``E`` (V, d)::

    forward:   out[b, j*d:(j+1)*d] = E[ids[b, j]]          out is (B, k*d): the k rows concatenated
    backward:  dC/dE[v] = sum over (b, j) with ids[b, j] == v of g[b, j*d:(j+1)*d]

The backward pass is a scatter-add: an id that occurs several times (in one
context or across the batch) collects every one of its gradients.  The Array
API has no scatter-add, so the generic formula is a one-hot product,
``dC/dE = onehot(ids)^T @ g`` with ``onehot`` (B*k, V); NumPy and CuPy arrays
take a fast path (``np.add.at`` / ``cupyx.scatter_add``) chosen by the exact
array type, tested against the generic one.

The layer is a :class:`nnxp.layers.Layer` (kind ``"embedding"``, so model
files know it once this module is imported); it takes integer ids
(``accepts_ids``), so it can only be a network's first layer and never
returns an input gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_cupy_array
from array_api_compat import device as array_device

from ..backend import Backend, get_backend
from ..errors import ConfigError, ShapeError
from ..layers import Layer, Run

__all__ = ["Embedding", "scatter_add_rows"]


def scatter_add_rows(ids: Any, g: Any, rows: int) -> Any:
    """(rows, d) array S with S[v] = sum of g[i] over i where ids[i] == v; ``ids`` (n,), ``g`` (n, d)."""
    if type(g) is np.ndarray:  # fast path: NumPy's unbuffered in-place add
        out = np.zeros((rows, g.shape[1]), dtype=g.dtype)
        np.add.at(out, np.asarray(ids), g)
        return out
    if is_cupy_array(g):
        import cupy
        import cupyx

        out = cupy.zeros((rows, g.shape[1]), dtype=g.dtype)
        cupyx.scatter_add(out, ids, g)
        return out
    return scatter_add_rows_generic(ids, g, rows)


def scatter_add_rows_generic(ids: Any, g: Any, rows: int) -> Any:
    """:func:`scatter_add_rows` in the Array API alone: onehot(ids)^T @ g, onehot (n, rows)."""
    xp = array_namespace(g)
    classes = xp.arange(rows, dtype=ids.dtype, device=array_device(g))
    onehot = xp.astype(ids[:, None] == classes[None, :], g.dtype)
    return onehot.T @ g


class Embedding(Layer):
    """Token embeddings: ids (B, k) -> the k rows of ``table`` (V, d) concatenated, (B, k*d)."""

    kind = "embedding"
    parameter_names = ("table",)
    accepts_ids = True

    def __init__(self, table: Any, context: int):
        if len(table.shape) != 2:
            raise ShapeError(f"an embedding table is (vocabulary, dimension), got shape {tuple(table.shape)}")
        if int(context) < 1:
            raise ShapeError(f"context must be at least 1 token, got {context}")
        self.table = table
        self.context = int(context)

    @classmethod
    def create(cls, vocabulary: int, dimension: int, context: int, *, backend: Backend | Any = "cpu",
               dtype: str = "float32", rng: np.random.Generator | None = None,
               scale: float = 0.1) -> "Embedding":
        """A table drawn from N(0, scale^2) on the host (the same on every backend for one seed)."""
        backend = get_backend(backend)
        rng = rng if rng is not None else np.random.default_rng(0)
        host = rng.normal(0.0, scale, (vocabulary, dimension))
        return cls(backend.asarray(host, backend.dtype(dtype), copy=True), context)

    @property
    def vocabulary_size(self) -> int:
        return int(self.table.shape[0])

    @property
    def dimension(self) -> int:
        return int(self.table.shape[1])

    @property
    def in_features(self) -> int:
        return self.context

    @property
    def out_features(self) -> int:
        return self.context * self.dimension

    def forward(self, ids: Any, run: Run | None = None) -> tuple[Any, Any]:
        """(out (B, k*d), the flat ids saved for backward); ``ids`` (B, k) integers on the table's device."""
        xp = array_namespace(self.table)
        if len(ids.shape) != 2 or ids.shape[1] != self.context:
            raise ShapeError(f"embedding input must be (batch, {self.context}) token ids, got {tuple(ids.shape)}")
        flat = xp.reshape(ids, (-1,))
        rows = xp.take(self.table, flat, axis=0)
        return xp.reshape(rows, (ids.shape[0], self.out_features)), flat

    def backward(self, g: Any, saved: Any, run: Run | None = None) -> tuple[None, list[Any]]:
        """(None: ids have no gradient, [dC/dtable (V, d)]) for g = dC/dout (B, k*d)."""
        xp = array_namespace(g)
        rows = xp.reshape(g, (-1, self.dimension))
        return None, [scatter_add_rows(saved, rows, self.vocabulary_size)]

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocabulary": self.vocabulary_size, "dimension": self.dimension,
                "context": self.context}

    @classmethod
    def parameter_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        try:
            shape = (int(config["vocabulary"]), int(config["dimension"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"layer 'embedding': incomplete description ({exc})") from None
        if min(shape) < 1:
            raise ConfigError(f"layer 'embedding': vocabulary and dimension must be positive, got {shape}")
        return {"table": shape}

    @classmethod
    def from_config(cls, config: dict[str, Any], backend: Any, dtype: Any) -> "Embedding":
        """Placeholder (zero) parameters of the described shape; ``dtype`` a dtype or its name."""
        backend = get_backend(backend)
        if isinstance(dtype, str):
            dtype = backend.dtype(dtype)
        try:
            shape = (int(config["vocabulary"]), int(config["dimension"]))
            context = int(config["context"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"layer 'embedding': incomplete description ({exc})") from None
        if min(shape) < 1:
            raise ConfigError(f"layer 'embedding': vocabulary and dimension must be positive, got {shape}")
        return cls(backend.zeros(shape, dtype), context)

    def __repr__(self) -> str:
        return f"Embedding({self.vocabulary_size} x {self.dimension}, context {self.context})"
