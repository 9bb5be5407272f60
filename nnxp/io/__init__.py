"""File input and output that every nnxp command and library reader goes through.

- :mod:`nnxp.io.read`: capped, non-blocking reads (a FIFO, device or socket is
  refused before it is opened for long; a file over its kind's size limit is
  refused before it is read).
- :mod:`nnxp.io.schema`: one validator style for what a file holds
  (``{path}: {field}: {problem}; {fix}``).
- :mod:`nnxp.io.paths`: the argparse types that declare a command's inputs and
  outputs, and :class:`~nnxp.io.paths.Files`, which refuses an output that is
  an input or another output before anything runs.

Atomic writes stay in :mod:`nnxp._files`.
"""
