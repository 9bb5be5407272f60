"""Digits as text art in the terminal."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["RAMP", "HALF_BLOCKS", "INK", "text_art", "half_block_art", "format_digits", "terminal_width",
           "colour"]

#: Text-art characters from background (0) to full ink (255).
RAMP = " .:-=+*#%@"
#: Half-block characters by (top pixel inked, bottom pixel inked): two pixel rows per line.
HALF_BLOCKS = {(False, False): " ", (True, False): "\u2580", (False, True): "\u2584", (True, True): "\u2588"}
#: A pixel counts as ink in half-block art from this intensity on (out of 255).
INK = 96


def text_art(image: np.ndarray) -> list[str]:
    """(H, W) uint8 image -> H strings of W characters from :data:`RAMP` (space = 0)."""
    levels = (np.asarray(image, dtype=np.int64) * len(RAMP)) // 256
    return ["".join(RAMP[v] for v in row) for row in levels]


def half_block_art(image: np.ndarray) -> list[str]:
    """(H, W) uint8 image -> ceil(H / 2) strings of W half-block characters.

    Each character shows two pixels, one above the other (``\u2580`` top
    only, ``\u2584`` bottom only, ``\u2588`` both, space neither); a pixel is
    ink from :data:`INK` on.  A 28x28 digit takes 14 lines instead of 28.
    """
    ink = np.asarray(image) >= INK
    if ink.shape[0] % 2:
        ink = np.concatenate([ink, np.zeros((1, ink.shape[1]), dtype=bool)])
    return ["".join(HALF_BLOCKS[bool(t), bool(b)] for t, b in zip(top, bottom))
            for top, bottom in zip(ink[0::2], ink[1::2])]


def format_digits(images: Sequence[np.ndarray], headers: Sequence[Sequence[str]], width: int = 80,
                  gap: int = 3, art: Callable[[np.ndarray], list[str]] = half_block_art) -> str:
    """Text art of ``images`` side by side, as many per row as fit in ``width`` columns.

    ``headers[i]`` are the lines printed above image i (cut to the art's
    width).  Each image gives ``len(headers[i])`` header lines then its art
    (``art(image)``: :func:`half_block_art`, two pixel rows a line, or
    :func:`text_art`, one); rows of images are separated by one empty line.
    """
    blocks = []
    for image, head in zip(images, headers):
        lines = art(image)
        w = len(lines[0])
        blocks.append([line[:w].ljust(w) for line in head] + lines)
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


def terminal_width() -> int:
    return shutil.get_terminal_size((80, 24)).columns


def colour(text: str, word: str = "WRONG") -> str:
    """``word`` in red when stdout is a terminal that wants colour."""
    if sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb":
        return text.replace(word, f"\033[31;1m{word}\033[0m")
    return text
