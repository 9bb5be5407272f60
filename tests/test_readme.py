"""The README's library example runs as written, and says what it prints."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_library_example_runs(tmp_path, monkeypatch, capsys):
    blocks = python_blocks(README.read_text())
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert namespace["history"].last["val_accuracy"] > 0.9
    assert namespace["net"].evaluate(namespace["x_test"], namespace["y_test"])["accuracy"] > 0.93
    assert (tmp_path / "digits.safetensors").exists()
    # The numbers the example's comments promise: the seed's vector.
    np.testing.assert_allclose(namespace["a2"], [[0.8581489, 0.450166, 0.6456563]], atol=1e-6)
    np.testing.assert_allclose(namespace["db2"], [0.208924, -0.272186, 0.295432], atol=1e-6)


def test_readme_names_the_ci_test_command():
    text = README.read_text()
    marker = text.index("<!-- test-command -->")
    command = text[marker:].split("```bash\n", 1)[1].split("\n", 1)[0]
    assert "pytest" in command and "pip install" in command
    ci = (README.parent / "ci" / "run-tests.sh").read_text()
    assert "<!-- test-command -->" in ci
