"""Finding and loading MNIST, Fashion-MNIST and the bundled MNIST subset.

Images are (N, 28, 28) uint8 arrays with 0 = background and 255 = ink (as
in the IDX files); labels are (N,) uint8 class indices into
``Dataset.classes``. Nothing is normalised here.

Where files are looked for, by :func:`load_dataset`:

1. ``data_dir`` if given, and its subfolders in the layouts other tools use
   (``data_dir/MNIST/raw`` as torchvision keeps them, ``data_dir/mnist``,
   ``data_dir/raw``, ...); nothing else is searched then.
2. Otherwise the cache, ``<cache>/<name>/`` (see :func:`default_cache_dir`),
   and for Fashion-MNIST also Debian's ``/usr/share/datasets/fashion-mnist``
   (``apt-get install dataset-fashion-mnist``).

A directory counts only if it holds all four files, each under its canonical
name (``train-images-idx3-ubyte``) or dot-named variant
(``train-images.idx3-ubyte``), raw or with ``.gz``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Union

import numpy as np

from nnxp.errors import DataError, ShapeError
from nnxp.data.download import download as _download_files
from nnxp.data.idx import IMAGES_MAGIC, LABELS_MAGIC, _expect_magic, _read_bytes, read_images, read_labels

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "Dataset",
    "image_inputs",
    "load_dataset",
    "default_cache_dir",
    "find_dataset_files",
    "DATASET_NAMES",
    "MNIST_CLASSES",
    "FASHION_MNIST_CLASSES",
    "BUNDLED_SHA256",
]

DATASET_NAMES: tuple[str, ...] = ("bundled", "mnist", "fashion-mnist")

MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_CLASSES = {"bundled": MNIST_CLASSES, "mnist": MNIST_CLASSES, "fashion-mnist": FASHION_MNIST_CLASSES}

#: Where Debian's dataset-fashion-mnist package installs the four .gz files.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

# Subfolders of --data-dir that other tools use, per dataset (torchvision:
# root/MNIST/raw, root/FashionMNIST/raw). Kept per dataset so that a folder
# holding both never hands Fashion-MNIST to a request for MNIST.
_SUBDIRS = {
    "mnist": ("mnist", "MNIST", "mnist/raw", "MNIST/raw", "raw"),
    "fashion-mnist": (
        "fashion-mnist", "FashionMNIST", "fashion-mnist/raw", "FashionMNIST/raw", "raw",
    ),
}

# (Dataset field, canonical stem, dot-named stem)
_PARTS: tuple[tuple[str, str, str], ...] = (
    ("train_images", "train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    ("train_labels", "train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    ("test_images", "t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    ("test_labels", "t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
)

#: SHA-256 of the files in nnxp/data/bundled/, written by
#: scripts/make_bundled_mnist.py; checked on every load of "bundled".
BUNDLED_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "ac12360274638db2d7e1b04ce90cbbe7da0c23df7e67045b4d216f8bff4767e1",
    "train-labels-idx1-ubyte.gz": "623b39054ffa4b67d32244ef56590f993242a8a5791d926e096e0eb3e0fa3290",
    "t10k-images-idx3-ubyte.gz": "78fceae0dccd016c2ab4b02813a973054f5c6ab193c9c6ced6f3bd4813fe42f1",
    "t10k-labels-idx1-ubyte.gz": "3e24e9f5684355790a199e8a6fbff1ce08f8976c0ed1d49f7b42fe7d32c1d304",
}


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test split of 28x28 grey images with integer labels.

    ``train_images``/``test_images``: (N, 28, 28) uint8, 0..255.
    ``train_labels``/``test_labels``: (N,) uint8, indices into ``classes``.
    ``source``: the directory the files came from, or ``"bundled"``.
    (Equality is identity: comparing datasets element-wise is rarely meant.)
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={self.train_images.shape[0]}, "
            f"test={self.test_images.shape[0]}, image_shape={self.train_images.shape[1:]}, "
            f"classes={len(self.classes)}, source={self.source!r})"
        )


def image_inputs(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 images -> (N, 784) float32 network inputs in [0, 1] (pixel / 255).

    Any (N, H, W) or (N, pixels) array of real numbers from 0 to 255 is
    accepted; anything else (one image without its batch axis, an empty
    batch, an object or complex array, NaN, values outside 0..255) is a
    :class:`~nnxp.errors.ShapeError` naming the problem.
    """
    images = np.asarray(images)
    if images.dtype.kind not in "uif" or images.dtype.kind == "b":
        raise ShapeError(f"images must be an array of pixel values (uint8 or float), got dtype {images.dtype}"
                         f"{' (object: mixed or missing values)' if images.dtype == object else ''}")
    if images.ndim not in (2, 3):
        raise ShapeError(f"images must be (N, height, width) or (N, pixels), got a {images.ndim}-D array of "
                         f"shape {images.shape}; for one image use images[None]")
    if images.shape[0] == 0 or images.size == 0:
        raise ShapeError(f"images hold no image (shape {images.shape}): give at least one")
    if images.dtype.kind == "f":
        if not np.isfinite(images).all():
            raise ShapeError("images hold NaN or infinite pixel values: give pixel values from 0 to 255")
    low, high = images.min(), images.max()
    if low < 0 or high > 255:
        raise ShapeError(f"images hold pixel values from {low} to {high}: give values from 0 to 255 "
                         "(image_inputs divides by 255)")
    flat = images.reshape(len(images), -1).astype(np.float32)
    flat *= np.float32(1.0 / 255.0)
    return flat


