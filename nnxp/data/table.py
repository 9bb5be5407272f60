"""Reading your own table: CSV, ``.npz`` (arrays ``x`` and ``y``) or Parquet (with pyarrow).

A table is rows of samples: feature columns, all numbers, and (for training
and scoring) one target column, which may hold class labels (text or whole
numbers) or, for a regression, numbers.  :func:`read_table` returns the
features as a (N, F) float64 array, one sample per row, and the target as
an (N,) array (text labels as ``str``).

- **CSV**: a header line naming the columns, then one line per row, read by
  the standard library's :mod:`csv` (comma-separated, quotes allowed, UTF-8,
  a byte-order mark is skipped; blank lines are skipped).
- **.npz**: ``x`` (N, F) numbers and, for training and scoring, ``y`` (N,):
  the target, whatever ``target`` names (``numpy.savez("t.npz", x=x, y=y)``).
  Loaded without pickle.  Its columns have no names: they go by position.
- **.parquet**: through pyarrow (``pip install 'nnxp[parquet]'``).

Every problem is one :class:`~nnxp.errors.DataError` line
``"{path}: {where}: {problem}; {fix}"``: not a regular file (a FIFO is never
opened), over :data:`MAX_TABLE_BYTES`, no rows, rows of the wrong length, a
missing target column, a feature cell that is empty, not a number, NaN or
infinite.  The file is read in one place, :func:`read_file_bytes`.
"""

from __future__ import annotations

import csv
import io
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["MAX_TABLE_BYTES", "TABLE_SUFFIXES", "Table", "numeric_column", "read_file_bytes", "read_table"]

#: The largest table file read (bytes): 256 MiB.  It is parsed in memory: a CSV takes several times its size.
MAX_TABLE_BYTES = 256 << 20
TABLE_SUFFIXES = (".csv", ".npz", ".parquet")
_PARQUET_HINT = "pip install 'nnxp[parquet]' (in a clone: pip install '.[parquet]')"


@dataclass
class Table:
    """A table's samples: ``x`` (N, F) float64 features, one sample per row, named ``columns``
    (None: by position, an .npz), and ``y`` (N,) target values (None when not asked for),
    from the column named ``target``; ``where(i)`` names row i in messages (``line 7``)."""

    path: Path
    x: np.ndarray
    columns: list[str] | None
    y: np.ndarray | None
    target: str | None
    where: Callable[[int], str]

    def __len__(self) -> int:
        return self.x.shape[0]


def read_file_bytes(path: str | os.PathLike, max_bytes: int = MAX_TABLE_BYTES) -> bytes:
    """The whole content of the regular file ``path`` (at most ``max_bytes``), or one DataError line.

    A FIFO, device or directory is refused before it is opened (opening a FIFO would wait).
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, device or socket)"
            raise DataError(f"{path}: {kind}; give a table file (.csv, .npz or .parquet)")
        size = os.stat(path).st_size
        if size > max_bytes:
            raise DataError(f"{path}: {_size(size)} is over the {_size(max_bytes)} a table may have; use a "
                            "sample of the rows, or the library (nnxp.Network.fit) for more")
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise DataError(f"{path}: table file not found; check the path") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if len(data) > max_bytes:  # it grew while being read
        raise DataError(f"{path}: over the {_size(max_bytes)} a table may have; use a sample of the rows")
    return data


def _size(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n:,} bytes"


def read_table(path: str | os.PathLike, target: str | None = None, *, columns: Sequence[str] | None = None,
               n_features: int | None = None, max_bytes: int = MAX_TABLE_BYTES) -> Table:
    """The table in ``path`` (its suffix says the format: .csv, .npz, .parquet).

    ``target``: the target column's name (an .npz's target is always ``y``);
    None reads no target.  ``columns``: the feature columns to take, by name
    (those a model was trained on; other columns are ignored); None takes
    every column but the target.  ``n_features``: the number of feature
    columns a model expects (checked; by position when the file or the model
    has no names).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{path}: unknown table format {suffix or '(no suffix)'!r}; give a .csv, .npz or "
                        ".parquet file")
    if suffix == ".parquet":
        _require_pyarrow(path)
    data = read_file_bytes(path, max_bytes)
    if suffix == ".npz":
        return _npz_table(path, data, target is not None, n_features)
    names, cells, where = _csv_cells(path, data) if suffix == ".csv" else _parquet_cells(path, data)
    if target is not None and target not in names:
        raise DataError(f"{path}: target column {target!r} not found; the columns are {_list(names)}: "
                        "name one of them as the target (--target)")
    if columns is None:
        feature_names = [n for n in names if n != target]
    else:
        missing = [c for c in columns if c not in names]
        if missing:
            raise DataError(f"{path}: column {missing[0]!r} not found: the model was trained on the columns "
                            f"{_list(columns)}; give a table that has them")
        feature_names = list(columns)
    if not feature_names:
        raise DataError(f"{path}: no feature columns besides the target {target!r}; add the input columns")
    if n_features is not None and len(feature_names) != n_features:
        raise DataError(f"{path}: {len(feature_names)} feature columns ({_list(feature_names)}), but the model "
                        f"takes {n_features}; give a table with the columns it was trained on")
    x = np.empty((len(cells[names[0]]), len(feature_names)), dtype=np.float64)
    for j, name in enumerate(feature_names):
        x[:, j] = numeric_column(path, name, cells[name], where, "a feature column must hold numbers: encode "
                                                             "categories as numbers, or drop the column")
    y = None
    if target is not None:
        y = cells[target]
        if y.dtype.kind in "US":
            empty = np.flatnonzero(np.char.str_len(y) == 0)
            if len(empty):
                raise DataError(f"{path}: {where(int(empty[0]))}, column {target!r}: empty target; fill it in "
                                "or drop the row")
    return Table(path, x, feature_names, y, target, where)


