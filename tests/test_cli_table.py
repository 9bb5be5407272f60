"""``nnxp train/evaluate/predict --data``: the command line on your own table (issue 20, item 4).

The scaling and classes a model file keeps are checked against NumPy's own
mean and standard deviation of the table; the scores ``evaluate`` prints
against scikit-learn's metrics of the predictions ``predict`` wrote.
"""

from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nnxp
from nnxp.serialization import read_arrays, write_arrays

from conftest import one_line_error, run_cli
from test_fuzz import fuzz

FAST = ("--device", "cpu", "--hidden", "8", "--batch-size", "16", "-q")


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def table(n=120, seed=0):
    """Three features on different scales; a class (text) and a number to predict from them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, 50.0]
    score = x[:, 0] + (x[:, 1] - 5.0) / 10.0
    labels = np.where(score > 0.3, "yes", np.where(score < -0.7, "no", "maybe"))
    value = 2.0 * x[:, 0] + x[:, 1] / 10.0 + rng.normal(scale=0.1, size=n)
    return x, labels, value


@pytest.fixture
def csv_files(tmp_path):
    x, labels, value = table()
    classes = write_csv(tmp_path / "classes.csv", ["a", "b", "c", "label"],
                        [[*map(repr, row), lab] for row, lab in zip(x.tolist(), labels)])
    values = write_csv(tmp_path / "values.csv", ["a", "b", "c", "price"],
                       [[*map(repr, row), repr(v)] for row, v in zip(x.tolist(), value.tolist())])
    return x, labels, value, classes, values


def read_predictions(path_or_text, from_file=True):
    text = open(path_or_text, encoding="utf-8").read() if from_file else path_or_text
    lines = text.splitlines()
    return lines[0], lines[1:]


def test_classifier_trains_evaluates_and_predicts_on_a_csv(capsys, tmp_path, csv_files):
    x, labels, _, data, _ = csv_files
    model = tmp_path / "m.safetensors"
    code, out, err = run_cli(capsys, "train", "--data", data, "--target", "label", "--epochs", "30",
                             "--lr", "0.02", "--save", model, *FAST)
    assert code == 0, err
    assert out.startswith("training (no --val-split) accuracy ") and out.rstrip().endswith(f"saved to {model}")
    meta = read_arrays(model)[1]
    spec = meta["table"]
    # The scaling is the table's own column mean and (population) standard deviation.
    np.testing.assert_allclose(spec["mean"], x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(spec["scale"], x.std(axis=0), rtol=1e-12)
    assert spec["classes"] == ["maybe", "no", "yes"] and spec["columns"] == ["a", "b", "c"]
    assert meta["training"]["settings"]["data"] == str(data)

    # predict: the original labels, one per row; the same as the network on the scaled features.
    code, out, _ = run_cli(capsys, "predict", model, "--data", data, "--device", "cpu")
    assert code == 0
    header, predicted = read_predictions(out, from_file=False)
    assert header == "label" and len(predicted) == len(labels)
    net = nnxp.load(model, device="cpu")
    by_hand = np.argmax(np.asarray(net.predict((x - x.mean(axis=0)) / x.std(axis=0))), axis=1)
    assert predicted == [["maybe", "no", "yes"][k] for k in by_hand]

    # evaluate: the accuracy of those predictions, and a confusion matrix named by class.
    code, out, _ = run_cli(capsys, "evaluate", model, "--data", data, "--device", "cpu")
    assert code == 0
    accuracy = np.mean(np.asarray(predicted) == labels)
    assert f"accuracy {100 * accuracy:.2f}%" in out and accuracy > 0.8
    assert "maybe" in out.splitlines()[-3] and out.splitlines()[-1].lstrip().startswith("yes")


def test_regressor_reports_r2_and_rmse_of_its_predictions(capsys, tmp_path, csv_files):
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    x, _, value, _, data = csv_files
    model, out_file, best = tmp_path / "r.safetensors", tmp_path / "p.csv", tmp_path / "best.safetensors"
    code, out, err = run_cli(capsys, "train", "--data", data, "--target", "price", "--task", "regression",
                             "--epochs", "30", "--lr", "0.02", "--val-split", "0.25", "--save", model,
                             "--save-best", best, *FAST)
    assert code == 0, err
    assert out.startswith("validation R² ") and ", RMSE " in out
    assert read_arrays(best)[1]["table"] == read_arrays(model)[1]["table"]  # the best model reads tables too
    net = nnxp.load(model, device="cpu")
    assert net.output.name == "identity" and net.loss.name == "squared_error" and net.sizes[-1] == 1
    spec = read_arrays(model)[1]["table"]
    assert spec["task"] == "regression" and spec["classes"] is None
    code, _, err = run_cli(capsys, "predict", model, "--data", data, "--output", out_file, "--device", "cpu")
    assert code == 0 and err.strip() == f"wrote {len(value)} predictions to {out_file}"
    header, rows = read_predictions(out_file)
    predicted = np.array([float(v) for v in rows])
    assert header == "price" and len(predicted) == len(value)
    code, out, _ = run_cli(capsys, "evaluate", model, "--data", data, "--device", "cpu")
    assert code == 0
    # Printed to 4 decimals (R²) and 6 significant digits; predictions written to 9.
    r2 = float(out.split("R² ")[1].split()[0])
    rmse = float(out.split("RMSE ")[1].split()[0])
    mae = float(out.split("MAE ")[1].split()[0])
    assert r2 == pytest.approx(r2_score(value, predicted), abs=1e-4) and r2 > 0.8
    assert rmse == pytest.approx(np.sqrt(mean_squared_error(value, predicted)), rel=1e-5)
    assert mae == pytest.approx(mean_absolute_error(value, predicted), rel=1e-5)


def test_npz_and_integer_labels_and_a_resumed_run(capsys, tmp_path):
    x, labels, _ = table(seed=1)
    y = np.select([labels == "no", labels == "maybe"], [10, 2], 3)  # integer classes 2, 3, 10
    data = tmp_path / "t.npz"
    np.savez(data, x=x, y=y)
    ck, model = tmp_path / "ck.safetensors", tmp_path / "m.safetensors"
    args = ("--data", data, "--val-split", "0.2", "--lr", "0.02", *FAST)
    code, _, err = run_cli(capsys, "train", *args, "--epochs", "2", "--checkpoint", ck, "--save", model)
    assert code == 0, err
    assert read_arrays(model)[1]["table"]["classes"] == ["2", "3", "10"]  # numeric order
    code, _, err = run_cli(capsys, "train", "--resume", ck, "--epochs", "3", "--device", "cpu", "-q")
    assert code == 0, err
    straight = tmp_path / "straight.safetensors"
    code, _, _ = run_cli(capsys, "train", *args, "--epochs", "3", "--save", straight)
    for (w, b), (w2, b2) in zip(nnxp.load(model).get_weights(), nnxp.load(straight).get_weights()):
        np.testing.assert_array_equal(w, w2)  # same rows, same scaling, same shuffles: bit for bit
        np.testing.assert_array_equal(b, b2)
    code, out, _ = run_cli(capsys, "predict", model, "--data", data, "--device", "cpu")
    assert code == 0 and set(out.splitlines()[1:]) <= {"2", "3", "10"} and out.startswith("y\n")
    code, out, _ = run_cli(capsys, "evaluate", model, "--data", data, "--device", "cpu")
    assert code == 0 and "accuracy" in out and " 10 " in out


def test_a_model_without_table_metadata_takes_the_numbers_as_they_are(capsys, tmp_path):
    # Models trained on images (or saved by the library) carry no scaling: evaluate --data uses the
    # features unchanged and class indices 0..k-1, as nnxp.Network.evaluate does.
    x, labels, _ = table(n=40)
    y = (labels == "yes").astype(np.int64)
    net = nnxp.Network([3, 4, 2], device="cpu", seed=3)
    model, data = tmp_path / "m.safetensors", tmp_path / "t.npz"
    net.save(model)
    np.savez(data, x=x, y=y)
    code, out, _ = run_cli(capsys, "evaluate", model, "--data", data, "--device", "cpu")
    assert code == 0
    assert f"accuracy {100 * net.evaluate(x, y)['accuracy']:.2f}%" in out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_waiting(capsys, tmp_path):
    fifo = tmp_path / "t.csv"
    os.mkfifo(fifo)
    code, _, err = run_cli(capsys, "train", "--data", fifo, "--target", "label", *FAST)
    assert code == 2 and "not a regular file" in one_line_error(err)


def test_predict_never_writes_over_an_input(capsys, tmp_path, csv_files):
    _, _, _, data, _ = csv_files
    model = tmp_path / "m.safetensors"
    assert run_cli(capsys, "train", "--data", data, "--target", "label", "--epochs", "1", "--save", model,
                   *FAST)[0] == 0
    before = data.read_bytes()
    code, _, err = run_cli(capsys, "predict", model, "--data", data, "--output", data, "--device", "cpu")
    assert code == 2 and "--output" in one_line_error(err) and "an input" in err
    code, _, err = run_cli(capsys, "train", "--data", data, "--target", "label", "--save", data, *FAST)
    assert code == 2 and f"--save {data} is also --data (an input)" in one_line_error(err)
    assert data.read_bytes() == before


BAD_TABLES = {  # name: (CSV text, message)
    "missing target": ("a,b,kind\n1,2,x\n3,4,y\n", "target column 'label' not found; the columns are 'a', 'b', "
                                                   "'kind'"),
    "non-numeric feature": ("a,b,label\n1,2,x\n3,red,y\n", "line 3, column 'b': 'red' is not a number"),
    "NaN": ("a,b,label\n1,2,x\n3,nan,y\n", "line 3, column 'b': NaN value"),
    "empty cell": ("a,b,label\n1,2,x\n3,,y\n", "line 3, column 'b': empty cell"),
    "empty target": ("a,b,label\n1,2,x\n3,4,\n", "line 3, column 'label': empty target"),
    "single class": ("a,b,label\n1,2,x\n3,4,x\n", "every row has the class 'x'; a classifier needs 2 or more"),
    "no rows": ("a,b,label\n", "no rows under the header"),
    "empty file": ("", "empty file"),
    "ragged rows": ("a,b,label\n1,2,x\n3,4\n", "line 3: 2 fields, but the header has 3"),
    "fractional classes": ("a,b,label\n1,2,0.5\n3,4,1.25\n", "'0.5' is not a class label"),
    "duplicate column": ("a,a,label\n1,2,x\n3,4,y\n", "column 'a' appears twice"),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_a_bad_table_is_one_error_line(capsys, tmp_path, case):
    text, message = BAD_TABLES[case]
    data = tmp_path / "bad.csv"
    data.write_text(text, encoding="utf-8")
    code, out, err = run_cli(capsys, "train", "--data", data, "--target", "label", "--save",
                             tmp_path / "m.safetensors", *FAST)
    line = one_line_error(err)
    assert code == 2 and line.startswith(f"nnxp: error: {data}: ") and message in line, line
    assert out == "" and not (tmp_path / "m.safetensors").exists()


def test_a_table_that_does_not_fit_the_model_is_one_error_line(capsys, tmp_path, csv_files):
    x, labels, _, data, _ = csv_files
    model = tmp_path / "m.safetensors"
    assert run_cli(capsys, "train", "--data", data, "--target", "label", "--epochs", "1", "--save", model,
                   *FAST)[0] == 0
    cases = {  # file: message
        write_csv(tmp_path / "fewer.csv", ["a", "b"], [[1, 2]]): "column 'c' not found: the model was trained on "
                                                                "the columns 'a', 'b', 'c'",
        tmp_path / "two.npz": "x: 2 features, but the model takes 3",
        write_csv(tmp_path / "unknown.csv", ["a", "b", "c", "label"], [[1, 2, 3, "zebra"]]):
            "line 2, column 'label': 'zebra' is not one of the model's classes ('maybe', 'no', 'yes')",
    }
    np.savez(tmp_path / "two.npz", x=x[:, :2], y=np.zeros(len(x)))
    for path, message in cases.items():
        command = "evaluate" if "unknown" in path.name else "predict"
        code, _, err = run_cli(capsys, command, model, "--data", path, "--device", "cpu")
        assert code == 2 and message in one_line_error(err), err


def test_flag_mistakes_are_one_error_line(capsys, tmp_path, csv_files):
    _, _, _, data, _ = csv_files
    cases = [
        (("train", "--data", data, *FAST), "name the column to predict with --target COLUMN"),
        (("train", "--target", "label", *FAST), "--target is for a table: add --data FILE"),
        (("train", "--data", data, "--target", "label", "--download", *FAST), "--download is for the image"),
        (("train", "--data", tmp_path / "t.xlsx", "--target", "label", *FAST), "unknown table format '.xlsx'"),
        (("train", "--data", tmp_path / "nope.csv", "--target", "label", *FAST), "table file not found"),
        (("train", "--data", data, "--target", "label", "--task", "regression", *FAST),
         "'maybe' is not a number; a regression target must be numbers"),
    ]
    for argv, message in cases:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and message in one_line_error(err), (argv, err)


def test_parquet_without_pyarrow_names_the_install(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    data = tmp_path / "t.parquet"
    data.write_bytes(b"PAR1")
    code, _, err = run_cli(capsys, "train", "--data", data, "--target", "label", *FAST)
    assert code == 2 and "reading Parquet needs pyarrow: pip install 'nnxp[parquet]'" in one_line_error(err)


def test_parquet_table(capsys, tmp_path):
    pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install 'nnxp[parquet]')")
    import pyarrow.parquet as pq

    x, labels, _ = table(n=60)
    data, model = tmp_path / "t.parquet", tmp_path / "m.safetensors"
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2].astype(np.float32), "label": labels}), data)
    code, _, err = run_cli(capsys, "train", "--data", data, "--target", "label", "--epochs", "1", "--save", model,
                           *FAST)
    assert code == 0, err
    np.testing.assert_allclose(read_arrays(model)[1]["table"]["mean"][:2], x[:, :2].mean(axis=0), rtol=1e-12)
    code, out, _ = run_cli(capsys, "predict", model, "--data", data, "--device", "cpu")
    assert code == 0 and len(out.splitlines()) == 61
    pq.write_table(pa.table({"a": pa.array([1.0, None]), "label": ["x", "y"]}), data)
    code, _, err = run_cli(capsys, "train", "--data", data, "--target", "label", *FAST)
    assert code == 2 and "row 2, column 'a': empty cell" in one_line_error(err)


def test_damaged_table_metadata_is_one_error_line(capsys, tmp_path, csv_files):
    _, _, _, data, _ = csv_files
    model = tmp_path / "m.safetensors"
    assert run_cli(capsys, "train", "--data", data, "--target", "label", "--epochs", "1", "--save", model,
                   *FAST)[0] == 0
    arrays, meta = read_arrays(model)
    for field, value, message in [("scale", [1.0, 0.0, 1.0], "table.scale: not 3 finite number(s)"),
                                  ("classes", ["a", "b"], "table.classes: not a list of 3 class names"),
                                  ("task", "clustering", "table.task: 'clustering' is not")]:
        damaged = tmp_path / f"bad-{field}.safetensors"
        write_arrays(damaged, arrays, {**meta, "table": {**meta["table"], field: value}})
        code, _, err = run_cli(capsys, "predict", damaged, "--data", data, "--device", "cpu")
        assert code == 2 and message in one_line_error(err), err
    assert json.dumps(meta["table"])  # what is stored is plain JSON


def test_csv_reading_follows_the_csv_module_and_caps_the_size(tmp_path):
    from nnxp.data.table import read_table
    from nnxp.errors import DataError

    data = tmp_path / "t.csv"
    # A byte-order mark, quoted text with a comma, spaces around cells, a blank line.
    data.write_bytes('\ufeffa, b ,label\n1, 2.5e1,"red, dark"\n\n-3,4,blue\n'.encode("utf-8"))
    t = read_table(data, "label")
    assert t.columns == ["a", "b"] and t.target == "label"
    np.testing.assert_array_equal(t.x, [[1.0, 25.0], [-3.0, 4.0]])
    assert list(t.y) == ["red, dark", "blue"] and t.where(1) == "line 4"
    with pytest.raises(DataError, match=r"t\.csv: 47 bytes is over the 10 bytes a table may have"):
        read_table(data, "label", max_bytes=10)


_CELLS = st.sampled_from(["1", "-2.5", "1e3", "0", "", " ", "nan", "inf", "-inf", "x", "yes", "no", '"a,b"', "3.7",
                          "1e999", "٣", "NaN", "0x10", "2"])


@fuzz(30)
@given(header=st.lists(st.sampled_from(["a", "b", "label", "", "a "]), min_size=1, max_size=4),
       rows=st.lists(st.lists(_CELLS, min_size=0, max_size=5), max_size=8),
       task=st.sampled_from(["classification", "regression"]))
def test_random_tables_train_or_fail_in_one_line(capsys, tmp_path_factory, header, rows, task):
    # Whatever the table holds: a model, or one error line and exit 2; the table unchanged; no traceback.
    directory = tmp_path_factory.mktemp("table")
    data, model = directory / "t.csv", directory / "m.safetensors"
    data.write_text("\n".join(",".join(row) for row in [header, *rows]) + "\n", encoding="utf-8")
    before = data.read_bytes()
    code, out, err = run_cli(capsys, "train", "--data", data, "--target", "label", "--task", task, "--epochs", "1",
                             "--save", model, *FAST)
    assert data.read_bytes() == before
    if code == 0:
        assert model.exists() and out.startswith("training (no --val-split) ")
    else:
        assert code == 2 and one_line_error(err).startswith(f"nnxp: error: {data}: ") and not model.exists()
