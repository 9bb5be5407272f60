"""nnxp.sklearn's MLPClassifier and MLPRegressor against scikit-learn itself.

- ``check_estimator`` (scikit-learn's estimator checks) for both classes, with no expected failure;
- the same settings give the same model as ``sklearn.neural_network``'s estimators: in float64 the
  same weights after several epochs (same initial weights and shuffles, same formulas: only the
  order of floating-point sums differs), and over a full training run the same accuracy / R²;
- nnxp's extras: ``device``/``dtype`` on every backend, ``class_weight``;
- bad parameters are scikit-learn's error kinds.

scikit-learn's own test_mlp.py runs against these classes in tests/test_sklearn_mlp_suite.py.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install '.[sklearn]')")

import sklearn.neural_network as sk  # noqa: E402
from sklearn.datasets import load_digits, make_multilabel_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils._param_validation import InvalidParameterError  # noqa: E402
from sklearn.utils.class_weight import compute_sample_weight  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from nnxp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

from conftest import host  # noqa: E402


@parametrize_with_checks([
    MLPClassifier(random_state=0),
    MLPRegressor(random_state=0),
    MLPRegressor(solver="lbfgs", random_state=1),
])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_array_api_dispatch_check():
    """The one check scikit-learn runs only with SCIPY_ARRAY_API=1 set before SciPy loads."""
    code = ("from sklearn.utils.estimator_checks import check_array_api_input\n"
            "from nnxp.sklearn import MLPClassifier, MLPRegressor\n"
            "for est in (MLPClassifier(random_state=0), MLPRegressor(random_state=0)):\n"
            "    check_array_api_input(type(est).__name__, est, array_namespace='numpy',\n"
            "                          expect_only_array_outputs=False)\n"
            "print('passed')\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "SCIPY_ARRAY_API": "1", "PYTHONPATH": root}
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "passed" in result.stdout


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return train_test_split(x / 16.0, y, test_size=0.25, stratify=y, random_state=0)


def _pairs(estimator_kwargs, fit_kwargs, x, y, nnxp_cls, sk_cls):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = nnxp_cls(**estimator_kwargs).fit(x, y, **fit_kwargs)
        theirs = sk_cls(**estimator_kwargs).fit(x, y, **fit_kwargs)
    return ours, theirs


SAME_MODEL_CASES = {
    "adam-multiclass": dict(solver="adam"),
    "sgd-nesterov-alpha": dict(solver="sgd", alpha=0.1, learning_rate_init=0.05),
    "sgd-heavy-ball-tanh": dict(solver="sgd", nesterovs_momentum=False, activation="tanh"),
    "sgd-invscaling-logistic": dict(solver="sgd", learning_rate="invscaling", activation="logistic",
                                    learning_rate_init=0.5),
    "adam-early-stopping": dict(solver="adam", early_stopping=True, learning_rate_init=0.01),
    "sgd-adaptive-early-stopping": dict(solver="sgd", learning_rate="adaptive", early_stopping=True,
                                        n_iter_no_change=1, tol=0.5, max_iter=8),
    "adam-no-shuffle-batch-37": dict(solver="adam", shuffle=False, batch_size=37),
    "lbfgs": dict(solver="lbfgs", max_iter=20),
}


@pytest.mark.parametrize("case", SAME_MODEL_CASES)
def test_classifier_matches_scikit_learn_weights(case, digits):
    """float64, same settings: the same weights, losses and iterations as scikit-learn's."""
    x, _, y, _ = digits
    kwargs = {"hidden_layer_sizes": (16, 8), "max_iter": 6, "random_state": 0, **SAME_MODEL_CASES[case]}
    sw = np.where(y % 3 == 0, 2.5, 1.0) if case == "adam-multiclass" else None
    ours, theirs = _pairs(kwargs, {"sample_weight": sw}, x, y, MLPClassifier, sk.MLPClassifier)
    _assert_same_model(ours, theirs)


