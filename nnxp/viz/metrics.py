"""Reading the per-epoch metrics file ``nnxp train --metrics`` writes (JSON lines)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import DataError

__all__ = ["REQUIRED_KEYS", "OPTIONAL_KEYS", "read_metrics"]

REQUIRED_KEYS = ("epoch", "loss", "accuracy")
OPTIONAL_KEYS = ("val_loss", "val_accuracy", "seconds", "samples_per_second")


def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
    """The per-epoch records of a ``nnxp train --metrics`` JSON-lines file, in epoch order.

    Each non-blank line must be a JSON object with numbers under ``epoch``,
    ``loss`` and ``accuracy``; ``val_loss``, ``val_accuracy``, ``seconds`` and
    ``samples_per_second`` are optional.  Raises :class:`DataError` naming the
    file and line otherwise.
    """
    path = Path(path)
    what = "give the file nnxp train --metrics wrote"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"metrics file {path} not found: check the path "
                        f"(nnxp train --metrics {path} writes it)") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory: {what}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a text file: {what}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {number} is not valid JSON ({exc.msg}): {what}") from None
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
