#!/usr/bin/env python3
"""Train the MNIST digit recogniser: ``python scripts/train_mnist.py --device cuda``.

A thin entry to ``nnxp train`` (same flags: ``--help`` lists them).  Without
flags it trains on the 5,000 MNIST digits bundled with nnxp, offline, on the
GPU when CuPy sees one and on the CPU otherwise.
"""

import sys
from pathlib import Path

try:
    from nnxp.cli import main
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from nnxp.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
