"""File schemas (nnxp.io.schema): one line ``{path}: {field}: {problem}; {fix}`` for a value of
the wrong type or range, in every reader that uses it (issue 19, item 3)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nnxp
from nnxp.errors import DataError
from nnxp.viz.metrics import read_metrics

GOOD = {"epoch": 1, "loss": 0.5, "accuracy": 0.9}


@pytest.mark.parametrize("line,field,problem", [
    ({**GOOD, "loss": "0.5"}, "line 2.loss", 'is a string ("0.5"), not a number'),
    ({**GOOD, "loss": float("nan")}, "line 2.loss", "is nan, not a finite number"),
    ({**GOOD, "accuracy": True}, "line 2.accuracy", "is a boolean (true), not a number"),
    ({**GOOD, "epoch": 1.5}, "line 2.epoch", "is a number (1.5), not a whole number"),
    ({**GOOD, "epoch": 0}, "line 2.epoch", "is 0, must be at least 1"),
    ({**GOOD, "val_loss": None}, "line 2.val_loss", "is null (null), not a number"),
    ({"epoch": 2, "accuracy": 0.9}, "line 2.loss", "is missing"),
    ([1, 2], "line 2", "is a list ([1, 2]), not an object"),
])
def test_a_metrics_file_value_of_the_wrong_kind_is_named(tmp_path, line, field, problem):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(DataError) as info:
        read_metrics(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}: {problem}; ") and "\n" not in message
    assert "nnxp train --metrics" in message  # the fix


def test_a_models_history_is_checked_with_its_field_name(tmp_path):
    net = nnxp.Network([3, 2], device="cpu")
    path = tmp_path / "m.safetensors"
    from nnxp.checkpoint import save_trained_model

    save_trained_model(path, net, nnxp.History([GOOD, {**GOOD, "epoch": 2, "loss": "x"}]))
    with pytest.raises(DataError, match=r"m.safetensors: training\.history\[1\]\.loss: is a string"):
        read_metrics(path)
    save_trained_model(path, net, nnxp.History([GOOD, {**GOOD, "epoch": 2}]))
    assert [r["epoch"] for r in read_metrics(path)] == [1, 2]


def test_schema_names_fields_as_python_does():
    from nnxp.io.schema import Schema

    s = Schema("f.json", "fix it")
    assert s.at("", "a") == "a" and s.at("a", "b") == "a.b" and s.at("a", 3) == "a[3]"
    assert s.at("a", "x y") == 'a["x y"]'
    with pytest.raises(DataError, match=r'^f\.json: a\["x y"\]: is 2, must be at least 3; fix it$'):
        s.whole(2, s.at("a", "x y"), least=3)
    assert s.number(3, "n") == 3.0 and type(s.number(3, "n")) is float
    with pytest.raises(DataError, match="is inf, not a finite number"):
        s.number(np.inf, "n")
