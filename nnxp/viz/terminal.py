"""Digits as text art in the terminal."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence

import numpy as np

__all__ = ["RAMP", "text_art", "format_digits", "terminal_width", "colour"]

#: Text-art characters from background (0) to full ink (255).
RAMP = " .:-=+*#%@"


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


def terminal_width() -> int:
    return shutil.get_terminal_size((80, 24)).columns


def colour(text: str, word: str = "WRONG") -> str:
    """``word`` in red when stdout is a terminal that wants colour."""
    if sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb":
        return text.replace(word, f"\033[31;1m{word}\033[0m")
    return text
