#!/usr/bin/env python
"""Race nnxp against PyTorch to a test accuracy (784-256-10, SGD lr 0.1, batch 512).

The same as ``nnxp bench --race ARGS``; see ``nnxp bench --help``.  Examples::

    python scripts/race.py                                # MNIST if found, else Fashion-MNIST
    python scripts/race.py --dataset fashion-mnist --json benchmarks/race-cpu.json
    python scripts/race.py --device cuda --dataset fashion-mnist
"""

import sys

from nnxp.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--race", *[a for a in sys.argv[1:] if a != "--race"]]))
