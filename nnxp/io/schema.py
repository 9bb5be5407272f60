"""Checking what a file holds, field by field: one style for every file nnxp reads.

A file that parses (JSON, safetensors metadata) can still hold anything: a
list where an object belongs, a string where a number does.  Every reader
checks each value it uses before using it, through a :class:`Schema` made for
that file, and a bad value becomes one :class:`~nnxp.errors.DataError` line::

    {path}: {field}: {problem}; {fix}

``field`` is where the value sits, written as in Python: ``history[3].loss``,
``machines["Xeon | 2 cores"]["784-256-10 B32 float32"].choice``.  ``problem``
says what is there and what was expected (``is "7", not a number``).  ``fix``
is the same for the whole file and says what the user can do (``delete it and
train again``, ``the file is damaged: use another copy``).

How to write a reader (the model loader, :mod:`nnxp.serialization`; the BLAS
choice cache, :mod:`nnxp.kernels.blas.choice`; the metrics readers,
:mod:`nnxp.viz.metrics`, follow it)::

    from nnxp.io.schema import Schema

    def read_things(path, data):
        s = Schema(path, "delete it; nnxp writes a new one")
        top = s.object(data, "")                      # the whole document
        version = s.whole(s.key(top, "format", ""), "format", least=1)
        for name, entry in s.object(s.key(top, "items", ""), "items").items():
            where = s.at("items", name)               # items["name"]
            size = s.whole(s.key(entry, "size", where), s.at(where, "size"), least=1)

Every check returns the value (normalised: ``whole`` gives an ``int``,
``number`` a ``float``) or raises.  Booleans are never numbers.  A reader
whose file is only a cache (re-creatable, like the BLAS choice) catches the
DataError, warns once with its text and goes on as if the file were absent;
a reader whose file is the user's data (a model, a checkpoint, a metrics
file) lets it stop the command (exit 2).
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

from ..errors import DataError

__all__ = ["Schema", "shown"]

_MISSING = object()


def shown(value: Any, limit: int = 40) -> str:
    """A short, one-line rendering of a value from a file, for a message."""
    try:
        text = json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


class Schema:
    """The checks for the values of one file; every failure names ``path``, the field and ``fix``."""

    def __init__(self, path: Any, fix: str):
        self.path, self.fix = path, fix

    def error(self, field: str, problem: str) -> DataError:
        """The one-line DataError for ``field`` (``""``: the whole document)."""
        where = f"{field}: " if field else ""
        return DataError(f"{self.path}: {where}{problem}; {self.fix}")

    @staticmethod
    def at(field: str, key: str | int) -> str:
        """The name of ``key`` inside ``field``: ``a.b``, ``a[3]``, ``a["odd key"]``."""
        if isinstance(key, int):
            return f"{field}[{key}]"
        if key.isidentifier():
            return f"{field}.{key}" if field else key
        return f"{field}[{json.dumps(key)}]"

    def _not(self, value: Any, field: str, wanted: str) -> DataError:
        return self.error(field, f"is {_kind(value)} ({shown(value)}), not {wanted}")

    # -- containers --------------------------------------------------------------
    def object(self, value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self._not(value, field, "an object")
        return value

    def list(self, value: Any, field: str, *, min_items: int = 0) -> list[Any]:
        if not isinstance(value, list):
            raise self._not(value, field, "a list")
        if len(value) < min_items:
            raise self.error(field, f"has {len(value)} item(s), needs at least {min_items}")
        return value

    def key(self, obj: dict[str, Any], key: str, field: str, default: Any = _MISSING) -> Any:
        """``obj[key]``; a missing key is an error unless a ``default`` is given."""
        if key in obj:
            return obj[key]
        if default is _MISSING:
            raise self.error(self.at(field, key), "is missing")
        return default

    # -- scalars -----------------------------------------------------------------
    def text(self, value: Any, field: str, choices: Sequence[str] | None = None) -> str:
        if not isinstance(value, str):
            raise self._not(value, field, "a string")
        if choices is not None and value not in choices:
            raise self.error(field, f"is {shown(value)}, not one of {', '.join(choices)}")
        return value

    def whole(self, value: Any, field: str, *, least: int | None = None) -> int:
        if type(value) is not int:
            raise self._not(value, field, "a whole number")
        if least is not None and value < least:
            raise self.error(field, f"is {value}, must be at least {least}")
        return value

    def number(self, value: Any, field: str, *, finite: bool = True, least: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._not(value, field, "a number")
        value = float(value)
        if finite and not math.isfinite(value):
            raise self.error(field, f"is {value}, not a finite number")
        if least is not None and not value >= least:
            raise self.error(field, f"is {value:g}, must be at least {least:g}")
        return value

    def boolean(self, value: Any, field: str) -> bool:
        if not isinstance(value, bool):
            raise self._not(value, field, "true or false")
        return value
