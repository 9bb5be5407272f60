"""Reading the per-epoch metrics file ``nnxp train --metrics`` writes (JSON lines)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import DataError
from ..io.schema import Schema
from ..io.read import read_bytes

__all__ = ["REQUIRED_KEYS", "OPTIONAL_KEYS", "read_metrics"]

REQUIRED_KEYS = ("epoch", "loss", "accuracy")
OPTIONAL_KEYS = ("val_loss", "val_accuracy", "test_loss", "test_accuracy", "seconds", "samples_per_second")


def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
    """The per-epoch records of a ``nnxp train --metrics`` JSON-lines file, or of the
    history a model or checkpoint file written by ``nnxp train`` records, in epoch order.

    Each non-blank line must be a JSON object with a whole number >= 1 under
    ``epoch`` and finite numbers under ``loss`` and ``accuracy``; ``val_loss``,
    ``val_accuracy``, ``test_loss``, ``test_accuracy``, ``seconds`` and
    ``samples_per_second`` are optional (finite numbers when present).
    Raises :class:`DataError` naming the file and the field
    (``line 3.loss``, ``training.history[2].loss``) otherwise.
    """
    path = Path(path)
    what = "give the file nnxp train --metrics wrote, or its model or checkpoint file"
    try:
        data = read_bytes(path, "metrics", "a metrics (or model)")
        if _is_model_file(data):
            return _check_records(path, _history_of(path), what)
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise DataError(f"metrics file {path} not found: check the path "
                        f"(nnxp train --metrics {path} writes it)") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory: {what}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a text file: {what}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            lines.append((f"line {number}", json.loads(line)))
        except (json.JSONDecodeError, RecursionError) as exc:
            why = getattr(exc, "msg", "nested too deeply")
            raise DataError(f"{path}: line {number}: is not valid JSON ({why}); {what}") from None
    return _check_records(path, lines, what)


def _is_model_file(data: bytes) -> bool:
    """Whether ``data`` starts like a safetensors file (8-byte header length, then '{')."""
    head = data[:9]
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 0


def _history_of(path: Path) -> list[tuple[str, object]]:
    """(field name, record) of the history a model or checkpoint file records."""
    from ..checkpoint import read_training

    history = read_training(path).get("history")
    if not isinstance(history, list):
        raise DataError(f"{path}: training.history: is missing (a model saved by the library, not "
                        "nnxp train?); give the file nnxp train --metrics wrote")
    return [(f"training.history[{i}]", record) for i, record in enumerate(history)]


def _check_records(path: Path, lines: list[tuple[str, object]], what: str) -> list[dict[str, float]]:
    """The records, each checked (:mod:`nnxp.io.schema`): ``epoch`` a whole number >= 1, the
    required and optional keys finite numbers; other keys are kept as they are."""
    s = Schema(path, what)
    records = []
    for field, record in lines:
        s.object(record, field)
        s.whole(s.key(record, "epoch", field), s.at(field, "epoch"), least=1)
        for key in REQUIRED_KEYS[1:] + OPTIONAL_KEYS:
            if key in record or key in REQUIRED_KEYS:
                s.number(s.key(record, key, field), s.at(field, key))
        records.append(record)
    if not records:
        raise DataError(f"{path} has no epochs (the file is empty): nnxp train --metrics {path} "
                        "writes one line per epoch")
    return sorted(records, key=lambda r: r["epoch"])
