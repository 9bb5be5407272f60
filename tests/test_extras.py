"""Optional dependencies: a missing one is one line naming the install command (PyPI and clone)."""

from __future__ import annotations

import importlib
import sys

import pytest

import nnxp
from nnxp._extras import install_hint, require


def test_hint_works_from_pypi_and_in_a_clone():
    assert install_hint("plot") == "pip install 'nnxp[plot]' (in a clone: pip install '.[plot]')"


def test_require_names_what_needs_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "some_missing_pkg", None)
    with pytest.raises(ImportError, match=r"^the thing needs some_missing_pkg: pip install 'nnxp\[x\]' "
                                          r"\(in a clone: pip install '\.\[x\]'\)$"):
        require("some_missing_pkg", "x", "the thing")


def test_onnx_export_without_onnx(monkeypatch):
    from nnxp.onnx import to_onnx

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(nnxp.ConfigError, match=r"^ONNX export needs onnx: pip install 'nnxp\[onnx\]'"):
        to_onnx(nnxp.Network([2, 2], device="cpu"))


def test_sklearn_estimator_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.delitem(sys.modules, "nnxp.sklearn", raising=False)
    with pytest.raises(ImportError, match=r"^nnxp.sklearn needs scikit-learn: pip install 'nnxp\[sklearn\]'"):
        importlib.import_module("nnxp.sklearn")
    monkeypatch.delitem(sys.modules, "nnxp.sklearn", raising=False)


def test_pip_install_dot_covers_predict_and_the_hints_name_their_extra():
    """What the README's command table promises: Pillow is a core dependency (nnxp predict reads
    PNG/JPEG after `pip install .`); matplotlib, onnx and scikit-learn are extras."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    assert "pillow" in core and "threadpoolctl" in core
    for extra, package in (("plot", "matplotlib"), ("onnx", "onnx"), ("sklearn", "scikit-learn")):
        assert package not in core and any(package in d for d in project["optional-dependencies"][extra])
    readme = (root / "README.md").read_text()
    table = readme[readme.index("| command | what it does |"):]
    table = table[:table.index("\n\n")]
    for command, extra in (("nnxp plot", "plot"), ("nnxp export", "onnx")):
        row = next(line for line in table.splitlines() if line.startswith(f"| `{command}"))
        assert f"`pip install 'nnxp[{extra}]'`" in row, row  # the command alone in the code span
        assert install_hint(extra).startswith(f"pip install 'nnxp[{extra}]' (in a clone: ")
    assert "In a clone, install an extra with `pip install '.[plot]'`" in readme
