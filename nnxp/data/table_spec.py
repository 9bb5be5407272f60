"""What a model trained on a table needs to read the next one: :class:`TableSpec`.

Training on a table (``nnxp train --data``) learns, from the training rows only:

- per feature column j, the mean m_j and the scale s_j (the standard
  deviation, 1 for a constant column); the network sees (x_j - m_j) / s_j,
  as scikit-learn's ``StandardScaler`` does;
- for a classification, the class labels (text, in the table's own
  spelling), so output k of the network means ``classes[k]``;
- for a regression, the target's mean and scale: the network learns the
  standardised target and its outputs are turned back into the table's units.

The spec is stored in the model file's metadata under ``table``
(:meth:`TableSpec.to_metadata`) and checked when read back
(:meth:`TableSpec.from_metadata`): a crafted file gets one error line.  Model
files without it (trained on images) load as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import DataError
from .table import Table, numeric_column

__all__ = ["TASKS", "TableSpec"]

TASKS = ("classification", "regression")


@dataclass
class TableSpec:
    """``columns`` (None: by position), their ``mean`` and ``scale`` (F,), the ``task``, the
    ``target`` column's name, the ``classes`` (classification) or the target's
    ``target_mean`` and ``target_scale`` (regression)."""

    task: str
    target: str | None
    columns: list[str] | None
    mean: np.ndarray
    scale: np.ndarray
    classes: list[str] | None = None
    target_mean: float = 0.0
    target_scale: float = 1.0

    # -- learning it from the training rows -------------------------------------------------
    @classmethod
    def fit(cls, table: Table, task: str, rows: np.ndarray | None = None) -> "TableSpec":
        """The spec learnt from ``table``'s ``rows`` (indices; None: all), for ``task``.

        A classification needs 2 or more classes, and labels that are text or
        whole numbers; a regression needs a numeric target.
        """
        if task not in TASKS:
            raise DataError(f"unknown task {task!r}: choose classification or regression")
        if table.y is None:
            raise DataError(f"{table.path}: no target column given; name it (--target)")
        x = table.x if rows is None else table.x[rows]
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0  # a constant column: centred only
        spec = cls(task, table.target, table.columns, mean, scale)
        if task == "classification":
            labels = _labels(table)
            classes = _sorted_classes(np.unique(labels))
            _check_not_measurements(table, classes)
            if len(classes) < 2:
                raise DataError(f"{table.path}: column {table.target!r}: every row has the class {classes[0]!r}; "
                                "a classifier needs 2 or more classes (for numbers to predict: --task regression)")
            spec.classes = classes
        else:
            y = numeric_column(table.path, table.target or "y", table.y, table.where,
                               "a regression target must be numbers (for classes: --task classification)")
            y = y if rows is None else y[rows]
            spec.target_mean = float(y.mean())
            spec.target_scale = float(y.std()) or 1.0
        return spec

    # -- applying it ------------------------------------------------------------------------
    @property
    def n_outputs(self) -> int:
        """The network's output width: one per class, or 1 for a regression."""
        return len(self.classes) if self.classes is not None else 1

    def inputs(self, x: np.ndarray) -> np.ndarray:
        """Standardised features (N, F) float64: (x - mean) / scale, per column."""
        return (x - self.mean) / self.scale

    def targets(self, table: Table) -> np.ndarray:
        """The network's targets for ``table``: (N,) class indices (int64), or (N, 1) standardised values."""
        if table.y is None:
            raise DataError(f"{table.path}: no target column given; name it (--target)")
        if self.classes is None:
            y = numeric_column(table.path, table.target or "y", table.y, table.where,
                               "a regression target must be numbers")
            return ((y - self.target_mean) / self.target_scale)[:, None]
        labels = _labels(table)
        index = {name: k for k, name in enumerate(self.classes)}
        out = np.empty(len(labels), dtype=np.int64)
        for i, label in enumerate(labels):
            k = index.get(label)
            if k is None:
                raise DataError(f"{table.path}: {table.where(i)}, column {table.target!r}: {label[:40]!r} is not "
                                f"one of the model's classes ({', '.join(map(repr, self.classes[:8]))}); give "
                                "rows of the classes it was trained on")
            out[i] = k
        return out

    def values(self, outputs: np.ndarray) -> np.ndarray:
        """A regression network's outputs (N, 1) in the target's units, (N,) float64."""
        return np.asarray(outputs, dtype=np.float64)[:, 0] * self.target_scale + self.target_mean

    # -- the model file -----------------------------------------------------------------------
    def to_metadata(self) -> dict[str, Any]:
        return {"task": self.task, "target": self.target, "columns": self.columns,
                "mean": [float(v) for v in self.mean], "scale": [float(v) for v in self.scale],
                "classes": self.classes, "target_mean": self.target_mean, "target_scale": self.target_scale}

    @classmethod
    def from_metadata(cls, meta: Any, path: Any, n_inputs: int, n_outputs: int) -> "TableSpec":
        """The spec a model file records, checked against the network (``n_inputs`` features,
        ``n_outputs`` outputs); a damaged or crafted record is one DataError line."""
        def bad(field: str, problem: str) -> DataError:
            return DataError(f"{path}: table.{field}: {problem}; the file is damaged: retrain the model")

        if not isinstance(meta, dict):
            raise bad("", f"a {type(meta).__name__}, not an object")
        task = meta.get("task")
        if task not in TASKS:
            raise bad("task", f"{str(task)[:40]!r} is not classification or regression")
        target = meta.get("target")
        if target is not None and not isinstance(target, str):
            raise bad("target", "not a column name")
        columns = meta.get("columns")
        if columns is not None and (not isinstance(columns, list) or len(columns) != n_inputs
                                    or not all(isinstance(c, str) for c in columns)):
            raise bad("columns", f"not a list of {n_inputs} column names")
        mean = _floats(meta.get("mean"), n_inputs, bad, "mean", lambda v: True)
        scale = _floats(meta.get("scale"), n_inputs, bad, "scale", lambda v: v > 0)
        spec = cls(task, target, columns, mean, scale)
        if task == "classification":
            classes = meta.get("classes")
            k = max(2, n_outputs)
            if not isinstance(classes, list) or len(classes) != k or not all(isinstance(c, str) for c in classes):
                raise bad("classes", f"not a list of {k} class names for the network's {n_outputs} outputs")
            spec.classes = classes
        else:
            if n_outputs != 1:
                raise bad("task", f"a regression, but the network has {n_outputs} outputs")
            spec.target_mean, spec.target_scale = (
                float(_floats([meta.get(key)], 1, bad, key, check)[0])
                for key, check in (("target_mean", lambda v: True), ("target_scale", lambda v: v > 0)))
        return spec


