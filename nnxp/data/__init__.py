"""nnxp's data layer: IDX files, MNIST-style datasets, downloads (NumPy only).

Typical use::

    from nnxp.data import load_dataset
    ds = load_dataset("mnist", download=True)      # or "fashion-mnist", "bundled"
    ds.train_images.shape, ds.train_labels.shape   # (60000, 28, 28) uint8, (60000,) uint8

The downloader itself is ``nnxp.data.download.download`` (not re-exported
here, so that ``nnxp.data.download`` stays the module). This package imports
only the standard library, NumPy and :mod:`nnxp.errors`.
"""

from nnxp.data.datasets import (
    DATASET_NAMES,
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    Dataset,
    default_cache_dir,
    find_dataset_files,
    image_inputs,
    load_dataset,
)
from nnxp.data.idx import read_idx, read_images, read_labels, write_idx

__all__ = [
    "DATASET_NAMES",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "Dataset",
    "default_cache_dir",
    "find_dataset_files",
    "image_inputs",
    "load_dataset",
    "read_idx",
    "read_images",
    "read_labels",
    "write_idx",
]
