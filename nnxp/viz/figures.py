"""Figures: a grid of digit images and a run's loss and accuracy curves.

matplotlib is optional (``pip install 'nnxp[plot]'``) and imported only by
the functions that need it; figures are built on
:class:`matplotlib.figure.Figure` directly, without pyplot's global state.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError, NnxpError
from .images import INSTALL_PLOT

__all__ = ["FIGURE_FORMATS", "require_matplotlib", "figure_format", "save_figure",
           "digit_grid_figure", "metrics_figure"]

FIGURE_FORMATS = ("png", "svg", "pdf")


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise NnxpError(f"writing images needs matplotlib: {INSTALL_PLOT}") from None


def figure_format(path: Path) -> str:
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FIGURE_FORMATS:
        raise ConfigError(f"{path}: nnxp writes .png, .svg or .pdf images; give a file name "
                          "ending in one of them")
    return fmt


def save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` to ``path`` atomically, in the format its suffix names."""
    from .._files import atomic_open

    try:
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format=figure_format(path))
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
