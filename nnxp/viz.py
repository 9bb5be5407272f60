"""Looking at data and models: ``nnxp predict``, ``nnxp images`` and ``nnxp plot``.

- ``nnxp predict MODEL IMAGE...`` classifies your own digit images: each is
  read (PGM by the built-in parser; PNG, JPEG and the rest through Pillow),
  turned into an MNIST-style 28x28 image by :func:`to_mnist` and fed to the
  model in one batch.
- ``nnxp images`` prints dataset images as text art with their labels (and a
  model's predictions, mistakes marked), and writes them as a grid image.
- ``nnxp plot METRICS`` draws the loss and accuracy curves of the JSON-lines
  file ``nnxp train --metrics`` writes.

Image conventions: a grey image is an (H, W) uint8 array, 0..255, row 0 at
the top.  MNIST-style images are (28, 28) uint8 with 0 = background and
255 = ink (a white digit on black), as :mod:`nnxp.data` loads them.

Pillow and matplotlib are optional (``pip install 'nnxp[plot]'``) and only
imported by the functions that need them; figures are built on
:class:`matplotlib.figure.Figure` directly, without pyplot's global state.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import ConfigError, DataError, NnxpError

__all__ = [
    "add_commands",
    "read_image",
    "read_pgm",
    "to_mnist",
    "text_art",
    "format_digits",
    "read_metrics",
    "digit_grid_figure",
    "metrics_figure",
]

INSTALL_PLOT = "pip install 'nnxp[plot]'"

#: Text-art characters from background (0) to full ink (255).
RAMP = " .:-=+*#%@"

# MNIST's recipe: the digit's bounding box scaled to 20 px on its longer side,
# then placed in a 28x28 field with its centre of mass (in pixel-index
# coordinates) at (14, 14); the bundled images measure 14.01, 13.99 on average.
FIELD = 28
BOX = 20
CENTRE = 14.0
# Below this difference between ink and background (out of 255) an image counts as blank.
MIN_CONTRAST = 32.0
# Most digits one grid image holds (a 25x16 grid is already 2000x2300 pixels).
MAX_GRID = 400
FIGURE_FORMATS = ("png", "svg", "pdf")


# -- command wiring -------------------------------------------------------------------------------

def add_commands(commands: Any, data_arguments: Any, device_argument: Any) -> None:
    """Add ``predict``, ``images`` and ``plot`` to the ``nnxp`` subparsers ``commands``.

    ``data_arguments(p)`` adds ``--dataset/--data-dir/--download`` and
    ``device_argument(p)`` adds ``--device`` (both from :mod:`nnxp.cli`).
    """
    from .cli import nonnegative_int, positive_int

    p = commands.add_parser(
        "predict", help="classify your own digit images with a saved model",
        description="Classify image files with a saved model. Each image is made MNIST-like: "
                    "greyscale, white digit on black (a bright background is inverted), cropped "
                    "to the digit, scaled to 20 px and centred by mass in 28x28. Works best on a "
                    "cropped, evenly lit digit drawn with a thick stroke.")
    p.add_argument("model", type=Path, metavar="MODEL", help="a .safetensors file written by nnxp train")
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE",
                   help="PGM files (read without extra packages), or PNG, JPEG and other "
                        f"formats Pillow reads ({INSTALL_PLOT})")
    device_argument(p)
    p.add_argument("--classes", default="auto", choices=["auto", "mnist", "fashion-mnist"],
                   help="names of a 10-output model's classes: auto takes the dataset the model "
                        "file was trained on, digits if it does not say (default: auto)")
    p.add_argument("--top", type=positive_int, default=3, metavar="K",
                   help="show the K most likely classes (default: 3)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object per image instead")
    out.add_argument("--show", action="store_true",
                     help="also print each image as the network sees it (28x28 text art)")
    p.set_defaults(func=cmd_predict)

    p = commands.add_parser(
        "images", help="show dataset images as text art or a grid image (with predictions)",
        description="Print dataset images as text art with their labels; with --model also the "
                    "model's predictions, mistakes marked; with --png also as a grid image.")
    data_arguments(p)
    device_argument(p)
    p.add_argument("--split", default="test", choices=["test", "train"], help="(default: test)")
    p.add_argument("--count", type=positive_int, default=8, metavar="N",
                   help="how many images (default: 8)")
    p.add_argument("--start", type=nonnegative_int, default=0, metavar="I",
                   help="index of the first image (default: 0)")
    p.add_argument("--model", type=Path, metavar="PATH", help="also show this model's predictions")
    p.add_argument("--only-mistakes", action="store_true",
                   help="with --model: show only images the model gets wrong, from --start on")
    p.add_argument("--png", type=Path, metavar="PATH",
                   help=f"also write a grid image (.png, .svg or .pdf; needs matplotlib: {INSTALL_PLOT})")
    p.add_argument("--no-text", action="store_true", help="print no text art (use with --png)")
    p.set_defaults(func=cmd_images)

    p = commands.add_parser(
        "plot", help="plot the loss and accuracy curves of a training run",
        description="Plot loss and accuracy per epoch (train and test) from the JSON-lines file "
                    f"nnxp train --metrics writes. Needs matplotlib: {INSTALL_PLOT}.")
    p.add_argument("metrics", type=Path, metavar="METRICS", help="the file nnxp train --metrics wrote")
    p.add_argument("-o", "--output", type=Path, metavar="PATH",
                   help="image to write: .png, .svg or .pdf (default: METRICS with suffix .png)")
    p.set_defaults(func=cmd_plot)


# -- reading images -----------------------------------------------------------------------------

def read_image(path: str | os.PathLike) -> np.ndarray:
    """The image file ``path`` as an (H, W) uint8 grey array, row 0 at the top.

    PGM (binary P5 or ASCII P2) is read by :func:`read_pgm`; anything else by
    Pillow, if installed: colour is converted to luma, a transparent
    background is filled with a colour that contrasts with the strokes, and
    a camera's EXIF orientation is applied.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"image file {path} not found: check the path") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory: give image files") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not data:
        raise DataError(f"{path} is empty: give a PNG, JPEG or PGM image")
    if data[:2] in (b"P2", b"P5"):
        return read_pgm(data, name=str(path))
    return _read_with_pillow(data, path)


