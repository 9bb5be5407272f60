"""Looking at data and training runs: images, text art, figures, metrics files.

- :mod:`nnxp.viz.images`: read image files (PGM built in, the rest through
  Pillow) and make a digit MNIST-like (:func:`to_mnist`).
- :mod:`nnxp.viz.terminal`: digits as text art.
- :mod:`nnxp.viz.figures`: matplotlib figures (digit grids, loss and accuracy curves).
- :mod:`nnxp.viz.metrics`: read the JSON-lines file ``nnxp train --metrics`` writes.

The commands that use them (``nnxp predict``, ``nnxp images``, ``nnxp plot``)
are in :mod:`nnxp.cli.images`.  Pillow and matplotlib are optional
(``pip install 'nnxp[plot]'``) and imported only by the functions that need them.
"""

from .figures import digit_grid_figure, metrics_figure
from .images import FIELD, INSTALL_PLOT, read_image, read_pgm, to_mnist
from .metrics import read_metrics
from .terminal import RAMP, format_digits, text_art

__all__ = [
    "FIELD",
    "INSTALL_PLOT",
    "RAMP",
    "digit_grid_figure",
    "format_digits",
    "metrics_figure",
    "read_image",
    "read_metrics",
    "read_pgm",
    "text_art",
    "to_mnist",
]
