"""Reading the per-epoch metrics file ``nnxp train --metrics`` writes (JSON lines)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import DataError
from ..io.read import read_bytes

__all__ = ["REQUIRED_KEYS", "OPTIONAL_KEYS", "read_metrics"]

REQUIRED_KEYS = ("epoch", "loss", "accuracy")
OPTIONAL_KEYS = ("val_loss", "val_accuracy", "test_loss", "test_accuracy", "seconds", "samples_per_second")


def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
    """The per-epoch records of a ``nnxp train --metrics`` JSON-lines file, or of the
    history a model or checkpoint file written by ``nnxp train`` records, in epoch order.

    Each non-blank line must be a JSON object with numbers under ``epoch``,
    ``loss`` and ``accuracy``; ``val_loss``, ``val_accuracy``, ``seconds`` and
    ``samples_per_second`` are optional.  Raises :class:`DataError` naming the
    file and line otherwise.
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
            lines.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {number} is not valid JSON ({exc.msg}): {what}") from None
    return _check_records(path, lines, what)


def _is_model_file(data: bytes) -> bool:
    """Whether ``data`` starts like a safetensors file (8-byte header length, then '{')."""
    head = data[:9]
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 0


def _history_of(path: Path) -> list[tuple[int, object]]:
    """(epoch number, record) of the history a model or checkpoint file records."""
    from ..checkpoint import read_training

    history = read_training(path).get("history")
    if not isinstance(history, list):
        raise DataError(f"{path} records no training history (a model saved by the library, not "
                        "nnxp train?): give the file nnxp train --metrics wrote")
    return list(enumerate(history, start=1))


def _check_records(path: Path, lines: list[tuple[int, object]], what: str) -> list[dict[str, float]]:
    records = []
    for number, record in lines:
        if not isinstance(record, dict):
            raise DataError(f"{path} line {number} is not a JSON object: {what}")
        missing = [key for key in REQUIRED_KEYS if key not in record]
        if missing:
            raise DataError(f"{path} line {number} has no {' or '.join(missing)}: each line needs "
                            f"{', '.join(REQUIRED_KEYS)}; {what}")
        for key in REQUIRED_KEYS + OPTIONAL_KEYS:
            value = record.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DataError(f"{path} line {number}: {key} is {json.dumps(value)[:40]}, "
                                f"not a number; {what}")
        records.append(record)
    if not records:
        raise DataError(f"{path} has no epochs (the file is empty): nnxp train --metrics {path} "
                        "writes one line per epoch")
    return sorted(records, key=lambda r: r["epoch"])
