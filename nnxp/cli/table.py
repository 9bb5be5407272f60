"""The ``nnxp`` commands on your own table: ``train --data``, ``evaluate --data``, ``predict --data``.

``nnxp train --data table.csv --target label`` trains a classifier (softmax,
cross-entropy), or with ``--task regression`` a regressor (identity output,
squared error on the standardised target).  The feature columns are
standardised with the training rows' mean and scale, which the model file
keeps (:class:`nnxp.data.table_spec.TableSpec`), with the class names;
``--val-split`` holds out rows (stratified by class for a classification).
``nnxp evaluate MODEL --data FILE`` scores a table (accuracy and confusion
matrix, or R², RMSE and MAE; in :mod:`.evaluate`); ``nnxp predict MODEL --data FILE`` writes one
prediction per row (the class as the table spells it, or the value).

Files: ``--data`` is a declared input; ``predict --output`` a declared output (written
atomically; the I/O layer refuses it when it is an input, before anything runs).
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..io.paths import Input

__all__ = ["TrainingData", "add_table_arguments", "class_names", "final_scores", "format_score", "integer_labels",
           "is_regression", "load_table_data", "model_table", "predict_table", "read_model", "regression_scores",
           "RegressionLines"]


def add_table_arguments(group: Any, *, train: bool = True) -> None:
    """``--data``, ``--target`` (and for training ``--task``) on ``group``."""
    group.add_argument("--data", type=Input("table"), metavar="FILE",
                       help="your own table: .csv, .npz (x, y), .parquet")
    group.add_argument("--target", metavar="COLUMN",
                       help="with --data: the column to predict" + ("" if train else " (default: the model's)"))
    if train:
        group.add_argument("--task", choices=["classification", "regression"], default="classification",
                           metavar="TASK",
                           help="with --data: classification or regression")


@dataclass
class TrainingData:
    """What ``nnxp train`` trains on: inputs ``x`` (N, n_0), one sample per row, targets ``y``
    ((N,) class indices or (N, n_L) values); ``validation`` rows held out here (a table) or by
    fit's ``validation_split`` (images); ``test`` rows scored at the end (images)."""

    name: str
    x: Any
    y: Any
    n_outputs: int
    validation: tuple[Any, Any] | None = None
    validation_split: float = 0.0
    test: tuple[Any, Any] | None = None
    classes: tuple[str, ...] = ()
    spec: Any = None  # the TableSpec of a table
    metadata: dict[str, Any] = field(default_factory=dict)  # stored in the model files

    @property
    def regression(self) -> bool:
        return self.spec is not None and self.spec.classes is None


def load_table_data(args: argparse.Namespace) -> TrainingData:
    """The table ``args.data`` as training data: split (``--val-split``), standardised, encoded."""
    from ..data.table import read_table
    from ..data.table_spec import TableSpec
    from ..split import stratified_split

    path = Path(args.data)
    if path.suffix.lower() in (".csv", ".parquet") and not args.target:
        raise ConfigError(f"--data {path}: name the column to predict with --target COLUMN")
    table = read_table(path, args.target or "y")
    rows = np.arange(len(table))
    held = None
    if args.val_split:
        if args.task == "classification":
            labels = TableSpec.fit(table, "classification").targets(table)  # checks the classes first
            rows, held = stratified_split(labels, args.val_split, args.seed)
        else:
            order = np.random.default_rng(args.seed).permutation(len(table))
            k = int(round(args.val_split * len(table)))
            if k < 1 or k >= len(table):
                raise ConfigError(f"--val-split {args.val_split} of {len(table)} rows holds out {k}: use a "
                                  "larger fraction or more rows")
            rows, held = np.sort(order[k:]), np.sort(order[:k])
    spec = TableSpec.fit(table, args.task, rows)
    x, y = spec.inputs(table.x), spec.targets(table)
    validation = (x[held], y[held]) if held is not None else None
    return TrainingData(path.name, x[rows], y[rows], spec.n_outputs, validation=validation,
                        classes=tuple(spec.classes or ()), spec=spec, metadata={"table": spec.to_metadata()})


def read_model(path: Path, device: Any) -> tuple[Any, Any, str | None]:
    """(network, its TableSpec or None, the image dataset it was trained on or None) of a model file."""
    from ..data.table_spec import TableSpec
    from ..network import network_from
    from ..serialization import read_arrays

    arrays, metadata = read_arrays(path)
    net = network_from(arrays, metadata, path, device)
    spec = None
    if "table" in metadata:
        spec = TableSpec.from_metadata(metadata["table"], path, net.sizes[0], net.sizes[-1])
    training = metadata.get("training")
    settings = training.get("settings") if isinstance(training, dict) else None
    dataset = settings.get("dataset") if isinstance(settings, dict) else None
    return net, spec, dataset if isinstance(dataset, str) and spec is None else None


