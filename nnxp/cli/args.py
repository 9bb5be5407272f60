"""Every argument type of the ``nnxp`` command, and the arguments several commands share.

Each type rejects a bad value with a message naming the fix; argparse turns it
into one line ``nnxp: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..bench import CONTENDERS
from ..io.paths import Input, check_output_path, files_of

__all__ = [
    "add_blas_argument", "add_data_arguments", "add_device_argument", "add_threads_argument", "bench_contenders",
    "blas_choice", "check_writable", "int_list", "layer_sizes", "load_data", "load_model",
    "nonnegative_float", "nonnegative_int", "positive_float", "positive_int", "probability", "sizes_list",
    "thread_count", "warn_other_dataset",
]


# -- flag value types: each rejects bad values with a message naming the fix ------------------

def _number(convert, what: str, ok, requirement: str):
    """An argparse type: ``convert`` the text, then check ``ok(value)``."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} {requirement}")
        return value
    return parse


positive_int = _number(int, "a whole number", lambda v: v >= 1, "must be at least 1")
nonnegative_int = _number(int, "a whole number", lambda v: v >= 0, "must be zero or more")
positive_float = _number(float, "a number", lambda v: 0 < v < float("inf"), "must be a positive number")
nonnegative_float = _number(float, "a number", lambda v: 0 <= v < float("inf"), "must be zero or positive")
probability = _number(float, "a number", lambda v: 0 <= v < 1, "must be a probability in [0, 1)")
def thread_count(text: str) -> int | None:
    """A positive thread count, or ``auto`` (None: nnxp's measured default)."""
    if text.strip().lower() == "auto":
        return None
    from ..threads import check_threads

    return check_threads(positive_int(text), "--threads")  # capped at the usable cores, with a warning


def layer_sizes(text: str) -> list[int]:
    """``"256,128"`` -> [256, 128]; ``""`` or ``"none"`` -> no hidden layer."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma list of layer widths, e.g. 256 or 256,128") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: layer widths must be at least 1")
    return sizes


def sizes_list(text: str) -> list[list[int]]:
    """``"784-256-10,784-1024-1024-10"`` -> [[784, 256, 10], [784, 1024, 1024, 10]]."""
    out = []
    for part in text.split(","):
        try:
            sizes = [int(s) for s in part.strip().split("-")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not a dash-separated list of layer widths, e.g. 784-256-10") from None
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise argparse.ArgumentTypeError(f"{part!r}: give 2 or more positive widths, e.g. 784-256-10")
        out.append(sizes)
    return out


def int_list(text: str) -> list[int]:
    try:
        values = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of whole numbers, e.g. 64,128") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: values must be at least 1")
    return values


def bench_contenders(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    names = ["numpy-ref" if n == "cupy-ref" else n for n in names]
    bad = [n for n in names if n not in CONTENDERS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown contender(s) {', '.join(bad) or text!r}: "
                                         f"choose from {', '.join(CONTENDERS)}")
    return names


def blas_choice(text: str) -> str:
    """``auto``, ``openblas`` or ``mkl``; ``mkl`` must be installed."""
    from ..errors import NnxpError
    from ..kernels.blas import check_setting

    try:
        return check_setting(text)
    except NnxpError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def check_writable(path: Path | None) -> None:
    """Fail before training, not after it, if ``path`` cannot be written."""
    if path is not None:
        check_output_path(path)


# -- shared arguments ------------------------------------------------------------------------

# Each takes a parser or an argument group (``parser.add_argument_group(...)``).

def add_threads_argument(p: Any, default: str = "the BLAS's own count") -> None:
    p.add_argument("--threads", type=thread_count, default=None, metavar="N",
                   help=f"CPU threads for matrix products (default: {default})")


def add_device_argument(p: Any) -> None:
    p.add_argument("--device", default="auto", metavar="NAME",
                   help="auto (a GPU if any), cpu, cuda, cuda:N (default: auto)")


def add_blas_argument(p: Any) -> None:
    p.add_argument("--blas", type=blas_choice, default="auto", metavar="NAME",
                   help="CPU: auto (timed once), openblas, mkl (default: auto)")


def add_data_arguments(p: Any) -> None:
    p.add_argument("--dataset", default="bundled", choices=["bundled", "mnist", "fashion-mnist"], metavar="NAME",
                   help="images: bundled (5,000 digits), mnist, fashion-mnist")
    p.add_argument("--data-dir", type=Input("dataset", directory=True), metavar="DIR",
                   help="the IDX files (default: ~/.cache/nnxp/<dataset>)")
    p.add_argument("--download", action="store_true", help="download the images if not found")


def load_model(path: Path, device: object) -> tuple[object, str | None]:
    """(network, the dataset it was trained on if the file records it); a network whose
    outputs on a probe input are not finite is refused."""
    from ..divergence import check_model_outputs
    from ..network import network_from
    from ..serialization import read_arrays

    arrays, metadata = read_arrays(path)
    net = network_from(arrays, metadata, path, device)
    check_model_outputs(net, path)  # finite weights can still give NaN outputs (a diverged run)
    training = metadata.get("training")
    settings = training.get("settings") if isinstance(training, dict) else None
    dataset = settings.get("dataset") if isinstance(settings, dict) else None
    return net, dataset if isinstance(dataset, str) else None


def warn_other_dataset(model: Path, trained_on: str | None, dataset: str) -> None:
    """A warning on stderr when ``model`` was trained on another dataset than ``dataset``
    (bundled is a part of MNIST, so those two go together)."""
    if trained_on and trained_on != dataset and {trained_on, dataset} != {"bundled", "mnist"}:
        print(f"nnxp: warning: {model} was trained on {trained_on}, these are {dataset} images "
              f"(pass --dataset {trained_on}?)", file=sys.stderr)


def load_data(args: argparse.Namespace):
    from ..data import load_dataset
    from ..data.datasets import dataset_files

    for path in dataset_files(args.dataset, args.data_dir):  # what it may read: no output may be one of them
        files_of(args).input(f"--dataset {args.dataset}", path, "dataset")
    progress = _DownloadProgress(args.dataset) if args.download else None
    try:
        return load_dataset(args.dataset, args.data_dir, download=args.download, progress=progress)
    finally:
        if progress is not None:
            progress.close()


class _DownloadProgress:
    """Says that a download started, and shows a byte count bar per file on a terminal."""

    def __init__(self, dataset: str):
        self.dataset, self.bar, self.started = dataset, None, False

    def __call__(self, done: int, total: int | None) -> None:
        if not self.started:
            self.started = True
            print(f"nnxp: downloading {self.dataset} (each file's SHA-256 is checked)", file=sys.stderr)
        if not sys.stderr.isatty():
            return
        if self.bar is None or done < self.bar.n:  # a new file (or the next mirror)
            from tqdm import tqdm

            self.close()
            self.bar = tqdm(total=total, unit="B", unit_scale=True, leave=False, file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
