"""Optional dependencies: one install hint that works from PyPI and in a clone.

``install_hint("plot")`` is ``pip install 'nnxp[plot]' (in a clone: pip install '.[plot]')``:
the first for an installed nnxp, the second in a checkout of the repository,
where ``nnxp[plot]`` would fetch the released nnxp instead of this one.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["install_hint", "require"]


def install_hint(extra: str) -> str:
    return f"pip install 'nnxp[{extra}]' (in a clone: pip install '.[{extra}]')"


def require(module: str, extra: str, what: str, package: str | None = None) -> Any:
    """Import ``module``, or raise ImportError naming ``what`` needs it (the
    distribution ``package``, default the module's top name) and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = package or module.split(".")[0]
        raise ImportError(f"{what} needs {package}: {install_hint(extra)}") from None