def model_table(args: argparse.Namespace, net: Any, spec: Any, *, target: bool):
    """(table, network inputs) of ``args.data`` for the model (columns by name where both have names)."""
    from ..data.table import read_table

    name = None
    if target:
        npz = Path(args.data).suffix.lower() == ".npz"
        name = args.target or (spec.target if spec is not None else None) or ("y" if npz else None)
        if name is None:
            raise ConfigError(f"--data {args.data}: name the target column with --target COLUMN")
    columns = spec.columns if spec is not None else None
    table = read_table(args.data, name if target else None, columns=columns, n_features=net.sizes[0])
    x = spec.inputs(table.x) if spec is not None else table.x  # a model without a spec takes the numbers as they are
    return table, x


def class_names(net: Any, spec: Any) -> list[str]:
    return list(spec.classes) if spec is not None and spec.classes is not None else \
        [str(k) for k in range(max(2, net.sizes[-1]))]


def is_regression(net: Any, spec: Any) -> bool:
    return spec.classes is None if spec is not None else net.output.name == "identity"


def integer_labels(table: Any, k: int) -> np.ndarray:
    """A model without class names takes class indices 0..k-1."""
    from ..data.table import numeric_column

    y = numeric_column(table.path, table.target or "y", table.y, table.where, "give class indices")
    bad = np.flatnonzero((y != np.round(y)) | (y < 0) | (y >= k))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{table.path}: {table.where(i)}, column {table.target!r}: {y[i]:g} is not a class "
                        f"index of the model (0 to {k - 1})")
    return y.astype(np.int64)


def predict_table(args: argparse.Namespace, net: Any, spec: Any) -> None:
    """``nnxp predict MODEL --data FILE [--output OUT]``: one prediction per row, under a header line."""
    from .._files import atomic_open

    if args.images:
        raise ConfigError("give image files or --data TABLE, not both")
    if args.json or args.show:
        raise ConfigError(f"{'--json' if args.json else '--show'} is for images; with --data, predict writes "
                          "a CSV column (--output FILE)")
    table, x = model_table(args, net, spec, target=False)
    outputs = np.asarray(net.backend.to_numpy(net.predict(x)), dtype=np.float64)
    name = (spec.target if spec is not None else None) or "prediction"
    text = io.StringIO()
    text.write(f"{name}\n")
    if is_regression(net, spec):
        values = spec.values(outputs) if spec is not None else outputs[:, 0]
        text.writelines(f"{v:.9g}\n" for v in values)
    else:
        classes = class_names(net, spec)
        scores = np.concatenate([1.0 - outputs, outputs], axis=1) if outputs.shape[1] == 1 else outputs
        text.writelines(_csv_cell(classes[k]) + "\n" for k in np.argmax(scores, axis=1))
    if args.output is None:
        sys.stdout.write(text.getvalue())
        return
    try:
        with atomic_open(args.output, "w") as f:
            f.write(text.getvalue())
    except OSError as exc:
        raise DataError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    print(f"wrote {len(table):,} predictions to {args.output}", file=sys.stderr)


def _csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n\r') else text


def regression_scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """R² = 1 - sum (y - p)^2 / sum (y - mean y)^2 (NaN for a constant y), RMSE and MAE, on the host."""
    residual = truth - predicted
    total = float(np.sum((truth - truth.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual ** 2)) / total if total > 0 else math.nan
    return {"r2": r2, "rmse": float(np.sqrt(np.mean(residual ** 2))), "mae": float(np.mean(np.abs(residual)))}


def format_score(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"


def final_scores(net: Any, data: TrainingData) -> str:
    """The line a table's training run ends with: scores on the validation rows (else the training rows)."""
    from ..train import evaluate

    which, (x, y) = ("validation", data.validation) if data.validation is not None else \
        ("training (no --val-split)", (data.x, data.y))
    if data.regression:
        outputs = np.asarray(net.backend.to_numpy(net.predict(x)), dtype=np.float64)
        spec = data.spec
        scores = regression_scores(spec.values(np.asarray(y)), spec.values(outputs))
        return f"{which} R² {format_score(scores['r2'])}, RMSE {scores['rmse']:.6g}"
    scores = evaluate(net, x, y)
    return f"{which} accuracy {100 * scores['accuracy']:.2f}% (loss {scores['loss']:.4f})"


class RegressionLines:
    """A regression's epoch lines (a fit callback): loss and, with validation rows, their RMSE in
    the target's units, instead of fit's lines with their accuracy."""

    def __init__(self, epochs: int, target_scale: float):
        self.epochs, self.scale = epochs, target_scale

    def on_epoch_end(self, net: Any, optimizer: Any, record: dict[str, float], history: Any) -> None:
        width = len(str(self.epochs))
        parts = [f"epoch {int(record['epoch']):>{width}}/{self.epochs}", f"loss {record['loss']:.4f}"]
        if "val_loss" in record:
            parts += [f"val loss {record['val_loss']:.4f}",
                      f"val RMSE {math.sqrt(record['val_loss']) * self.scale:.4g}"]
        parts += [f"{record['seconds']:.1f}s", f"{record['samples_per_second']:,.0f} samples/s"]
        print("  ".join(parts))
