"""The numeric core is Array-API code: NumPy only where the design allows it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nnxp"

# The maths: no NumPy at all (the namespace comes from the inputs).
PURE = ["activations.py", "losses.py", "optim.py", "kernels/reference.py"]
# NumPy allowed, for the reason given.
HOST_ONLY = {
    "init.py": "host random numbers",
    "train.py": "host shuffles (np.random) and np.errstate",
    "network.py": "host conversion of lists and NumPy inputs at the API boundary",
    "backend.py": "moving arrays to and from the host",
    "kernels/numpy.py": "the NumPy fast path (NumPyOps)",
    "kernels/blas/__init__.py": "the NumPy fast path's BLAS calls",
    "kernels/blas/providers.py": "the NumPy fast path's BLAS calls (OpenBLAS, MKL through ctypes)",
    "kernels/blas/choice.py": "timing the BLAS providers on NumPy arrays",
    "kernels/elementwise.py": "the NumPy fast path's optimizer updates on a thread pool",
    "layers.py": "the host generator type for dropout masks",
    "random.py": "host random numbers for dropout masks",
    "validation.py": "host conversion of lists and NumPy inputs at the API boundary",
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("name", PURE)
def test_maths_modules_do_not_import_numpy(name):
    assert "numpy" not in imported_modules(PACKAGE / name)


def test_numpy_users_are_the_listed_ones():
    core = ["activations.py", "losses.py", "optim.py", "init.py", "train.py", "network.py",
            "backend.py", "layers.py", "random.py", "validation.py", "kernels/reference.py",
            "kernels/numpy.py", "kernels/blas/__init__.py", "kernels/blas/providers.py",
            "kernels/blas/choice.py", "kernels/elementwise.py", "kernels/cupy.py", "kernels/buffers.py"]
    users = {name for name in core if "numpy" in imported_modules(PACKAGE / name)}
    assert users <= set(HOST_ONLY), f"NumPy imported by {sorted(users - set(HOST_ONLY))}"


def test_train_uses_numpy_only_for_host_random_numbers_and_errstate():
    tree = ast.parse((PACKAGE / "train.py").read_text())
    uses = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "np"}
    assert uses <= {"random", "arange", "errstate"}, uses
