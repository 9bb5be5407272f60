"""The one line and exit status a failed rank reports (the jobs themselves: test_launch.py)."""

from __future__ import annotations

import pytest

from nnxp.distributed.faults import describe, exit_code
from nnxp.errors import ConfigError, DivergenceError


@pytest.mark.parametrize("exc,line,code", [
    (ConfigError("bad value;\n  fix it"), "bad value; fix it", 2),
    (DivergenceError("training diverged"), "training diverged", 1),
    (ValueError("shapes differ"), "ValueError: shapes differ", 1),
    (MemoryError(), "MemoryError", 1),
    (KeyboardInterrupt(), "interrupted", 130),
])
def test_one_line_and_status(exc, line, code):
    assert describe(exc) == line
    assert exit_code(exc) == code