def read_pgm(data: bytes, name: str = "PGM data") -> np.ndarray:
    """Decode a PGM image (binary ``P5`` or ASCII ``P2``) to (H, W) uint8.

    Follows the Netpbm format: magic, width, height and maxval separated by
    whitespace, ``#`` comments to the end of a line; P5 samples are one byte
    (maxval < 256) or two bytes big-endian.  Samples are scaled from
    0..maxval to 0..255.  Only the first image of a multi-image file is read.
    """
    magic = data[:2]
    if magic not in (b"P2", b"P5"):
        raise DataError(f"{name} is not a PGM file (it starts with {data[:2]!r}, not P2 or P5)")
    fields: list[int] = []
    pos, n = 2, len(data)
    while len(fields) < 3:
        if pos >= n:
            raise DataError(f"{name}: truncated PGM header (it needs width, height and maxval)")
        c = data[pos:pos + 1]
        if c.isspace():
            pos += 1
        elif c == b"#":
            end = data.find(b"\n", pos)
            pos = n if end < 0 else end + 1
        else:
            end = pos
            while end < n and not data[end:end + 1].isspace() and data[end:end + 1] != b"#":
                end += 1
            token = data[pos:end]
            if not token.isdigit():
                raise DataError(f"{name}: bad PGM header value {token[:20]!r}; expected a whole number")
            fields.append(int(token))
            pos = end
    width, height, maxval = fields
    if width < 1 or height < 1:
        raise DataError(f"{name}: PGM size {width}x{height} has no pixels")
    if not 1 <= maxval <= 65535:
        raise DataError(f"{name}: PGM maxval {maxval} is outside 1..65535")
    count = width * height
    if magic == b"P5":
        if pos >= n or not data[pos:pos + 1].isspace():
            raise DataError(f"{name}: truncated PGM file (no pixel data after the header)")
        pos += 1  # exactly one whitespace byte separates the header from the raster
        itemsize = 1 if maxval < 256 else 2
        raster = data[pos:pos + count * itemsize]
        if len(raster) < count * itemsize:
            raise DataError(f"{name}: truncated PGM file: {width}x{height} pixels need "
                            f"{count * itemsize} bytes, found {len(raster)}")
        values = np.frombuffer(raster, dtype=np.uint8 if itemsize == 1 else ">u2").astype(np.int64)
    else:
        tokens = re.sub(rb"#[^\n]*", b" ", data[pos:]).split()
        if len(tokens) < count:
            raise DataError(f"{name}: truncated PGM file: {width}x{height} pixels, found {len(tokens)} values")
        try:
            values = np.array([int(t) for t in tokens[:count]], dtype=np.int64)
        except ValueError:
            bad = next(t for t in tokens[:count] if not t.isdigit())
            raise DataError(f"{name}: bad PGM pixel value {bad[:20]!r}; expected whole numbers") from None
    if values.max() > maxval:
        raise DataError(f"{name}: PGM pixel value {int(values.max())} exceeds its maxval {maxval}")
    if maxval != 255:
        values = (values * 255 + maxval // 2) // maxval  # rounded, in integers
    return values.astype(np.uint8).reshape(height, width)


def _read_with_pillow(data: bytes, path: Path) -> np.ndarray:
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise NnxpError(f"reading {path} needs Pillow (without it nnxp reads only PGM): "
                        f"{INSTALL_PLOT}, or convert the image to PGM") from None
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
            return _pillow_grey(image)
    except Image.UnidentifiedImageError:
        raise DataError(f"{path} is not an image file nnxp can read: give a PNG, JPEG or PGM image") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path} is a damaged or unsupported image ({exc}): "
                        "give a PNG, JPEG or PGM image") from None


