"""Print the per-step launch and allocation counts (tests/support/launches.py; nnxp counted by the CPU EMULATION)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.launches import main  # noqa: E402  (test support, found through the path above)

if __name__ == "__main__":
    raise SystemExit(main())