def test_binary_multilabel_and_multioutput_match_scikit_learn(digits):
    x, _, y, _ = digits
    kwargs = {"hidden_layer_sizes": (12,), "max_iter": 5, "random_state": 0}
    _assert_same_model(*_pairs(kwargs, {}, x, y % 2, MLPClassifier, sk.MLPClassifier))  # one logistic unit
    xm, ym = make_multilabel_classification(n_samples=150, n_features=10, n_classes=4, random_state=0)
    _assert_same_model(*_pairs(kwargs, {}, xm, ym, MLPClassifier, sk.MLPClassifier))
    xr, yr = make_regression(n_samples=150, n_features=6, n_targets=3, noise=1.0, random_state=0)
    sw = np.linspace(0.5, 2.0, len(xr))
    _assert_same_model(*_pairs({**kwargs, "alpha": 0.3}, {"sample_weight": sw}, xr, yr / 100,
                               MLPRegressor, sk.MLPRegressor))


def _assert_same_model(ours, theirs):
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    assert ours.out_activation_ == theirs.out_activation_ and ours.n_layers_ == theirs.n_layers_
    # Only the order of floating-point sums differs (x W^T on (out, in) against x W on (in, out)):
    # float64 rounding, a few ulps per operation, grows over the steps but stays far below 1e-9.
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.shape == b.shape and a.dtype == b.dtype == np.float64
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    if theirs.solver == "lbfgs":
        np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-9)
        return
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-9) if theirs.best_loss_ is not None \
        else ours.best_loss_ is None
    if theirs.validation_scores_ is not None:
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=1e-9)
        assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_, rel=1e-9)


def test_same_accuracy_and_r2_as_scikit_learn(digits):
    """A full training run, nnxp in float32 against scikit-learn in float64: accuracy within
    1.5 points, R² within 0.02 (float32 rounding changes the trajectory, not the result)."""
    x_train, x_test, y_train, y_test = digits
    kwargs = {"hidden_layer_sizes": (64,), "max_iter": 40, "random_state": 0}
    ours, theirs = _pairs({**kwargs}, {}, x_train.astype(np.float32), y_train, MLPClassifier, sk.MLPClassifier)
    assert ours.coefs_[0].dtype == np.float32
    acc_ours, acc_theirs = ours.score(x_test, y_test), theirs.score(x_test, y_test)
    assert acc_theirs > 0.95 and abs(acc_ours - acc_theirs) <= 0.015, (acc_ours, acc_theirs)
    xr, yr = make_regression(n_samples=600, n_features=8, noise=5.0, random_state=0)
    xr_train, xr_test, yr_train, yr_test = train_test_split(xr, yr / yr.std(), random_state=0)
    ours, theirs = _pairs({**kwargs, "max_iter": 100}, {}, xr_train.astype(np.float32), yr_train,
                          MLPRegressor, sk.MLPRegressor)
    r2_ours, r2_theirs = ours.score(xr_test, yr_test), theirs.score(xr_test, yr_test)
    assert r2_theirs > 0.9 and abs(r2_ours - r2_theirs) <= 0.02, (r2_ours, r2_theirs)


@pytest.mark.many_steps
def test_device_and_dtype(backend, dtype_name):
    """On every backend: the network lives there, the outputs come back as NumPy and agree with a
    float64 NumPy forward pass of the fitted ``coefs_``."""
    x, y = load_digits(n_class=3, return_X_y=True)
    x = x / 16.0
    clf = MLPClassifier((16,), max_iter=15, learning_rate_init=1e-2, batch_size=64, device=backend,
                        dtype=dtype_name, random_state=0).fit(x, y)
    net = clf._network()
    assert net.backend.owns(net.layers[0].weight) and net.dtype_name == dtype_name
    assert clf.coefs_[0].dtype == np.dtype(dtype_name) and clf.coefs_[0].shape == (64, 16)
    proba = clf.predict_proba(x)
    assert isinstance(proba, np.ndarray) and proba.shape == (len(x), 3)
    h = np.maximum(x @ clf.coefs_[0].astype(np.float64) + clf.intercepts_[0], 0.0)
    z = h @ clf.coefs_[1].astype(np.float64) + clf.intercepts_[1]
    reference = np.exp(z - z.max(axis=1, keepdims=True))
    reference /= reference.sum(axis=1, keepdims=True)
    # Two products of length 64 and 16: each logit carries a few ulps x sqrt(length) of
    # rounding, times the size of the terms; the probabilities inherit it (|d softmax| <= 1/2).
    eps = np.finfo(dtype_name).eps
    np.testing.assert_allclose(proba, reference, rtol=0, atol=50 * eps * np.sqrt(64) * max(1.0, np.abs(z).max()))
    np.testing.assert_allclose(host(net.predict(x)), proba, rtol=0, atol=8 * eps)  # same arrays, same device
    assert clf.score(x, y) > 0.9


