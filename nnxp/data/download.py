"""Downloading MNIST and Fashion-MNIST, verified by SHA-256.

Each of the four canonical ``.gz`` files is fetched with :mod:`urllib` from a
list of mirrors tried in order, streamed to a temp file beside its final
place while being hashed, checked against the SHA-256 in :data:`SHA256`, and
only then renamed into place. A failed or corrupt download never leaves a
file (or a temp file) behind.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Union
from collections.abc import Callable, Mapping, Sequence

from nnxp.errors import DataError, DownloadError
from nnxp._files import atomic_open
from nnxp.io.read import open_input

PathLike = Union[str, "os.PathLike[str]"]
Progress = Callable[[int, int | None], None]

__all__ = ["download", "FILES", "MIRRORS", "SHA256", "SIZES", "MAX_BYTES", "file_sha256"]

#: The four canonical file names, in the order they are fetched.
FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

#: Base URLs, tried in order; a file's URL is base + file name.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
}

#: SHA-256 of the canonical compressed files, as listed by TensorFlow Datasets.
SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}

#: Size in bytes of each canonical compressed file: a download stops as soon as a
#: mirror sends more (so a wrong or hostile mirror cannot fill the disk before
#: the SHA-256 check).
SIZES: dict[str, dict[str, int]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": 9_912_422,
        "train-labels-idx1-ubyte.gz": 28_881,
        "t10k-images-idx3-ubyte.gz": 1_648_877,
        "t10k-labels-idx1-ubyte.gz": 4_542,
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": 26_421_880,
        "train-labels-idx1-ubyte.gz": 29_515,
        "t10k-images-idx3-ubyte.gz": 4_422_102,
        "t10k-labels-idx1-ubyte.gz": 5_148,
    },
}
#: The cap for files of caller-given checksums (no known size): larger than any
#: MNIST-style file.
MAX_BYTES = 64 << 20

_CHUNK = 1 << 16
_USER_AGENT = "nnxp (Python urllib)"


class _MirrorFailed(Exception):
    """One mirror could not deliver a good file; the message is the short reason."""


def file_sha256(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes (OSError if unreadable, DataError if not a regular file)."""
    h = hashlib.sha256()
    with open_input(path, "dataset") as f:  # a FIFO at the path does not block
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def download(
    name: str,
    dest_dir: PathLike,
    *,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
    sizes: Mapping[str, int] | None = None,
    timeout: float = 30,
    progress: Progress | None = None,
) -> Path:
    """Make sure ``dest_dir`` holds the four verified ``.gz`` files of ``name``.

    ``name`` is ``"mnist"`` or ``"fashion-mnist"``. A file already in
    ``dest_dir`` whose SHA-256 matches is kept; a missing one, or one whose
    hash does not match, is downloaded (the latter replaced only once a good
    copy has arrived). ``mirrors`` (base URLs ending in ``/``) and
    ``checksums`` (file name -> hex SHA-256, for the files in :data:`FILES`)
    replace the built-in tables, e.g. to use a local server; ``sizes`` (file
    name -> bytes) caps each download (default: :data:`SIZES` with the
    built-in checksums, else :data:`MAX_BYTES`): a mirror sending more, or
    announcing more in Content-Length, fails at once. ``timeout`` is
    in seconds per network operation (connect, each read). ``progress``, if
    given, is called as ``progress(bytes_done, bytes_total)`` while a file
    downloads; ``bytes_total`` is None when the server does not say, and
    ``bytes_done`` starts again at 0 for each file (and each mirror tried).

    Returns ``dest_dir`` as a :class:`~pathlib.Path`. Raises
    :class:`~nnxp.errors.DownloadError` if a file cannot be fetched from any
    mirror, and :class:`~nnxp.errors.DataError` if ``dest_dir`` is unusable.
    """
    if name not in MIRRORS:
        raise DataError(
            f"cannot download dataset {name!r}: choose one of {', '.join(sorted(MIRRORS))} "
            "(the 'bundled' dataset ships with nnxp and needs no download)"
        )
    dest = Path(dest_dir).expanduser()
    mirrors = tuple(MIRRORS[name] if mirrors is None else mirrors)
    if sizes is None:
        sizes = SIZES[name] if checksums is None else {}
    checksums = dict(SHA256[name] if checksums is None else checksums)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"{dest}: cannot create the download directory ({e.strerror or e}); "
            "set NNXP_CACHE_DIR or pass --data-dir to a writable directory"
        ) from None

    for fname in FILES:
        if fname not in checksums:
            raise DataError(f"no SHA-256 given for {fname}; pass checksums for all of {', '.join(FILES)}")
        expected = checksums[fname].lower()
        target = dest / fname
        stale = False
        if target.exists():
            try:
                if file_sha256(target) == expected:
                    continue
            except (OSError, DataError):
                pass
            stale = True  # present but wrong: fetch a good copy to replace it
        _fetch_from_mirrors(name, fname, target, expected, mirrors, timeout, progress, stale,
                            int(sizes.get(fname, MAX_BYTES)))
    return dest