def _pillow_grey(image: Any) -> np.ndarray:
    """A Pillow image -> (H, W) uint8 grey."""
    if image.mode.startswith("I;16"):
        return np.round(np.asarray(image, dtype=np.float64) / 257.0).astype(np.uint8)
    if image.mode in ("I", "F"):
        a = np.asarray(image, dtype=np.float64)
        top = a.max()
        return np.round(np.clip(a * (255.0 / top if top > 255 else 1.0), 0, 255)).astype(np.uint8)
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    if not has_alpha:
        return np.asarray(image.convert("L"), dtype=np.uint8)
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float64)
    grey = rgba[..., :3] @ np.array([0.299, 0.587, 0.114])
    alpha = rgba[..., 3] / 255.0
    if alpha.min() < 1.0:
        # Strokes drawn on a transparent canvas: what colour the transparent
        # pixels hide is arbitrary (often black), so lay the image on a backdrop
        # that contrasts with the opaque strokes.
        ink = float((grey * alpha).sum() / max(alpha.sum(), 1e-12))
        backdrop = 255.0 if ink < 128 else 0.0
        grey = grey * alpha + backdrop * (1.0 - alpha)
    return np.round(np.clip(grey, 0, 255)).astype(np.uint8)


# -- MNIST-style preprocessing ------------------------------------------------------------------