def test_class_weight_is_sample_weight_per_class(digits):
    x, _, y, _ = digits
    kwargs = {"hidden_layer_sizes": (8,), "max_iter": 3, "random_state": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = MLPClassifier(class_weight={0: 3.0, 7: 0.5}, **kwargs).fit(x, y)
        explicit = MLPClassifier(**kwargs).fit(x, y, sample_weight=np.where(y == 0, 3.0, np.where(y == 7, 0.5, 1.0)))
        balanced = MLPClassifier(class_weight="balanced", **kwargs).fit(x[:300], y[:300])
        by_hand = MLPClassifier(**kwargs).fit(x[:300], y[:300],
                                              sample_weight=compute_sample_weight("balanced", y[:300]))
        unweighted = MLPClassifier(**kwargs).fit(x, y)
    for a, b in [(weighted, explicit), (balanced, by_hand)]:
        for wa, wb in zip(a.coefs_, b.coefs_):
            np.testing.assert_array_equal(wa, wb)
    assert not np.allclose(weighted.coefs_[0], unweighted.coefs_[0])
    with pytest.raises(ValueError, match="class_weight='balanced' needs all the data"):
        MLPClassifier(class_weight="balanced").partial_fit(x, y, classes=np.arange(10))


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_bad_parameters_are_scikit_learn_errors(cls):
    x, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    with pytest.raises(ValueError, match=r"hidden_layer_sizes must be whole numbers.*\(2\.7,\)"):
        cls(hidden_layer_sizes=(2.7,)).fit(x, y)
    with pytest.raises(InvalidParameterError, match="batch_size"):
        cls(batch_size=2.5).fit(x, y)
    with pytest.raises(InvalidParameterError, match="dtype"):
        cls(dtype="float16").fit(x, y)
    with pytest.raises(ValueError, match="device"):
        cls(device="no-such-device").fit(x, y)
    with pytest.raises(InvalidParameterError, match="threads"):
        cls(threads=0).fit(x, y)


def test_poisson_loss_is_a_clear_error():
    with pytest.raises(ValueError, match="loss='poisson' is not supported by nnxp"):
        MLPRegressor(loss="poisson").fit(np.ones((4, 2)), [1, 2, 3, 4])


def test_pickle_keeps_predictions_and_optimizer_state(digits):
    x, x_test, y, _ = digits
    clf = MLPClassifier((16,), random_state=0)
    clf.partial_fit(x, y, classes=np.arange(10))
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(x_test), clf.predict_proba(x_test))
    clf.partial_fit(x, y)
    again.partial_fit(x, y)  # Adam's moments and step count came through the pickle
    for a, b in zip(clf.coefs_, again.coefs_):
        np.testing.assert_array_equal(a, b)


def test_pipeline_and_grid_search_with_string_labels(digits):
    x_train, x_test, y_train, y_test = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    base = make_pipeline(StandardScaler(), MLPClassifier((32,), max_iter=30, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(base, {"mlpclassifier__learning_rate_init": [1e-5, 3e-3]}, cv=2)
        search.fit(x_train, names[y_train])
    assert search.best_params_ == {"mlpclassifier__learning_rate_init": 3e-3}
    assert list(search.best_estimator_[-1].classes_) == sorted(names)
    assert search.score(x_test, names[y_test]) > 0.93
