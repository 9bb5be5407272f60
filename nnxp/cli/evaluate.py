"""``nnxp evaluate``: a saved model's loss, accuracy and confusion matrix on a dataset split."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..io.paths import Input
from .args import (add_data_arguments, add_device_argument, add_threads_argument, load_data, load_model,
                   warn_other_dataset)
from .table import (add_table_arguments, class_names, format_score, integer_labels, is_regression, model_table,
                    read_model, regression_scores)

__all__ = ["add_commands", "cmd_evaluate", "confusion_matrix", "evaluate_table", "format_confusion"]


def add_commands(commands: Any) -> None:
    p = commands.add_parser("evaluate", help="accuracy and confusion matrix (or R² and RMSE) of a saved model",
                            description="Evaluate a saved model on a dataset's test split, or on your "
                                        "own table (--data).")
    p.add_argument("model", type=Input("model"), help="a .safetensors file written by nnxp train")
    add_device_argument(p)
    add_data_arguments(p)
    p.add_argument("--split", choices=["test", "train"], default="test",
                   help="which split of the image dataset (default: test)")
    add_table_arguments(p, train=False)
    add_threads_argument(p)
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..data import image_inputs
    from ..train import evaluate

    if args.data is not None:
        if args.download:
            raise ConfigError("--download is for the image datasets, not a table (--data)")
        net, spec, _ = read_model(args.model, args.device)
        evaluate_table(args, net, spec)
        return 0
    if args.target is not None:
        raise ConfigError("--target is for a table: add --data FILE")
    net, trained_on = load_model(args.model, args.device)
    data = load_data(args)
    warn_other_dataset(args.model, trained_on, data.name)
    images = data.test_images if args.split == "test" else data.train_images
    labels = data.test_labels if args.split == "test" else data.train_labels
    x = image_inputs(images)
    if net.sizes[0] != x.shape[1] or net.sizes[-1] != data.num_classes:
        raise DataError(f"{args.model} takes {net.sizes[0]} inputs and gives {net.sizes[-1]} classes; "
                        f"{data.name} has {x.shape[1]} and {data.num_classes}: use a model trained on it")
    scores = evaluate(net, x, labels)
    predicted = net.backend.to_numpy(net.classify(x))
    matrix = confusion_matrix(labels, predicted, data.num_classes)
    print(f"{args.model} on {data.name} {args.split} ({len(labels):,} samples, {net.backend})")
    print(f"loss {scores['loss']:.4f}  accuracy {100 * scores['accuracy']:.2f}%")
    print(format_confusion(matrix, data.classes))
    return 0


def evaluate_table(args: argparse.Namespace, net: Any, spec: Any) -> None:
    """``nnxp evaluate MODEL --data FILE``: prints the scores on the table's rows."""
    from ..data.table import numeric_column
    from ..train import evaluate

    table, x = model_table(args, net, spec, target=True)
    head = f"{args.model} on {args.data} ({len(table):,} rows, {net.backend})"
    if is_regression(net, spec):
        outputs = np.asarray(net.backend.to_numpy(net.predict(x)), dtype=np.float64)
        truth = numeric_column(table.path, table.target or "y", table.y, table.where, "a regression target "
                               "must be numbers")
        predicted = spec.values(outputs) if spec is not None else outputs[:, 0]
        scores = regression_scores(truth, predicted)
        print(head)
        print(f"R² {format_score(scores['r2'])}  RMSE {scores['rmse']:.6g}  MAE {scores['mae']:.6g}")
        return
    classes = class_names(net, spec)
    if spec is not None:
        labels = spec.targets(table)
    else:
        labels = integer_labels(table, len(classes))
    scores = evaluate(net, x, labels)
    predicted = net.backend.to_numpy(net.classify(x))
    print(head)
    print(f"loss {scores['loss']:.4f}  accuracy {100 * scores['accuracy']:.2f}%")
    print(format_confusion(confusion_matrix(labels, predicted, len(classes)), classes))


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts: row = true class, column = predicted class."""
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


def format_confusion(matrix: np.ndarray, classes: Sequence[str]) -> str:
    k = len(classes)
    width = max(5, len(str(matrix.max())) + 1)
    short = [c[:width - 1] for c in classes]
    label_width = max(len(c) for c in classes)
    lines = ["confusion matrix (rows: true class, columns: predicted)",
             " " * (label_width + 1) + "".join(f"{c:>{width}}" for c in short) + "  accuracy"]
    for i in range(k):
        total = matrix[i].sum()
        acc = f"{100 * matrix[i, i] / total:7.2f}%" if total else "      -"
        lines.append(f"{classes[i]:>{label_width}} " + "".join(f"{v:>{width}}" for v in matrix[i]) + "  " + acc)
    return "\n".join(lines)
