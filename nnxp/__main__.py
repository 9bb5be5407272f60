"""``python -m nnxp`` runs the ``nnxp`` command."""

import sys

from .cli import main

sys.exit(main())
