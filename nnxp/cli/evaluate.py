"""``nnxp evaluate``: a saved model's loss, accuracy and confusion matrix on a dataset split."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError
from ..io.paths import Input
from .args import add_data_arguments, add_device_argument, load_data, load_model, warn_other_dataset

__all__ = ["add_commands", "cmd_evaluate", "confusion_matrix", "format_confusion"]


def add_commands(commands: Any) -> None:
    p = commands.add_parser("evaluate", help="accuracy and confusion matrix of a saved model",
                            description="Evaluate a saved model on a dataset's test split.")
    p.add_argument("model", type=Input("model"), help="a .safetensors file written by nnxp train")
    add_device_argument(p)
    add_data_arguments(p)
    p.add_argument("--split", choices=["test", "train"], default="test", help="(default: test)")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..data import image_inputs
    from ..train import evaluate

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
