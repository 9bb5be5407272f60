"""nnxp.sklearn.MLPClassifier against scikit-learn's own estimator checks and tools.

Checks that do not run here, and why (each also shows as a pytest skip with its reason):

- ``check_array_api_input`` is skipped by scikit-learn unless ``SCIPY_ARRAY_API=1`` was set
  before SciPy was imported; :func:`test_array_api_dispatch_check` runs it in a fresh
  interpreter with that variable set, so it is not left out.
- ``check_classifier_data_not_an_array`` is skipped by scikit-learn when pandas is absent.
- Sample weights: ``fit`` takes none, so the sample-weight checks are not generated.
- ``check_methods_subset_invariance`` is an expected failure for float32 estimators only (reason in
  :func:`_expected_failures`: float32 BLAS results depend on the batch's row count); it passes in float64.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install '.[sklearn]')")

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from nnxp.sklearn import MLPClassifier  # noqa: E402

from tolerance import reordering_tolerance  # noqa: E402
from conftest import host  # noqa: E402


def _expected_failures(estimator):
    """Checks known to fail, with the reason (scikit-learn reports them as xfail)."""
    if estimator.dtype == "float32":
        return {"check_methods_subset_invariance":
                "float32 products depend on the batch's row count (BLAS kernel blocking, and since the "
                "BLAS choice of issue 14 possibly another library per shape): probabilities of a "
                "subset differ by ~4e-7 relative, above the check's 1e-7; float64 passes"}
    return {}


@parametrize_with_checks([
    MLPClassifier(random_state=0),  # the defaults
    MLPClassifier(hidden_layer_sizes=(8, 8), activation="tanh", optimizer="momentum", lr=0.05,
                  epochs=30, batch_size=16, dtype="float64", random_state=1),
], expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_array_api_dispatch_check():
    """The one check scikit-learn runs only with SCIPY_ARRAY_API=1 set before SciPy loads."""
    code = ("from sklearn.utils.estimator_checks import check_array_api_input\n"
            "from nnxp.sklearn import MLPClassifier\n"
            "check_array_api_input('MLPClassifier', MLPClassifier(random_state=0), "
            "array_namespace='numpy', expect_only_array_outputs=False)\n"
            "print('passed')\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "SCIPY_ARRAY_API": "1", "PYTHONPATH": root}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "passed" in result.stdout


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)


def test_pipeline_learns_digits_with_string_labels(digits):
    x_train, x_test, y_train, y_test = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    model = make_pipeline(StandardScaler(), MLPClassifier((64,), epochs=15, random_state=0))
    model.fit(x_train, names[y_train])
    clf = model[-1]
    assert list(clf.classes_) == sorted(names)
    assert clf.n_features_in_ == 64 and clf.n_iter_ == 15 and len(clf.history_) == 15
    assert model.score(x_test, names[y_test]) > 0.93
    proba = model.predict_proba(x_test)
    assert proba.shape == (len(x_test), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert (model.predict(x_test) == clf.classes_[proba.argmax(axis=1)]).all()


def test_grid_search_and_cross_val_score(digits):
    x_train, _, y_train, _ = digits
    base = make_pipeline(StandardScaler(), MLPClassifier((32,), epochs=5, random_state=0))
    search = GridSearchCV(base, {"mlpclassifier__lr": [1e-4, 3e-3]}, cv=3)
    search.fit(x_train, y_train)
    assert search.best_params_ == {"mlpclassifier__lr": 3e-3}  # 5 epochs at 1e-4 barely move
    scores = cross_val_score(base.set_params(mlpclassifier__lr=3e-3), x_train, y_train, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85


def test_partial_fit_continues_and_matches_fit(digits):
    x_train, x_test, y_train, y_test = digits
    x_train, x_test = x_train / 16.0, x_test / 16.0
    whole = MLPClassifier((32,), epochs=3, random_state=0).fit(x_train, y_train)
    parts = MLPClassifier((32,), epochs=99, random_state=0)
    for _ in range(3):
        parts.partial_fit(x_train, y_train, classes=np.arange(10))
    # Same seed, same shuffles (epoch e uses [seed, e]), optimizer state kept: the same weights.
    for (w1, b1), (w2, b2) in zip(whole.network_.get_weights(), parts.network_.get_weights()):
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(b1, b2)
    with pytest.raises(ValueError, match="classes must be given"):
        MLPClassifier().partial_fit(x_train, y_train)
    with pytest.raises(ValueError, match="not in classes"):
        MLPClassifier().partial_fit(x_train, y_train, classes=[0, 1])


def test_pickle_keeps_predictions_and_optimizer_state(digits):
    x_train, x_test, y_train, _ = digits
    clf = MLPClassifier((16,), epochs=2, random_state=0).fit(x_train / 16.0, y_train)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(x_test / 16.0), clf.predict_proba(x_test / 16.0))
    clf.partial_fit(x_train / 16.0, y_train)
    again.partial_fit(x_train / 16.0, y_train)
    np.testing.assert_array_equal(again.predict_proba(x_test / 16.0), clf.predict_proba(x_test / 16.0))


def test_device_and_dtype(backend, dtype_name):
    """The estimator on every backend: the network lives there; outputs come back as NumPy."""
    x, y = load_digits(n_class=3, return_X_y=True)
    clf = MLPClassifier((16,), epochs=4, lr=1e-2, batch_size=64, device=backend, dtype=dtype_name, random_state=0).fit(x / 16.0, y)
    assert clf.network_.backend.owns(clf.network_.layers[0].weight)
    assert clf.network_.dtype_name == dtype_name
    proba = clf.predict_proba(x / 16.0)
    assert isinstance(proba, np.ndarray) and proba.shape == (len(x), 3)
    reference = host(clf.network_.predict(x / 16.0))
    # predict_proba runs under the estimator's thread limit, network_.predict under BLAS's own
    # thread count: in float32 the products may be summed in another order (OPENBLAS_CORETYPE=Haswell).
    np.testing.assert_allclose(proba, reference, **reordering_tolerance(dtype_name, x.shape[1], layers=2))
    assert clf.score(x / 16.0, y) > 0.9


def test_one_class_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 classes; got 1 class"):
        MLPClassifier().fit(np.zeros((4, 2)), [7, 7, 7, 7])


def test_readme_example_runs(digits):
    from docs_harness import example_block

    block = example_block("MLPClassifier", "docs/sklearn.md")
    x_train, x_test, y_train, y_test = digits
    namespace = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    exec(compile(block, "docs/sklearn.md", "exec"), namespace)
    assert namespace["model"].score(x_test, y_test) > 0.93
