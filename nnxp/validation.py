"""Checking what users pass in, at the API boundary, with one clear error each.

Inputs and targets are checked and moved to the network's device once
(``fit``, ``predict``, ...), never inside the training loop.  Each function
reads the data back at most once (e.g. one ``all(isfinite(x))``).
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as array_device

from .backend import index_dtype
from .errors import ConfigError, ShapeError

__all__ = ["inputs", "targets", "one_hot", "predicted_labels", "count_correct", "check_sizes", "positive_int",
           "real_array", "nonnegative_int", "finite_float", "file_path", "check_parameter_memory", "available_memory"]


def inputs(net: Any, x: Any, name: str = "x") -> Any:
    """``x`` as a (B, n_0) array of the network's dtype on its device, checked.

    A network whose first layer takes integer ids (an embedding) gets them as
    integers of the backend's index dtype, checked against its vocabulary.
    """
    x = _as_array(x, name)
    if len(x.shape) != 2:
        hint = " (use x[None, :] for a single sample)" if len(x.shape) == 1 else ""
        raise ShapeError(f"{name} must be 2-D (samples, features), got shape {tuple(x.shape)}{hint}")
    if x.shape[0] == 0:
        raise ShapeError(f"{name} has no samples: give at least one row")
    first = net.layers[0]
    width = getattr(first, "context", None) if first.accepts_ids else first.in_features
    if width is not None and x.shape[1] != width:
        raise ShapeError(f"{name} has {x.shape[1]} features per sample but the network takes {width}")
    if first.accepts_ids:
        if not _is_integer(x):
            raise ShapeError(f"{name} must hold integer token ids, got dtype {x.dtype}")
        x = net.backend.asarray(x, net.backend.index_dtype)
        xp = array_namespace(x)
        low, high = int(xp.min(x)), int(xp.max(x))  # one read, at the API boundary
        vocabulary = first.vocabulary_size
        if low < 0 or high >= vocabulary:
            raise ShapeError(f"{name} has token ids from {low} to {high}; the vocabulary has {vocabulary}")
        return x
    _check_numeric(x, name)
    x = net.backend.asarray(x, net.dtype)
    _check_finite(x, name)
    return x


def targets(net: Any, y: Any, n: int | None, name: str = "y") -> Any:
    """Targets as a (B, n_L) array: one-hot rows for integer class labels."""
    y = _as_array(y, name)
    k = net.layers[-1].out_features
    if n is not None and y.shape[:1] != (n,):
        raise ShapeError(
            f"{name} has {y.shape[0] if len(y.shape) else 0} samples but x has {n}: they must match"
        )
    if len(y.shape) == 1 and _is_integer(y):
        labels = net.backend.asarray(y, net.backend.index_dtype)
        return one_hot(labels, 2 if k == 1 else k, net.dtype, name=name, binary=k == 1)
    if len(y.shape) == 1 and k == 1:
        y = net.xp.reshape(net.backend.asarray(y, net.dtype), (-1, 1))
    if len(y.shape) != 2 or y.shape[1] != k:
        raise ShapeError(
            f"{name} must be integer class labels (samples,) or targets (samples, {k}), "
            f"got shape {tuple(y.shape)}"
        )
    _check_numeric(y, name)
    y = net.backend.asarray(y, net.dtype)
    _check_finite(y, name)
    return y


def one_hot(labels: Any, k: int, dtype: Any, *, name: str = "y", binary: bool = False) -> Any:
    """(B,) integer labels in [0, k) -> (B, k) one-hot rows (or (B, 1) 0/1 if ``binary``)."""
    xp = array_namespace(labels)
    low, high = int(xp.min(labels)), int(xp.max(labels))  # one read, at the API boundary
    if low < 0 or high >= k:
        raise ShapeError(f"{name} has class labels from {low} to {high} but the network has {k} classes")
    if binary:
        return xp.reshape(xp.astype(labels, dtype), (-1, 1))
    classes = xp.arange(k, dtype=labels.dtype, device=array_device(labels))
    return xp.astype(labels[:, None] == classes[None, :], dtype)


def predicted_labels(a: Any) -> Any:
    """Argmax of each row, or a >= 0.5 for a single output column."""
    xp = array_namespace(a)
    if a.shape[1] == 1:
        return xp.astype(a[:, 0] >= 0.5, index_dtype(xp, array_device(a)))
    return xp.argmax(a, axis=1)


def count_correct(a: Any, y: Any, dtype: Any) -> Any:
    """Number of rows whose predicted class matches the target's, as a 0-d device array.

    Several outputs: argmax(a) == argmax(y).  One output: (a >= 0.5) == (y >= 0.5).
    """
    xp = array_namespace(a, y)
    if a.shape[1] == 1:
        hits = (a[:, 0] >= 0.5) == (y[:, 0] >= 0.5)
    else:
        hits = xp.argmax(a, axis=1) == xp.argmax(y, axis=1)
    return xp.sum(xp.astype(hits, dtype))


def check_sizes(sizes: Sequence[int]) -> list[int]:
    """Layer widths, input first: 2 or more positive integers (not inf, 2.5, True or "4")."""
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise ConfigError(f"sizes must be a list of layer widths like [784, 128, 10], got {sizes!r}")
    sizes = list(sizes)
    try:
        out = [positive_int("a layer width", s) for s in sizes]
    except ConfigError:
        out = []
    if len(out) < 2:
        raise ConfigError(f"sizes must be 2 or more positive integers (inputs ... outputs), got {sizes!r:.80}")
    return out


def positive_int(name: str, value: Any) -> int:
    """``value`` as an int >= 1, or a ConfigError naming ``name``."""
    return _whole_number(name, value, 1, "a positive integer")


def nonnegative_int(name: str, value: Any) -> int:
    """``value`` as an int >= 0 (``0``, ``3``, ``3.0``; not ``-1``, ``1.5``, ``inf``, ``None``, ``True``)."""
    return _whole_number(name, value, 0, "a whole number >= 0")


def _whole_number(name: str, value: Any, least: int, requirement: str) -> int:
    """``value`` as an int >= ``least`` (bools, strings and fractions refused)."""
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} must be {requirement}, got {value!r}") from None
    if isinstance(value, (bool, str, bytes)) or number != value or number < least:
        raise ConfigError(f"{name} must be {requirement}, got {value!r}")
    return number


def finite_float(name: str, value: Any, *, positive: bool = False) -> float:
    """``value`` as a finite Python float (> 0 if ``positive``); NaN, inf, strings, bools refused."""
    requirement = "finite and > 0" if positive else "finite"
    if isinstance(value, (bool, str, bytes)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or (positive and number <= 0):
        raise ConfigError(f"{name} must be {requirement}, got {number}")
    return number


def file_path(name: str, value: Any) -> str | os.PathLike:
    """A file path (a non-empty ``str`` or an ``os.PathLike``); None, numbers, bytes refused."""
    if isinstance(value, os.PathLike) or isinstance(value, str) and value:
        return value
    raise ConfigError(f"{name} must be a file path (str or pathlib.Path), got {value!r}")


def available_memory() -> int | None:
    """Bytes of host memory available now (Linux ``MemAvailable``), else physical memory, else None."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_parameter_memory(sizes: Sequence[int], itemsize: int) -> None:
    """Refuse layer sizes whose parameters alone would not fit in the available host memory.

    Initial values are drawn on the host in float64 before moving to a
    device, so host memory bounds every backend.  (Training needs several
    times more: gradients and optimizer state.)
    """
    count = sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    need = count * max(itemsize, 8)
    have = available_memory()
    if have is not None and need > have:
        raise ConfigError(f"sizes {list(sizes)} make {count:,} parameters, which need {need / 2**30:,.1f} GiB; "
                          f"only {have / 2**30:,.1f} GiB of memory is available: use smaller layers")


