"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a header followed by the array in C order, big-endian::

    bytes 0-1   0x00 0x00
    byte  2     type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     number of dimensions d
    4 * d bytes each dimension as a big-endian unsigned 32-bit integer
    the data    prod(dims) * itemsize bytes, nothing after it

Bytes 0-3 read as one big-endian integer are the "magic number": 2051
(0x00000803) for an image file (uint8, 3 dims: N, rows, cols) and 2049
(0x00000801) for a label file (uint8, 1 dim: N).

Files may be gzip-compressed; that is recognised by the gzip magic bytes
1f 8b, not by the file name. Every problem with a file raises
:class:`~nnxp.errors.DataError` with a one-line message naming the file.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path
from typing import Union

import numpy as np

from nnxp.errors import ConfigError, DataError, ShapeError
from nnxp._files import atomic_open
from nnxp.io.read import open_input

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["read_idx", "read_images", "read_labels", "write_idx", "IMAGES_MAGIC", "LABELS_MAGIC"]

IMAGES_MAGIC = 0x00000803  # 2051
LABELS_MAGIC = 0x00000801  # 2049

# Type code -> big-endian dtype as stored in the file.
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KIND_TO_CODE: dict[tuple[str, int], int] = {
    (dt.kind, dt.itemsize): code for code, dt in _CODE_TO_DTYPE.items()
}
_SUPPORTED = "uint8, int8, int16, int32, float32, float64"

_GZIP_MAGIC = b"\x1f\x8b"
# Deflate cannot compress better than about 1032:1; a header promising more
# data than that is corrupt, and we refuse before allocating a huge array.
_MAX_DEFLATE_RATIO = 1100
_CHUNK = 1 << 20
# Exceptions the gzip/zlib modules raise on damaged input.
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


# --------------------------------------------------------------------------- reading


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip) and return its array.

    The result has the file's shape and dtype in native byte order and is
    writable. The file length must match the header exactly.
    """
    path = _path(path)
    try:
        f = open_input(path, "dataset")  # a FIFO or /dev/zero is refused, not read
    except OSError as e:
        raise DataError(f"{path}: cannot open IDX file ({_reason(e)}); check the path") from None
    with f:
        return _read_stream(f, str(path))


def _path(path: object) -> Path:
    if isinstance(path, os.PathLike) or isinstance(path, str) and path:
        return Path(path)
    raise ConfigError(f"path must be a file path (str or pathlib.Path), got {path!r}")


def read_images(path: PathLike) -> np.ndarray:
    """Read an IDX image file (magic 2051) -> array (N, rows, cols) of uint8."""
    return _expect_magic(read_idx(path), str(path), IMAGES_MAGIC)


def read_labels(path: PathLike) -> np.ndarray:
    """Read an IDX label file (magic 2049) -> array (N,) of uint8."""
    return _expect_magic(read_idx(path), str(path), LABELS_MAGIC)


def _read_bytes(data: bytes, where: str) -> np.ndarray:
    """Parse IDX content held in memory (used for package resources)."""
    return _read_stream(io.BytesIO(data), where)


def _expect_magic(array: np.ndarray, where: str, magic: int) -> np.ndarray:
    found = _magic_of(array)
    if found == magic:
        return array
    if magic == IMAGES_MAGIC:
        what, hint = "image", "is it the labels file?" if found == LABELS_MAGIC else (
            "pass an image file such as train-images-idx3-ubyte")
    else:
        what, hint = "label", "is it the images file?" if found == IMAGES_MAGIC else (
            "pass a label file such as train-labels-idx1-ubyte")
    raise DataError(f"{where}: not an IDX {what} file (magic {found}, expected {magic}); {hint}")


def _magic_of(array: np.ndarray) -> int:
    return (_KIND_TO_CODE[(array.dtype.kind, array.dtype.itemsize)] << 8) | array.ndim


def _read_stream(raw: io.BufferedIOBase, where: str) -> np.ndarray:
    """Read one IDX file from the start of binary stream ``raw``."""
    try:
        head = raw.read(2)
        compressed = head == _GZIP_MAGIC
        stored_size = _stream_size(raw)
        raw.seek(0)
        if compressed:
            with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                return _parse(f, where, compressed, stored_size)
        return _parse(raw, where, compressed, stored_size)
    except _GZIP_ERRORS as e:
        raise DataError(
            f"{where}: corrupt or truncated gzip data ({_reason(e)}); "
            "delete the file and download or re-create it"
        ) from None
    except OSError as e:
        raise DataError(f"{where}: cannot read IDX file ({_reason(e)}); check the file") from None


def _stream_size(f: io.BufferedIOBase) -> int | None:
    try:
        return os.fstat(f.fileno()).st_size
    except (OSError, AttributeError, io.UnsupportedOperation):
        pass
    try:
        pos = f.tell()
        size = f.seek(0, io.SEEK_END)
        f.seek(pos)
        return size
    except (OSError, io.UnsupportedOperation):
        return None


def _parse(f: io.BufferedIOBase, where: str, compressed: bool, stored_size: int | None) -> np.ndarray:
    # ``stored_size`` is the size on disk; for gzip files all sizes in
    # messages are of the decompressed content.
    size_word = "decompressed size" if compressed else "size"
    fix = "delete the file and download or re-create it"

    head = _read_exact(f, 4)
    if len(head) < 4:
        raise DataError(
            f"{where}: not an IDX file ({size_word} {len(head)} bytes, too short for the "
            f"4-byte header); {fix}"
        )
    if head[0] != 0 or head[1] != 0:
        raise DataError(
            f"{where}: not an IDX file (starts with bytes {head.hex(' ')}, expected 00 00); "
            "check that this is an MNIST-style idx3/idx1 ubyte file"
        )
    code, ndim = head[2], head[3]
    if code not in _CODE_TO_DTYPE:
        raise DataError(
            f"{where}: not a supported IDX file (type code 0x{code:02X}; known are 0x08, 0x09, "
            f"0x0B, 0x0C, 0x0D, 0x0E); check that this is an MNIST-style idx file"
        )
    dims_raw = _read_exact(f, 4 * ndim)
    header_size = 4 + 4 * ndim
    if len(dims_raw) < 4 * ndim:
        raise DataError(
            f"{where}: IDX file is truncated ({size_word} {4 + len(dims_raw)} bytes, but its "
            f"{ndim}-dimension header alone needs {header_size}); {fix}"
        )
    dims = tuple(int.from_bytes(dims_raw[4 * i : 4 * i + 4], "big") for i in range(ndim))
    file_dtype = _CODE_TO_DTYPE[code]
    count = 1
    for d in dims:
        count *= d
    expected = header_size + count * file_dtype.itemsize
    shape_txt = "x".join(map(str, dims)) or "scalar"

    def size_error(actual: int | str) -> DataError:
        problem = ("too long" if actual.startswith("more") else "truncated") if isinstance(actual, str) \
            else "truncated" if actual < expected else "too long"
        return DataError(
            f"{where}: IDX file is {problem} (header says {shape_txt} {file_dtype.name} = "
            f"{expected} bytes, {size_word} is {actual} bytes); {fix}"
        )

    if stored_size is not None:
        if not compressed and stored_size != expected:
            raise size_error(stored_size)
        if compressed and expected > stored_size * _MAX_DEFLATE_RATIO + (1 << 16):
            raise size_error(f"at most {stored_size * _MAX_DEFLATE_RATIO}")

    # Read straight into the result: no intermediate bytes object, so reading
    # the 47 MB MNIST training images needs 47 MB, not twice that.
    try:
        flat = np.empty(count, dtype=file_dtype.newbyteorder("="))
    except (MemoryError, ValueError):
        raise DataError(
            f"{where}: IDX header says {shape_txt} {file_dtype.name} = {expected} bytes, more "
            f"than can be allocated, so the file is corrupt; {fix}"
        ) from None
    buf = flat.view(np.uint8).data
    got = 0
    while got < len(buf):
        n = f.readinto(buf[got:])
        if not n:
            raise size_error(header_size + got)
        got += n
    # Trailing data: count at most one more chunk, so a huge trailing gzip
    # member is never decompressed in full just to say "too long".
    extra = len(_read_exact(f, _CHUNK))
    if extra:
        raise size_error(expected + extra if not f.read(1) else f"more than {expected + extra}")
    if not file_dtype.isnative:  # big-endian file on a little-endian machine
        flat.byteswap(inplace=True)
    try:
        return flat.reshape(dims)
    except ValueError:  # e.g. 0 x 2**21 x 2**21 x 2**21: empty, yet too big a shape for NumPy
        raise DataError(f"{where}: IDX header says shape {shape_txt}, which NumPy cannot represent; "
                        f"{fix}") from None


def _read_exact(f: io.BufferedIOBase, n: int) -> bytes:
    parts = []
    while n > 0:
        b = f.read(n)
        if not b:
            break
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


def _reason(e: BaseException) -> str:
    """A short one-line reason for an exception."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e).splitlines()[0] if str(e) else ""
    return text or type(e).__name__


