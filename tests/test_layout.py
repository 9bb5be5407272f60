"""The package's shape: no import cycles between nnxp's modules, no module over 600 lines.

The import graph is read from the source with :mod:`ast` (nothing is imported).
Every import counts, those inside functions included (a lazy import that
closes a loop is still a cycle) and those under ``if TYPE_CHECKING:`` (a cycle
of annotations is still a cycle: give the lower module a Protocol instead).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nnxp"
MAX_LINES = 600


def module_names(root: Path) -> dict[str, Path]:
    """{dotted module name: file} for every .py file of the package at ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _import_nodes(body: list[ast.stmt], in_functions: bool):
    """The Import/ImportFrom statements of ``body`` that run on import, or are there for the type
    checker (``if TYPE_CHECKING:``); those inside functions too if ``in_functions``."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if in_functions:
                yield from _import_nodes(node.body, in_functions)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    yield from _import_nodes([n for n in inner if isinstance(n, ast.AST)], in_functions)


def import_graph(root: Path, in_functions: bool = False) -> dict[str, set[str]]:
    """{module: the package's modules it imports}.

    ``from X import name`` imports the module ``X.name`` when that is one,
    else the module ``X``.  Importing ``a.b.c`` also runs the packages ``a.b``
    and ``a`` first, unless the importer is inside them (then they are already
    being initialised).
    """
    modules = module_names(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _import_nodes(ast.parse(path.read_text(), str(path)).body, in_functions):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
                continue
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets |= {f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                        for alias in node.names}
        edges = set()
        for target in targets:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in modules and prefix != name and not (name + ".").startswith(prefix + "."):
                    edges.add(prefix)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def test_no_import_cycles_between_modules():
    # Imports inside functions count too: a lazy import that closes a loop is still a cycle.
    cycles = find_cycles(import_graph(PACKAGE, in_functions=True))
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_library_packages_never_import_the_command_line():
    graph = import_graph(PACKAGE, in_functions=True)
    bad = {m: sorted(t for t in targets if t == "nnxp.cli" or t.startswith("nnxp.cli."))
           for m, targets in graph.items() if not (m == "nnxp.cli" or m.startswith("nnxp.cli."))
           and m != "nnxp.__main__"}
    assert not {m: t for m, t in bad.items() if t}


def test_no_module_over_600_lines():
    long = {str(path.relative_to(PACKAGE.parent)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concern): {long}"


# -- the checks themselves, on a made-up package -------------------------------------------------

def _write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_graph_resolves_relative_imports_and_finds_a_cycle(tmp_path):
    pkg = _write_package(tmp_path, {
        "__init__.py": "from .a import f\n",
        "a.py": "from .sub import b\ndef f():\n    from . import c\n",
        "c.py": "from pkg.a import f\n",
        "sub/__init__.py": "",
        "sub/b.py": "from .. import a\nimport pkg.sub\n",
    })
    graph = import_graph(pkg)
    assert graph["pkg"] == {"pkg.a"}
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"}       # the import inside f() does not count
    assert graph["pkg.sub.b"] == {"pkg.a"}                  # its own package is already running
    assert find_cycles(graph) == [["pkg.a", "pkg.sub.b"]]
    # Counting imports inside functions adds a -> c -> a.
    assert find_cycles(import_graph(pkg, in_functions=True)) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


def test_graph_counts_type_checking_imports_and_runs_parent_packages(tmp_path):
    pkg = _write_package(tmp_path, {
        "__init__.py": "",
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import X\n",
        "b.py": "try:\n    from .a import Y\nexcept ImportError:\n    pass\n",
        "lib/__init__.py": "from .core import g\n",
        "lib/core.py": "from ..user import h\n",
        "user.py": "from .lib.core import g\n",
    })
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"}  # a type-only import is an edge
    assert graph["pkg.user"] == {"pkg.lib", "pkg.lib.core"}  # importing lib.core runs lib/__init__ first
    assert find_cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.lib", "pkg.lib.core", "pkg.user"]]
