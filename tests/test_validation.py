"""Library arguments: every bad value is one nnxp error naming the argument (issue 10)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnxp
from nnxp.data import read_idx
from nnxp.optim import SGD
from nnxp.validation import (check_parameter_memory, check_sizes, file_path, finite_float, nonnegative_int,
                             positive_int)


def _net():
    return nnxp.Network([4, 3, 2], device="cpu", seed=0)


def _data(n=20):
    rng = np.random.default_rng(0)
    return rng.random((n, 4)), rng.integers(0, 2, n)


BAD_BATCH = [0, -1, 1.5, math.inf, math.nan, "8", None, True]


@pytest.mark.parametrize("value", BAD_BATCH)
@pytest.mark.parametrize("call", ["predict", "classify", "evaluate", "fit"])
def test_batch_size_is_checked_everywhere(call, value):
    net, (x, y) = _net(), _data()
    args = (x, y) if call in ("evaluate", "fit") else (x,)
    kwargs = {"verbose": 0} if call == "fit" else {}
    with pytest.raises(nnxp.ConfigError, match="batch_size must be a positive integer"):
        getattr(net, call)(*args, batch_size=value, **kwargs)


@pytest.mark.parametrize("kwargs,message", [
    ({"epochs": math.inf}, "epochs must be a positive integer"),
    ({"epochs": 2.5}, "epochs must be a positive integer"),
    ({"optimizer": 42}, "optimizer must be a name"),
    ({"optimizer": None}, "optimizer must be a name"),
    ({"initial_epoch": -1}, "initial_epoch must be a whole number >= 0"),
    ({"initial_epoch": 0.5}, "initial_epoch must be a whole number >= 0"),
    ({"lr": math.nan, "optimizer": SGD(lr=0.1)}, "learning rate must be finite and > 0"),
    ({"lr": math.inf}, "learning rate must be finite and > 0"),
    ({"lr": "fast"}, "learning rate must be a number"),
    ({"seed": None}, "seed must be a whole number >= 0"),
    ({"seed": -1}, "seed must be a whole number >= 0"),
    ({"schedule": ["cosine"]}, "unknown schedule"),
])
def test_bad_fit_arguments_name_the_argument(kwargs, message):
    net, (x, y) = _net(), _data()
    before = net.get_weights()
    with pytest.raises(nnxp.ConfigError, match=message):
        net.fit(x, y, verbose=0, **kwargs)
    for (w, b), (w0, b0) in zip(net.get_weights(), before):  # nothing trained
        np.testing.assert_array_equal(w, w0)


@pytest.mark.parametrize("sizes", [[math.inf, 2], [784, math.nan, 10], [3, "4", 2], [3, 2.5, 2], [3, True, 2],
                                   "784,10", None, 5, [3]])
def test_bad_sizes_name_the_argument(sizes):
    with pytest.raises(nnxp.ConfigError, match="sizes"):
        nnxp.Network(sizes, device="cpu")


def test_sizes_beyond_memory_are_refused_before_allocating():
    with pytest.raises(nnxp.ConfigError, match="parameters, which need .* GiB.*use smaller layers"):
        nnxp.Network([784, 10**9, 10], device="cpu")
    with pytest.raises(nnxp.ConfigError, match="GiB"):
        check_parameter_memory([10**12, 10**12], 4)
    check_parameter_memory([784, 256, 10], 4)  # a normal network passes


@pytest.mark.parametrize("x", [[[1, 2, 3, 4], [1, 2]], [[1, 2, 3, 4], "abcd"], [[1, 2, 3, {}]]])
def test_ragged_or_mixed_lists_are_refused(x):
    with pytest.raises(nnxp.ShapeError, match="x must be a rectangular array"):
        _net().predict(x)


@pytest.mark.parametrize("w,message", [
    ("abc", "real numbers"),
    (np.full((3, 4), np.nan), "NaN or infinite"),
    (np.full((3, 4), np.inf), "NaN or infinite"),
    (np.zeros((3, 4)) + 1j, "real numbers"),
    (np.zeros((3, 4), dtype=bool), "real numbers"),
    ([[1, 2, 3, 4], [1]], "rectangular array"),
])
def test_set_weights_refuses_bad_values_and_keeps_the_old_ones(w, message):
    net = _net()
    before = net.get_weights()
    pairs = [(w, np.zeros(3)), before[1]]
    with pytest.raises(nnxp.ShapeError, match=f"layer 0 weight .*{message}"):
        net.set_weights(pairs)
    np.testing.assert_array_equal(net.get_weights()[0][0], before[0][0])


@pytest.mark.parametrize("path", [None, 3, b"model", "", ["a"]])
def test_file_paths_are_checked(path):
    with pytest.raises(nnxp.ConfigError, match="path must be a file path"):
        nnxp.load(path)
    with pytest.raises(nnxp.ConfigError, match="path must be a file path"):
        read_idx(path)


# -- property: the checkers accept exactly what they document -----------------------------------

_anything = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                      st.text(max_size=5), st.lists(st.integers(), max_size=3), st.complex_numbers())


@settings(max_examples=200, deadline=None)
@given(_anything)
def test_checkers_accept_only_what_they_document(value):
    whole = (type(value) is int) or (type(value) is float and math.isfinite(value) and value == int(value))
    for check, ok in [(positive_int, whole and value >= 1), (nonnegative_int, whole and value >= 0)]:
        if ok:
            assert check("n", value) == int(value)
        else:
            with pytest.raises(nnxp.ConfigError, match="^n must be"):
                check("n", value)
    number = type(value) in (int, float) and abs(value) < 1e308 and math.isfinite(value)
    if number and value > 0:
        assert finite_float("lr", value, positive=True) == float(value)
    else:
        with pytest.raises(nnxp.ConfigError, match="^lr must be"):
            finite_float("lr", value, positive=True)


@settings(max_examples=60, deadline=None)
@given(kwargs=st.fixed_dictionaries({}, optional={
    "epochs": _anything, "batch_size": _anything, "lr": _anything, "initial_epoch": _anything,
    "optimizer": st.one_of(_anything, st.sampled_from(["sgd", "adam", "nope"])),
    "schedule": st.one_of(_anything, st.sampled_from(["constant", "cosine"])),
    "seed": _anything, "shuffle": st.booleans()}))
def test_random_fit_arguments_train_or_raise_one_nnxp_error(kwargs):
    net, (x, y) = _net(), _data(12)
    if "epochs" in kwargs and type(kwargs["epochs"]) is int and kwargs["epochs"] > 3:
        kwargs["epochs"] = 3  # keep it fast; huge epoch counts are the same code path
    try:
        history = net.fit(x, y, verbose=0, progress=False, **kwargs)
    except nnxp.NnxpError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert all(math.isfinite(r["loss"]) for r in history.records)


@settings(max_examples=60, deadline=None)
@given(x=st.one_of(_anything, st.lists(st.lists(st.one_of(st.floats(), st.integers(-5, 5), st.text(max_size=1)),
                                                 max_size=5), max_size=4)),
       batch=st.one_of(st.integers(-2, 5), _anything))
def test_random_predict_inputs_work_or_raise_one_nnxp_error(x, batch):
    net = _net()
    try:
        out = net.predict(x, batch_size=batch)
    except nnxp.NnxpError as exc:
        assert "\n" not in str(exc)
        return
    assert np.isfinite(nnxp.to_numpy(out)).all()


def test_small_helpers():
    assert check_sizes((2.0, 3)) == [2, 3]
    assert file_path("p", "m.safetensors") == "m.safetensors"
