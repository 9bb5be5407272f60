"""Checking what users pass in: one place for every argument rule.

Each checker takes the argument's ``name`` (as the user wrote it, e.g.
``"batch_size"``) and its value, and returns the value normalised (a Python
``int``/``float``, a host array) or raises an :mod:`nnxp.errors` class whose
one-line message names the argument, what was given and what is allowed.
Nothing here depends on the rest of nnxp except the errors, so any module
(network, training, files, command line) can use it without an import cycle.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from .errors import ConfigError, ShapeError

__all__ = ["positive_int", "nonnegative_int", "finite_float", "file_path", "host_array",
           "check_real", "check_finite", "layer_sizes", "check_parameter_memory", "available_memory"]


def _whole(name: str, value: Any, requirement: str) -> int:
    """``value`` as an int if it is a whole number (not a bool, not 1.5, not inf)."""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, (str, bytes)):
        raise ConfigError(f"{name} must be {requirement}, got {value!r}")
    try:
        number = int(value)
        whole = number == value
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} must be {requirement}, got {value!r}") from None
    if not whole:
        raise ConfigError(f"{name} must be {requirement}, got {value!r}")
    return number


def positive_int(name: str, value: Any) -> int:
    """A whole number >= 1 (``2`` or ``2.0``; not ``0``, ``-1``, ``1.5``, ``inf``, ``True``)."""
    number = _whole(name, value, "a positive integer")
    if number < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return number


def nonnegative_int(name: str, value: Any) -> int:
    """A whole number >= 0."""
    number = _whole(name, value, "a whole number >= 0")
    if number < 0:
        raise ConfigError(f"{name} must be a whole number >= 0, got {value!r}")
    return number


def finite_float(name: str, value: Any, *, positive: bool = False, nonnegative: bool = False) -> float:
    """A finite Python float (optionally > 0 or >= 0); refuses NaN, inf, strings, bools."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    requirement = "finite and > 0" if positive else "finite and >= 0" if nonnegative else "finite"
    if not math.isfinite(number) or (positive and number <= 0) or (nonnegative and number < 0):
        raise ConfigError(f"{name} must be {requirement}, got {number}")
    return number


def file_path(name: str, value: Any) -> str | os.PathLike:
    """A file path (``str`` or ``os.PathLike``, not empty); refuses None, numbers, open files."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, os.PathLike):
        return value
    raise ConfigError(f"{name} must be a file path (str or pathlib.Path), got {value!r}")


def host_array(name: str, value: Any) -> Any:
    """``value`` itself if it is an array (has ``shape``), else ``numpy.asarray(value)``.

    A ragged nested list (rows of different lengths) or a list of objects
    that are not numbers is refused with a :class:`ShapeError`.
    """
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return value
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        raise ShapeError(f"{name} is a ragged or mixed sequence: every row must have the same "
                         "number of values (give a rectangular array)") from None
    return array


def check_real(name: str, x: Any) -> None:
    """Refuse arrays whose dtype is not integer or real floating (bool, complex, strings, objects)."""
    dtype = x.dtype
    if isinstance(x, np.ndarray) or isinstance(dtype, np.dtype):
        ok = np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
    else:
        from array_api_compat import array_namespace

        ok = array_namespace(x).isdtype(dtype, ("integral", "real floating"))
    if not ok:
        raise ShapeError(f"{name} must hold real numbers, got dtype {dtype}")


def check_finite(name: str, x: Any) -> None:
    """Refuse arrays holding NaN or infinity (one read of a 0-d result: an API-boundary check)."""
    from array_api_compat import array_namespace

    xp = array_namespace(x)
    if bool(xp.all(xp.isfinite(x))):
        return
    bad = int(xp.sum(xp.astype(~xp.isfinite(x), xp.int32)))
    raise ShapeError(f"{name} has {bad} NaN or infinite value(s): clean or drop those values")


def layer_sizes(sizes: Any) -> list[int]:
    """Layer widths, input first: 2 or more whole numbers >= 1 (``[784, 128, 10]``)."""
    example = "give a list of layer widths like [784, 128, 10]"
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) and not hasattr(sizes, "__iter__"):
        raise ConfigError(f"sizes must be a list of layer widths like [784, 128, 10], got {sizes!r}")
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ConfigError(f"sizes must be 2 or more positive integers (inputs ... outputs), got {sizes}")
    out = []
    for i, s in enumerate(sizes):
        try:
            out.append(positive_int(f"sizes[{i}]", s))
        except ConfigError:
            raise ConfigError(f"sizes must be 2 or more positive integers (inputs ... outputs): "
                              f"sizes[{i}] is {s!r}; {example}") from None
    return out


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


def check_parameter_memory(sizes: Sequence[int], itemsize: int, what: str = "the network") -> None:
    """Refuse a network whose parameters alone would not fit in the available host memory.

    Parameters are drawn on the host before moving to a device, so host
    memory bounds every backend.  (Training needs several times more: the
    gradients and the optimizer's state.)
    """
    count = sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    need = count * max(itemsize, 8)  # initial values are drawn in float64
    have = available_memory()
    if have is not None and need > have:
        raise ConfigError(f"{what} with sizes {list(sizes)} has {count:,} parameters, which need "
                          f"{need / 2**30:,.1f} GiB; only {have / 2**30:,.1f} GiB of memory is available: "
                          "use smaller layers")
