"""The ``nnxp`` command: train, evaluate, predict, images, plot, bench, text.

One module per command group (:mod:`.train`, :mod:`.evaluate`, :mod:`.images`
for predict/images/plot, :mod:`.bench`, :mod:`.text`), the argument types and shared
arguments in :mod:`.args`, the parser and the error handling in :mod:`.main`.

Every user error (bad flag value, missing or corrupt file, unknown device, no
GPU, unwritable path) ends with one line ``nnxp: error: ...`` on stderr and
exit status 2, before anything is written.  A run that diverges exits with
status 1 and keeps its last good checkpoint; Ctrl-C exits with 130 and says
how to resume.
"""

from .main import build_parser, main

__all__ = ["main", "build_parser"]
