"""Reading digit images and making them MNIST-like.

:func:`read_image` reads PGM with the built-in parser (:func:`read_pgm`) and
PNG, JPEG and the rest through Pillow; :func:`to_mnist` turns a grey image
of one digit into a 28x28 MNIST-style image.

Image conventions: a grey image is an (H, W) uint8 array, 0..255, row 0 at
the top.  MNIST-style images are (28, 28) uint8 with 0 = background and
255 = ink (a white digit on black), as :mod:`nnxp.data` loads them.

Pillow (a dependency of nnxp) is imported only to read
formats other than PGM.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._extras import install_hint
from ..errors import DataError, NnxpError
from ..io.read import read_bytes

__all__ = ["INSTALL_PLOT", "FIELD", "read_image", "read_pgm", "to_mnist"]

#: how to get matplotlib (grid images, plots)
INSTALL_PLOT = install_hint("plot")

# MNIST's recipe: the digit's bounding box scaled to 20 px on its longer side,
# then placed in a 28x28 field with its centre of mass (in pixel-index
# coordinates) at (14, 14); the bundled images measure 14.01, 13.99 on average.
FIELD = 28
BOX = 20
CENTRE = 14.0
# Below this difference between ink and background (out of 255) an image counts as blank.
MIN_CONTRAST = 32.0


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
        data = read_bytes(path, "image")
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
    _check_image_size(width, height, name)
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


#: The largest image read, in pixels (40 megapixels, a large phone photo).  The
#: size is checked from the file's header, before anything is decoded, so a
#: small file claiming a huge image (a "decompression bomb") costs nothing.
MAX_IMAGE_PIXELS = 40_000_000


def _check_image_size(width: int, height: int, name: Any) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise DataError(f"{name} is {width}x{height} pixels, more than nnxp reads "
                        f"({MAX_IMAGE_PIXELS // 1_000_000} megapixels): scale it down (a digit needs about "
                        "28x28 pixels)")


def _read_with_pillow(data: bytes, path: Path) -> np.ndarray:
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise NnxpError(f"reading {path} needs Pillow, an nnxp dependency missing here (without it "
                        "nnxp reads only PGM): pip install pillow, or convert the image to PGM") from None
    try:
        # Pillow warns about oddities it works around (a TIFF tag past the end of the file) and
        # about sizes over its own limit (nnxp's lower one applies below): the image decodes or
        # fails with one error line, never warnings on stderr.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as opened:
                _check_image_size(*opened.size, path)  # from the header: nothing decoded yet
                image = ImageOps.exif_transpose(opened)
                image.load()
                return _pillow_grey(image)
    except DataError:
        raise
    except Image.DecompressionBombError:
        raise DataError(f"{path} claims a size over Pillow's limit of {2 * Image.MAX_IMAGE_PIXELS:,} pixels, "
                        f"far more than nnxp reads ({MAX_IMAGE_PIXELS // 1_000_000} megapixels): scale it "
                        "down") from None
    except MemoryError:
        raise DataError(f"{path}: not enough memory to decode this image: scale it down") from None
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