def to_mnist(grey: np.ndarray, name: str = "image") -> np.ndarray:
    """An (H, W) grey image of one digit -> (28, 28) uint8 as MNIST's were made.

    1. Background: the median of the outermost pixel frame.  A bright
       background (dark digit on paper) is inverted, so ink is bright.
    2. Contrast: background -> 0, the brightest ink -> 1; background noise
       (estimated from the frame; none in a clean image) is cut.
    3. Crop to the ink's bounding box, scale it (anti-aliased, aspect kept)
       so its longer side is 20 px, brightest pixel -> 255.
    4. Paste it in a 28x28 black field so its centre of mass is at pixel
       (14, 14) (row, column; integer shift, kept inside the field).

    An MNIST image passes through unchanged but for rounding. ``name`` is
    used in the error raised (:class:`DataError`) for an image without a
    visible digit.
    """
    x = np.asarray(grey, dtype=np.float32)
    if x.ndim != 2 or x.size == 0:
        raise DataError(f"{name}: expected a 2-D grey image, got shape {x.shape}")
    border = np.concatenate([x[0], x[-1], x[1:-1, 0], x[1:-1, -1]])
    if np.median(border) > 127.5:
        x, border = 255.0 - x, 255.0 - border
    background = float(np.median(border))
    contrast = float(x.max()) - background
    if contrast < MIN_CONTRAST:
        raise DataError(f"{name}: no digit found (the image is blank or has too little contrast); "
                        "give an image of one dark digit on a light background or the reverse")
    x = np.clip((x - background) / contrast, 0.0, 1.0)
    # The frame's 75th-percentile deviation is 0.67-1.15 standard deviations of
    # Gaussian noise (the lower end when the noise is clipped at white), so the
    # floor is 5-9 of them: no noise pixel of even a large photo survives to
    # stretch the bounding box, and strokes touching the frame do not count.
    noise = min(0.5, 8.0 * float(np.percentile(np.abs(border - background), 75)) / contrast)
    if noise > 0:
        x = np.clip((x - noise) / (1.0 - noise), 0.0, 1.0)
    rows, cols = np.flatnonzero(x.any(axis=1)), np.flatnonzero(x.any(axis=0))
    x = x[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = x.shape
    scale = BOX / max(h, w)
    h2, w2 = max(1, round(h * scale)), max(1, round(w * scale))
    x = _resize_matrix(h, h2) @ x @ _resize_matrix(w, w2).T
    x /= x.max()
    mass = x.sum()
    cy = float(np.arange(h2) @ x.sum(axis=1)) / mass
    cx = float(np.arange(w2) @ x.sum(axis=0)) / mass
    top = min(max(round(CENTRE - cy), 0), FIELD - h2)
    left = min(max(round(CENTRE - cx), 0), FIELD - w2)
    out = np.zeros((FIELD, FIELD), dtype=np.float32)
    out[top:top + h2, left:left + w2] = x
    return np.round(out * 255.0).astype(np.uint8)


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights resampling a line of n_in pixels to n_out.

    A triangle (linear) filter widened by the shrink factor when shrinking,
    so every source pixel contributes (anti-aliasing), as Pillow's BILINEAR
    resize does; rows sum to 1 and equal sizes give the identity.
    """
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    distance = np.abs((np.arange(n_in) + 0.5)[None, :] - centres[:, None]) / support
    weights = np.maximum(0.0, 1.0 - distance).astype(np.float32)
    return weights / weights.sum(axis=1, keepdims=True)


# -- text art -----------------------------------------------------------------------------------

def text_art(image: np.ndarray) -> list[str]:
    """(H, W) uint8 image -> H strings of W characters from :data:`RAMP` (space = 0)."""
    levels = (np.asarray(image, dtype=np.int64) * len(RAMP)) // 256
    return ["".join(RAMP[v] for v in row) for row in levels]


def format_digits(images: Sequence[np.ndarray], headers: Sequence[Sequence[str]], width: int = 80,
                  gap: int = 3) -> str:
    """Text art of ``images`` side by side, as many per row as fit in ``width`` columns.

    ``headers[i]`` are the lines printed above image i (cut to the art's
    width).  Each image gives ``len(headers[i])`` header lines then one line
    per pixel row; rows of images are separated by one empty line.
    """
    blocks = []
    for image, head in zip(images, headers):
        art = text_art(image)
        w = len(art[0])
        blocks.append([line[:w].ljust(w) for line in head] + art)
    if not blocks:
        return ""
    block_width = len(blocks[0][0])
    per_row = max(1, (width + gap) // (block_width + gap))
    height = max(len(b) for b in blocks)
    rows = []
    for i in range(0, len(blocks), per_row):
        group = [b + [" " * block_width] * (height - len(b)) for b in blocks[i:i + per_row]]
        # Lines keep their trailing spaces: a blank pixel row is never an empty
        # line, so the empty line between rows of images is unambiguous.
        rows.append("\n".join((" " * gap).join(lines) for lines in zip(*group)))
    return "\n\n".join(rows)


def _terminal_width() -> int:
    return shutil.get_terminal_size((80, 24)).columns


def _colour(text: str, word: str = "WRONG") -> str:
    """``word`` in red when stdout is a terminal that wants colour."""
    if sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb":
        return text.replace(word, f"\033[31;1m{word}\033[0m")
    return text


# -- models -------------------------------------------------------------------------------------

def _load_model(path: Path, device: Any) -> tuple[Any, str | None]:
    """(network, the dataset it was trained on if the file records it)."""
    from .serialization import network_from, read_arrays

    arrays, metadata = read_arrays(path)
    net = network_from(arrays, metadata, path, device)
    training = metadata.get("training")
    settings = training.get("settings") if isinstance(training, dict) else None
    dataset = settings.get("dataset") if isinstance(settings, dict) else None
    return net, dataset if isinstance(dataset, str) else None


def _probabilities(net: Any, x: np.ndarray) -> tuple[np.ndarray, bool]:
    """((N, K) host scores per class, whether they are probabilities); one forward pass.

    A one-output network (sigmoid, class 1 when >= 0.5) gives K = 2: [1 - a, a].
    """
    scores = np.asarray(net.backend.to_numpy(net.predict(x)), dtype=np.float64)
    name = net.output.name
    if scores.shape[1] == 1:
        scores = np.concatenate([1.0 - scores, scores], axis=1)
    return scores, name in ("softmax", "sigmoid")


# -- nnxp predict ------------------------------------------------------------------------------

def cmd_predict(args: argparse.Namespace) -> int:
    from .data import FASHION_MNIST_CLASSES, MNIST_CLASSES, image_inputs

    net, trained_on = _load_model(args.model, args.device)
    if net.sizes[0] != FIELD * FIELD:
        raise DataError(f"{args.model} takes {net.sizes[0]} inputs, but nnxp predict gives it 28x28 "
                        "images (784 inputs): use a model trained on MNIST-style data")
    k = max(2, net.sizes[-1])
    if args.classes != "auto" and k != 10:
        raise ConfigError(f"--classes {args.classes} names 10 classes but {args.model} has "
                          f"{net.sizes[-1]} outputs: leave out --classes")
    kind = args.classes if args.classes != "auto" else trained_on
    if k == 10:
        classes = FASHION_MNIST_CLASSES if kind == "fashion-mnist" else MNIST_CLASSES
    else:
        classes = tuple(str(i) for i in range(k))

    inputs = np.stack([to_mnist(read_image(path), name=str(path)) for path in args.images])
    scores, is_probability = _probabilities(net, image_inputs(inputs))
    key = "p" if is_probability else "score"
    for path, image, row in zip(args.images, inputs, scores):
        order = np.argsort(-row, kind="stable")[:args.top]
        if args.json:
            top = [{"class": int(c), "name": classes[c], key: float(row[c])} for c in order]
            print(json.dumps({"path": str(path), **top[0], "top": top}))
            continue
        best = order[0]
        line = f"{path}: {classes[best]}  ({key}={row[best]:.3f})"
        if len(order) > 1:
            line += "   next: " + ", ".join(f"{classes[c]} {row[c]:.3f}" for c in order[1:])
        print(line)
        if args.show:
            print("\n".join(text_art(image)))
    return 0


# -- nnxp images -------------------------------------------------------------------------------

def cmd_images(args: argparse.Namespace) -> int:
    from .cli import check_writable
    from .data import image_inputs, load_dataset

    if args.only_mistakes and args.model is None:
        raise ConfigError("--only-mistakes needs --model PATH: the model whose mistakes to show")
    if args.no_text and args.png is None:
        raise ConfigError("--no-text leaves nothing to show: add --png PATH, or drop --no-text")
    if args.png is not None:
        _figure_format(args.png)
        if args.count > MAX_GRID:
            raise ConfigError(f"--count {args.count} is too many for one grid image: "
                              f"use at most {MAX_GRID} with --png")
        check_writable(args.png)
        _require_matplotlib()
    net = None
    if args.model is not None:
        net, trained_on = _load_model(args.model, args.device)

    data = load_dataset(args.dataset, args.data_dir, download=args.download)
    images = data.test_images if args.split == "test" else data.train_images
    labels = data.test_labels if args.split == "test" else data.train_labels
    n = len(labels)
    if args.start >= n:
        raise ConfigError(f"--start {args.start} is past the end of the {data.name} {args.split} "
                          f"images ({n:,}): use 0..{n - 1}")
    if net is not None:
        pixels = images.shape[1] * images.shape[2]
        if net.sizes[0] != pixels or max(2, net.sizes[-1]) != data.num_classes:
            raise DataError(f"{args.model} takes {net.sizes[0]} inputs and gives {net.sizes[-1]} "
                            f"classes; {data.name} has {pixels} and {data.num_classes}: "
                            "use a model trained on it")
        if trained_on and trained_on != data.name and {trained_on, data.name} != {"bundled", "mnist"}:
            print(f"nnxp: note: {args.model} was trained on {trained_on}; these images are "
                  f"{data.name} (pass --dataset {trained_on}?)", file=sys.stderr)

    classes = data.classes
    predicted = None
    if args.only_mistakes:
        candidates = np.arange(args.start, n)
        guesses = _classify(net, image_inputs(images[args.start:]))
        wrong = np.flatnonzero(guesses != labels[args.start:])
        index = candidates[wrong[:args.count]]
        predicted = guesses[wrong[:args.count]]
        scanned = f"{data.name} {args.split} images {args.start}-{n - 1}"
        if len(index) == 0:
            print(f"no mistakes in {scanned}: {args.model} gets all {n - args.start:,} right")
            return 0
        accuracy = 100.0 * (1.0 - len(wrong) / len(candidates))
        summary = (f"{len(index)} of the {len(wrong):,} mistakes in {scanned} "
                   f"({accuracy:.2f}% correct)")
    else:
        index = np.arange(args.start, min(n, args.start + args.count))
        if net is not None:
            predicted = _classify(net, image_inputs(images[index]))
            mistakes = int((predicted != labels[index]).sum())
            summary = f"{args.model}: {mistakes} of {len(index)} wrong"
        shown = f"{index[0]}-{index[-1]}" if len(index) > 1 else f"{index[0]}"
        heading = f"{data.name} {args.split} images {shown}"

    headers, titles, marks = [], [], []
    for j, i in enumerate(index):
        label = classes[labels[i]]
        head = [f"#{i}  label {label}"]
        title = f"#{i}: {label}"
        bad = False
        if predicted is not None:
            guess = classes[predicted[j]]
            bad = guess != label
            head.append(f"predicted {guess}" + ("  WRONG" if bad else ""))
            title += f"\npredicted {guess}"
        headers.append(head)
        titles.append(title)
        marks.append(bad)

    if not args.no_text:
        if not args.only_mistakes:
            print(heading)
        print(_colour(format_digits(images[index], headers, width=_terminal_width())))
    if predicted is not None:
        print(summary)
    if args.png is not None:
        suptitle = heading if not args.only_mistakes else summary
        if net is not None and not args.only_mistakes:
            suptitle += f"; {summary}"
        fig = digit_grid_figure(images[index], titles, marks, suptitle=suptitle)
        _save_figure(fig, args.png)
        print(f"wrote grid of {len(index)} {'image' if len(index) == 1 else 'images'} to {args.png}")
    return 0


def _classify(net: Any, x: np.ndarray) -> np.ndarray:
    """Host (N,) predicted class indices."""
    return np.asarray(net.backend.to_numpy(net.classify(x)), dtype=np.int64)


# -- nnxp plot ---------------------------------------------------------------------------------

REQUIRED_KEYS = ("epoch", "loss", "accuracy")
OPTIONAL_KEYS = ("val_loss", "val_accuracy", "seconds", "samples_per_second")


def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
    """The per-epoch records of a ``nnxp train --metrics`` JSON-lines file, in epoch order.

    Each non-blank line must be a JSON object with numbers under ``epoch``,
    ``loss`` and ``accuracy``; ``val_loss``, ``val_accuracy``, ``seconds`` and
    ``samples_per_second`` are optional.  Raises :class:`DataError` naming the
    file and line otherwise.
    """
    path = Path(path)
    what = "give the file nnxp train --metrics wrote"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"metrics file {path} not found: check the path "
                        f"(nnxp train --metrics {path} writes it)") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory: {what}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a text file: {what}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {number} is not valid JSON ({exc.msg}): {what}") from None
        if not isinstance(record, dict):
            raise DataError(f"{path} line {number} is not a JSON object: {what}")
        missing = [key for key in REQUIRED_KEYS if key not in record]
        if missing:
            raise DataError(f"{path} line {number} has no {' or '.join(missing)}: each line needs "
                            f"{', '.join(REQUIRED_KEYS)}; {what}")
        for key in REQUIRED_KEYS + OPTIONAL_KEYS:
            value = record.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DataError(f"{path} line {number}: {key} is {json.dumps(value)[:40]}, "
                                f"not a number; {what}")
        records.append(record)
    if not records:
        raise DataError(f"{path} has no epochs (the file is empty): nnxp train --metrics {path} "
                        "writes one line per epoch")
    return sorted(records, key=lambda r: r["epoch"])


def cmd_plot(args: argparse.Namespace) -> int:
    from .cli import check_writable

    output = args.output if args.output is not None else args.metrics.with_suffix(".png")
    _figure_format(output)
    if output.resolve() == args.metrics.resolve():
        raise ConfigError(f"-o {output} would overwrite the metrics file: give another name")
    records = read_metrics(args.metrics)
    check_writable(output)
    _require_matplotlib()
    fig = metrics_figure(records, title=args.metrics.name)
    _save_figure(fig, output)
    epochs = len(records)
    print(f"wrote plot of {epochs} {'epoch' if epochs == 1 else 'epochs'} to {output}")
    return 0


# -- figures (matplotlib, optional) ------------------------------------------------------------

def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise NnxpError(f"writing images needs matplotlib: {INSTALL_PLOT}") from None


def _figure_format(path: Path) -> str:
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FIGURE_FORMATS:
        raise ConfigError(f"{path}: nnxp writes .png, .svg or .pdf images; give a file name "
                          "ending in one of them")
    return fmt


def _save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` to ``path`` atomically, in the format its suffix names."""
    from ._files import atomic_open

    try:
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format=_figure_format(path))
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}; choose another path") from None


