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