def default_cache_dir() -> Path:
    """The cache root: ``$NNXP_CACHE_DIR``, else ``$XDG_CACHE_HOME/nnxp``, else ``~/.cache/nnxp``.

    Files of dataset X live in ``<cache root>/X/``.
    """
    env = os.environ.get("NNXP_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore relative paths
        return Path(xdg) / "nnxp"
    try:
        return Path.home() / ".cache" / "nnxp"
    except RuntimeError:
        raise DataError(
            "cannot find the home directory for the data cache; set NNXP_CACHE_DIR to a writable directory"
        ) from None


def _normalise_name(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    if key == "fashionmnist":
        key = "fashion-mnist"
    if key not in DATASET_NAMES:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return key


def find_dataset_files(directory: PathLike) -> dict[str, Path]:
    """The dataset files present in ``directory``, keyed by Dataset field name.

    Keys are among ``train_images``, ``train_labels``, ``test_images``,
    ``test_labels``; a missing file has no key. Within a directory the raw
    canonical name wins over ``.gz`` and over the dot-named variants.
    """
    directory = Path(directory)
    found: dict[str, Path] = {}
    for field, canonical, dotted in _PARTS:
        for stem in (canonical, dotted):
            for suffix in ("", ".gz"):
                path = directory / (stem + suffix)
                if path.is_file():
                    found[field] = path
                    break
            if field in found:
                break
    return found


def _search_dirs(key: str, data_dir: Path | None, cache_dir: Path | None) -> list[Path]:
    if data_dir is not None:
        return [data_dir] + [data_dir / sub for sub in _SUBDIRS[key]]
    root = cache_dir if cache_dir is not None else default_cache_dir()
    dirs = [root / key]
    if key == "fashion-mnist":
        dirs.append(DEBIAN_FASHION_MNIST_DIR)
    return dirs


def dataset_files(name: str, data_dir: PathLike | None = None, *, cache_dir: PathLike | None = None) -> list[Path]:
    """Every path :func:`load_dataset` may read (or download into) for these arguments, present or not:
    the files a command must never write over. None for ``"bundled"`` (it is inside nnxp)."""
    key = _normalise_name(name)
    if key == "bundled":
        return []
    data_path = Path(data_dir).expanduser() if data_dir is not None else None
    cache_path = Path(cache_dir).expanduser() if cache_dir is not None else None
    return [d / (stem + suffix) for d in _search_dirs(key, data_path, cache_path)
            for _, canonical, dotted in _PARTS for stem in (canonical, dotted) for suffix in ("", ".gz")]


def load_dataset(
    name: str,
    data_dir: PathLike | None = None,
    *,
    download: bool = False,
    cache_dir: PathLike | None = None,
    progress=None,
) -> Dataset:
    """Load ``"bundled"``, ``"mnist"`` or ``"fashion-mnist"`` as a :class:`Dataset`.

    ``data_dir``: a directory holding the four IDX files (see the module
    docstring for the names and subfolder layouts accepted). Without it the
    cache ``<cache_dir>/<name>/`` is used (``cache_dir`` defaults to
    :func:`default_cache_dir`), plus Debian's copy for Fashion-MNIST.

    ``download``: if the files are not found, download them (into
    ``data_dir`` if given, else into the cache) from the mirrors in
    :mod:`nnxp.data.download`, verifying their SHA-256. Files that are found
    are used as they are, without a network access or hash check.
    ``progress(bytes_done, bytes_total)`` is passed to the downloader.

    ``"bundled"`` is the 5,000-digit MNIST subset shipped inside nnxp (4,000
    train, 1,000 test); it ignores the other arguments and never downloads.
    """
    key = _normalise_name(name)
    if key == "bundled":
        return _load_bundled()

    data_path = Path(data_dir).expanduser() if data_dir is not None else None
    cache_path = Path(cache_dir).expanduser() if cache_dir is not None else None
    if data_path is not None and data_path.exists() and not data_path.is_dir():
        raise DataError(f"{data_path}: --data-dir must be a directory holding the four IDX files, not a file")
    if data_path is not None and not data_path.exists() and not download:
        raise DataError(
            f"{data_path}: data directory does not exist; check the --data-dir path, add --download "
            "to fetch the files into it, or leave --data-dir out to use the cache"
        )

    dirs = _search_dirs(key, data_path, cache_path)
    partial: list[tuple[Path, dict[str, Path]]] = []
    for d in dirs:
        files = find_dataset_files(d)
        if len(files) == len(_PARTS):
            return _load_files(key, files, str(d))
        if files:
            partial.append((d, files))

    dest = data_path if data_path is not None else dirs[0]
    if not download:
        raise DataError(_not_found_message(key, dirs, partial, data_path, dest))
    _download_files(key, dest, progress=progress)
    files = {field: dest / (canonical + ".gz") for field, canonical, _ in _PARTS}
    return _load_files(key, files, str(dest))


def _not_found_message(
    key: str,
    dirs: list[Path],
    partial: list[tuple[Path, dict[str, Path]]],
    data_dir: Path | None,
    dest: Path,
) -> str:
    if data_dir is not None:
        subs = [s for s in _SUBDIRS[key] if (data_dir / s).is_dir()]
        looked = str(data_dir) + (f" (and its subfolders {', '.join(subs)})" if subs else "")
    else:
        looked = ", ".join(str(d) for d in dirs)
    details = ""
    for d, files in partial:
        missing = [canon for field, canon, _ in _PARTS if field not in files]
        details += f"; {d} lacks {', '.join(missing)} (or .gz)"
    fixes = (
        f"pass --download (download=True) to fetch it into {dest}, or put the four files "
        f"({', '.join(c + '.gz' for _, c, _ in _PARTS)}, or unzipped) in a directory and pass --data-dir DIR"
    )
    if key == "fashion-mnist":
        fixes += ", or install Debian's copy with 'apt-get install dataset-fashion-mnist'"
    return f"{key} dataset not found: looked in {looked}{details}; {fixes}"


def _load_files(key: str, files: dict[str, Path], source: str) -> Dataset:
    arrays = {}
    for field, _, _ in _PARTS:
        reader = read_images if field.endswith("images") else read_labels
        arrays[field] = reader(files[field])
    _check(key, arrays, {f: str(p) for f, p in files.items()})
    return Dataset(name=key, source=source, classes=_CLASSES[key], **arrays)


def _check(key: str, arrays: dict[str, np.ndarray], where: dict[str, str]) -> None:
    """Cross-file checks: matching counts, 28x28 images, labels in range."""
    n_classes = len(_CLASSES[key])
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        img_src, lab_src = where[f"{split}_images"], where[f"{split}_labels"]
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"{img_src} has {images.shape[0]} images but {lab_src} has {labels.shape[0]} labels; "
                "the files do not belong together, replace them with a matching pair"
            )
        if images.shape[1:] != (28, 28):
            raise DataError(
                f"{img_src}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28 "
                f"for {key}; use the {key} image files"
            )
        if labels.size and int(labels.max()) >= n_classes:
            raise DataError(
                f"{lab_src}: label {int(labels.max())} is out of range 0..{n_classes - 1} for {key}; "
                f"use the {key} label files"
            )


def _load_bundled() -> Dataset:
    root = resources.files("nnxp.data").joinpath("bundled")
    arrays = {}
    where = {}
    for field, canonical, _ in _PARTS:
        fname = canonical + ".gz"
        where[field] = f"bundled {fname}"
        try:
            data = root.joinpath(fname).read_bytes()
        except OSError:
            raise DataError(
                f"nnxp's bundled file {fname} is missing; reinstall nnxp "
                "(pip install --force-reinstall nnxp)"
            ) from None
        if hashlib.sha256(data).hexdigest() != BUNDLED_SHA256[fname]:
            raise DataError(
                f"nnxp's bundled file {fname} is corrupt (SHA-256 mismatch); reinstall nnxp "
                "(pip install --force-reinstall nnxp)"
            )
        magic = IMAGES_MAGIC if field.endswith("images") else LABELS_MAGIC
        arrays[field] = _expect_magic(_read_bytes(data, where[field]), where[field], magic)
    _check("bundled", arrays, where)
    return Dataset(name="bundled", source="bundled", classes=MNIST_CLASSES, **arrays)