def _list(names: Sequence[str], most: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def numeric_column(path: Path, name: str, column: np.ndarray, where: Callable[[int], str], fix: str) -> np.ndarray:
    """``column`` (N,) (numbers, or text cells) as float64, or one DataError line naming the first
    cell that is empty, not a number, NaN or infinite (``fix`` says what to do about non-numbers)."""
    if column.dtype.kind in "biuf":
        values = column.astype(np.float64)
    else:
        try:
            values = np.asarray(column, dtype=str).astype(np.float64)
        except ValueError:
            for i, cell in enumerate(column):
                text = str(cell).strip()
                if not text:
                    raise DataError(f"{path}: {where(i)}, column {name!r}: empty cell; fill it in or drop "
                                    "the row") from None
                try:
                    float(text)
                except ValueError:
                    raise DataError(f"{path}: {where(i)}, column {name!r}: {text[:40]!r} is not a number; "
                                    f"{fix}") from None
            raise DataError(f"{path}: column {name!r}: not numbers; {fix}") from None
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        i = int(bad[0])
        what = "NaN" if np.isnan(values[i]) else "infinite"
        raise DataError(f"{path}: {where(i)}, column {name!r}: {what} value; fill in a number or drop the row")
    return values


def _csv_cells(path: Path, data: bytes) -> tuple[list[str], dict[str, np.ndarray], Callable[[int], str]]:
    """(column names, {name: (N,) str cells}, row -> "line L") of a CSV file."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); save the table as UTF-8 CSV") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[list[str]] = []
    lines: list[int] = []
    header: list[str] | None = None
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            if header is None:
                header = [name.strip() for name in row]
                continue
            if len(row) != len(header):
                raise DataError(f"{path}: line {reader.line_num}: {len(row)} fields, but the header has "
                                f"{len(header)}; every row needs one value per column")
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num}: {exc}; fix the quoting") from None
    if header is None:
        raise DataError(f"{path}: empty file; a table needs a header line naming the columns, then rows")
    _check_names(path, header)
    if not rows:
        raise DataError(f"{path}: no rows under the header; add the samples, one per line")
    cells = np.array(rows, dtype=str)
    cells = np.char.strip(cells)
    return header, {name: cells[:, j] for j, name in enumerate(header)}, lambda i: f"line {lines[i]}"


def _check_names(path: Path, names: Sequence[str]) -> None:
    for j, name in enumerate(names):
        if not name:
            raise DataError(f"{path}: header: column {j + 1} has no name; name every column in the first line")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{path}: header: column {name!r} appears twice; give the columns distinct names")
        seen.add(name)


def _npz_table(path: Path, data: bytes, want_y: bool, n_features: int | None) -> Table:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files if name in ("x", "y")}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({str(exc).splitlines()[0][:80]}); write it "
                        "with numpy.savez(path, x=x, y=y)") from None
    if "x" not in arrays:
        raise DataError(f"{path}: no array 'x'; write it with numpy.savez(path, x=features, y=targets)")
    x = arrays["x"]
    if x.ndim != 2:
        raise DataError(f"{path}: x: shape {x.shape}; x must be (rows, features), one sample per row")
    if x.shape[0] == 0:
        raise DataError(f"{path}: x: no rows; add the samples")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: x: dtype {x.dtype}; features must be numbers (encode categories as numbers)")
    if n_features is not None and x.shape[1] != n_features:
        raise DataError(f"{path}: x: {x.shape[1]} features, but the model takes {n_features}; give the "
                        "features it was trained on")
    where = lambda i: f"row {i + 1}"  # noqa: E731
    features = np.empty(x.shape, dtype=np.float64)
    for j in range(x.shape[1]):
        features[:, j] = numeric_column(path, f"x[:, {j}]", x[:, j], where, "")
    y = None
    if want_y:
        if "y" not in arrays:
            raise DataError(f"{path}: no array 'y' (the targets); write it with numpy.savez(path, x=x, y=y)")
        y = arrays["y"]
        if y.shape != (x.shape[0],):
            raise DataError(f"{path}: y: shape {y.shape}; y must be ({x.shape[0]},), one target per row of x")
        if y.dtype.kind not in "biufU":
            raise DataError(f"{path}: y: dtype {y.dtype}; targets must be numbers or text labels")
    return Table(path, features, None, y, "y" if want_y else None, where)


def _require_pyarrow(path: Path) -> None:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ConfigError(f"{path}: reading Parquet needs pyarrow: {_PARQUET_HINT}; or save the table as CSV") \
            from None


def _parquet_cells(path: Path, data: bytes) -> tuple[list[str], dict[str, np.ndarray], Callable[[int], str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0][:80]})") from None
    names = [str(n) for n in table.column_names]
    _check_names(path, names)
    if table.num_rows == 0:
        raise DataError(f"{path}: no rows; add the samples")
    where = lambda i: f"row {i + 1}"  # noqa: E731
    cells: dict[str, np.ndarray] = {}
    for name, column in zip(names, table.columns):
        if column.null_count:
            i = int(np.flatnonzero(np.asarray(column.is_null().to_numpy(zero_copy_only=False)))[0])
            raise DataError(f"{path}: {where(i)}, column {name!r}: empty cell; fill it in or drop the row")
        values: Any = column.to_numpy(zero_copy_only=False) if hasattr(column, "to_numpy") else column
        values = np.asarray(values)
        cells[name] = values.astype(str) if values.dtype.kind == "O" else values
    return names, cells, where
