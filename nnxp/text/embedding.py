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

The layer follows the Layer interface of the layer spec (``parameters``,
``set_parameters``, ``forward(x, run)``, ``backward(g, saved, run)``,
``config``/``from_config``); it is the first layer of a network and takes
integer ids (``accepts_ids``), so it never returns an input gradient.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from array_api_compat import array_namespace, is_cupy_array
from array_api_compat import device as array_device

from ..backend import Backend, get_backend
from ..errors import ShapeError

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


class Embedding:
    """Token embeddings: ids (B, k) -> the k rows of ``table`` (V, d) concatenated, (B, k*d)."""

    kind: ClassVar[str] = "embedding"
    accepts_ids: ClassVar[bool] = True

    def __init__(self, table: Any, context: int):
        if len(table.shape) != 2:
            raise ShapeError(f"an embedding table is (vocabulary, dimension), got shape {tuple(table.shape)}")
        if context < 1:
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
    def vocabulary(self) -> int:
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

    def parameters(self) -> list[Any]:
        return [self.table]

    def set_parameters(self, arrays: list[Any]) -> None:
        (table,) = arrays
        if tuple(table.shape) != tuple(self.table.shape):
            raise ShapeError(f"embedding table of shape {tuple(table.shape)} given for {tuple(self.table.shape)}")
        self.table = table

    def forward(self, ids: Any, run: Any = None) -> tuple[Any, Any]:
        """(out (B, k*d), the flat ids saved for backward); ``ids`` (B, k) integers on the table's device."""
        xp = array_namespace(self.table)
        if len(ids.shape) != 2 or ids.shape[1] != self.context:
            raise ShapeError(f"embedding input must be (batch, {self.context}) token ids, got {tuple(ids.shape)}")
        flat = xp.reshape(ids, (-1,))
        rows = xp.take(self.table, flat, axis=0)
        return xp.reshape(rows, (ids.shape[0], self.out_features)), flat

    def backward(self, g: Any, saved: Any, run: Any = None) -> tuple[None, list[Any]]:
        """(None: ids have no gradient, [dC/dtable (V, d)]) for g = dC/dout (B, k*d)."""
        xp = array_namespace(g)
        rows = xp.reshape(g, (-1, self.dimension))
        return None, [scatter_add_rows(saved, rows, self.vocabulary)]

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocabulary": self.vocabulary, "dimension": self.dimension,
                "context": self.context}

    @classmethod
    def from_config(cls, config: dict[str, Any], backend: Any = "cpu", dtype: str = "float32") -> "Embedding":
        backend = get_backend(backend)
        table = backend.zeros((int(config["vocabulary"]), int(config["dimension"])), backend.dtype(dtype))
        return cls(table, int(config["context"]))

    def __repr__(self) -> str:
        return f"Embedding({self.vocabulary} x {self.dimension}, context {self.context})"