def real_array(data: Any, name: str) -> Any:
    """``data`` (any array or nested list) checked to hold finite real numbers."""
    array = _as_array(data, name)
    _check_numeric(array, name)
    xp = array_namespace(array)
    if not bool(xp.all(xp.isfinite(array))):
        raise ShapeError(f"{name} has NaN or infinite values: give finite numbers")
    return array


def _as_array(x: Any, name: str) -> Any:
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return x
    try:
        out = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise ShapeError(f"{name} must be a rectangular array of numbers ({exc})") from None
    if out.dtype == object:
        raise ShapeError(f"{name} must be a rectangular array of numbers (rows of equal length)")
    return out


def _is_integer(y: Any) -> bool:
    if isinstance(y, np.ndarray):
        return bool(np.issubdtype(y.dtype, np.integer))
    return bool(array_namespace(y).isdtype(y.dtype, "integral"))


def _check_numeric(x: Any, name: str) -> None:
    dtype = x.dtype
    if isinstance(x, np.ndarray):
        ok = np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
    else:
        ok = array_namespace(x).isdtype(dtype, ("integral", "real floating"))
    if not ok:
        raise ShapeError(f"{name} must hold real numbers, got dtype {dtype}")


def _check_finite(x: Any, name: str) -> None:
    xp = array_namespace(x)
    if bool(xp.all(xp.isfinite(x))):  # one read, at the API boundary
        return
    bad = int(xp.sum(xp.astype(~xp.isfinite(x), xp.int32)))
    raise ShapeError(f"{name} has {bad} NaN or infinite value(s): clean or drop those samples")