def digit_grid_figure(images: np.ndarray, titles: Sequence[str], wrong: Sequence[bool],
                      suptitle: str = "") -> Any:
    """A matplotlib Figure: (N, 28, 28) uint8 ``images`` in a grid of up to 8 columns.

    Drawn as stored (white ink on black, row 0 at the top), each under its
    title; images with ``wrong[i]`` get a red title and a red frame.
    """
    from matplotlib.figure import Figure

    n = len(images)
    cols = min(n, 8)
    rows = math.ceil(n / cols)
    lines = max(t.count("\n") + 1 for t in titles)
    cell_h = 1.25 + 0.18 * lines
    width = 1.35 * cols
    fontsize = 9 if cols > 3 else 7
    # Wrapped to the figure's width (a character is about 0.6 em; 72 points an inch).
    heading = textwrap.wrap(suptitle, max(12, int(width * 72 / (0.6 * fontsize))))
    head_h = 0.3 + 0.15 * len(heading) if heading else 0.1
    fig = Figure(figsize=(width, cell_h * rows + head_h), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    for ax, image, title, bad in zip(axes.flat, images, titles, wrong):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        colour = "#d00000" if bad else "black"
        ax.set_title(title, fontsize=8, color=colour, fontweight="bold" if bad else "normal")
        for spine in ax.spines.values():
            spine.set_color(colour if bad else "#888888")
            spine.set_linewidth(3 if bad else 0.5)
    if heading:
        fig.suptitle("\n".join(heading), fontsize=fontsize)
    return fig


def metrics_figure(records: Sequence[dict[str, float]], title: str = "") -> Any:
    """A matplotlib Figure: loss (left) and accuracy in % (right) per epoch, train and test."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in records]

    def series(key: str, factor: float = 1.0) -> list[float] | None:
        if not any(key in r for r in records):
            return None
        return [factor * r[key] if key in r else math.nan for r in records]

    fig = Figure(figsize=(10, 4.2), dpi=100, layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    marker = "o" if len(records) <= 30 else None
    for ax, key, factor, label in ((loss_ax, "loss", 1.0, "loss"),
                                   (acc_ax, "accuracy", 100.0, "accuracy (%)")):
        ax.plot(epochs, series(key, factor), marker=marker, markersize=4, label="train")
        test = series("val_" + key, factor)
        if test is not None:
            ax.plot(epochs, test, marker=marker, markersize=4, label="test")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label.split(" ")[0])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend()
    last = records[-1]
    final = f"epoch {last['epoch']:g}: train {100 * last['accuracy']:.2f}%"
    if "val_accuracy" in last:
        final += f", test {100 * last['val_accuracy']:.2f}%"
    fig.suptitle(f"{title}  ({final})" if title else final)
    return fig