def _fetch_from_mirrors(
    name: str,
    fname: str,
    target: Path,
    expected: str,
    mirrors: Sequence[str],
    timeout: float,
    progress: Progress | None,
    stale: bool,
    limit: int = MAX_BYTES,
) -> None:
    failures = []
    for base in mirrors:
        url = _join(base, fname)
        try:
            _fetch(url, target, expected, timeout, progress, limit)
            return
        except _MirrorFailed as e:
            failures.append(f"{url}: {e}")
    tried = "; ".join(failures) if failures else "no mirrors given"
    note = f" (the existing {target} does not match its SHA-256 and was left as it is)" if stale else ""
    manual = _join(mirrors[0], fname) if mirrors else fname
    raise DownloadError(
        f"could not download {fname} of {name}{note}: {tried}. "
        f"Fetch {manual} (SHA-256 {expected}) by hand into {target.parent}, "
        "or put the four files in a directory and pass --data-dir DIR"
    )


def _join(base: str, fname: str) -> str:
    return base if base.endswith(fname) else base.rstrip("/") + "/" + fname


def _fetch(url: str, target: Path, expected: str, timeout: float, progress: Progress | None,
           limit: int = MAX_BYTES) -> None:
    """Download ``url`` to ``target`` if its SHA-256 is ``expected`` (at most ``limit`` bytes).

    Raises _MirrorFailed for problems of the mirror (network, HTTP status,
    wrong content) and DataError for local problems (temp file not writable),
    which no other mirror would fix.
    """
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        raise _MirrorFailed(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _MirrorFailed(_net_reason(e.reason, timeout)) from None
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise _MirrorFailed(_net_reason(e, timeout)) from None

    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total > limit:
            raise _MirrorFailed(f"announces {total} bytes, more than the expected {limit}")
        try:
            with atomic_open(target, "wb") as f:
                h = hashlib.sha256()
                done = 0
                if progress is not None:
                    progress(0, total)
                while True:
                    try:
                        chunk = response.read(min(_CHUNK, limit + 1 - done))
                    except (OSError, http.client.HTTPException) as e:
                        raise _MirrorFailed(_net_reason(e, timeout)) from None
                    if not chunk:
                        break
                    h.update(chunk)
                    f.write(chunk)
                    done += len(chunk)
                    if done > limit:
                        raise _MirrorFailed(f"sent more than the expected {limit} bytes")
                    if progress is not None:
                        progress(done, total)
                if total is not None and done != total:
                    raise _MirrorFailed(f"connection closed after {done} of {total} bytes")
                digest = h.hexdigest()
                if digest != expected:
                    raise _MirrorFailed(f"SHA-256 mismatch (got {digest[:12]}..., expected {expected[:12]}...)")
        except OSError as e:
            # Network errors are converted above, so this is the local disk.
            raise DataError(
                f"{target}: cannot write the download ({e.strerror or e}); "
                "free disk space or choose a writable directory with --data-dir or NNXP_CACHE_DIR"
            ) from None


def _net_reason(e: object, timeout: float) -> str:
    """Short one-line reason for a network error."""
    if isinstance(e, (socket.timeout, TimeoutError)):
        return f"timed out after {timeout:g} s"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e).splitlines()[0] if str(e) else ""
    return text or type(e).__name__
