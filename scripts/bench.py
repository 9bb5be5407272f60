#!/usr/bin/env python
"""Time one training step of nnxp against NumPy, PyTorch and the GEMM floor.

The same as ``nnxp bench ARGS``; see ``nnxp bench --help``.  Examples::

    python scripts/bench.py                               # the full CPU table
    python scripts/bench.py --sizes 784-256-10 --batches 128 --contenders nnxp-sgd,numpy-ref,gemm-floor
    python scripts/bench.py --json benchmarks/cpu-$(date +%F).json --markdown
    python scripts/bench.py --device cuda                 # on a GPU machine
"""

import sys

from nnxp.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