def _floats(values: Any, n: int, bad: Callable[[str, str], DataError], field: str,
            ok: Callable[[float], bool]) -> np.ndarray:
    if not isinstance(values, list) or len(values) != n or not all(
            type(v) in (int, float) and math.isfinite(v) and ok(v) for v in values):
        raise bad(field, f"not {n} finite number(s) of the right sign")
    return np.asarray(values, dtype=np.float64)


def _labels(table: Table) -> list[str]:
    """The target's values as class names: text as written, whole numbers as ``3`` (not ``3.0``)."""
    y = table.y
    assert y is not None
    if y.dtype.kind in "US":
        return [str(v) for v in y]
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{table.path}: {table.where(i)}, column {table.target!r}: {y[i]!r} is not a class "
                            "label (a whole number or text); for numbers to predict: --task regression")
    return [str(int(v)) for v in y]


def _check_not_measurements(table: Table, classes: list[str]) -> None:
    """Refuse numbers with a fraction as class labels: the target is a measurement, not a class."""
    try:
        values = [float(name) for name in classes]
    except ValueError:
        return  # text labels
    for name, value in zip(classes, values):
        if not math.isfinite(value) or value != round(value):
            raise DataError(f"{table.path}: column {table.target!r}: {name[:40]!r} is not a class label (a whole "
                            "number or text); for numbers to predict: --task regression")


def _sorted_classes(names: np.ndarray) -> list[str]:
    """Class names in numeric order when they are all numbers (``2`` before ``10``), else text order."""
    names = [str(n) for n in names]
    try:
        return sorted(names, key=lambda n: (float(n), n))
    except ValueError:
        return sorted(names)