# --------------------------------------------------------------------------- writing


def write_idx(path: PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, atomically.

    The file is gzip-compressed if ``path`` ends in ``.gz`` (with a zero
    timestamp and no embedded name, so equal arrays give equal bytes), raw
    otherwise. ``array`` must have one of the dtypes uint8, int8, int16,
    int32, float32, float64 (any byte order; stored big-endian), at most 255
    dimensions and each dimension below 2**32.
    """
    path = _path(path)
    try:
        array = np.asarray(array)
    except (ValueError, TypeError) as e:
        raise ShapeError(f"{path}: array must be a rectangular array of numbers ({_reason(e)})") from None
    dt = array.dtype
    code = _KIND_TO_CODE.get((dt.kind, dt.itemsize)) if dt.kind in "uif" else None
    if code is None:
        raise ShapeError(
            f"{path}: cannot store an array of dtype {dt} in an IDX file (supported: {_SUPPORTED}); "
            "convert it first, e.g. array.astype(np.float32)"
        )
    if array.ndim > 255 or any(d >= 2**32 for d in array.shape):
        raise ShapeError(
            f"{path}: cannot store an array of shape {array.shape} in an IDX file "
            "(at most 255 dimensions, each below 2**32); reshape it"
        )
    header = bytes([0, 0, code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    # Big-endian, C order, as a byte memoryview (memoryview.cast rejects '>' formats).
    data = np.ascontiguousarray(array, dtype=_CODE_TO_DTYPE[code]).reshape(-1).view(np.uint8).data
    try:
        with atomic_open(path, "wb") as f:
            if path.name.endswith(".gz"):
                # filename="" keeps the name out of the header, mtime=0 the clock; level 6
                # is 10x faster than 9 on MNIST and under 1% larger.
                with gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=f, mtime=0) as gz:
                    gz.write(header)
                    gz.write(data)
            else:
                f.write(header)
                f.write(data)
    except OSError as e:
        raise DataError(
            f"{path}: cannot write IDX file ({_reason(e)}); check that the directory exists "
            "and is writable and the disk is not full"
        ) from None
