"""The ``nnxp`` command: train, evaluate, predict, images, plot, bench.

Every user error (bad flag value, missing or corrupt file, unknown device, no
GPU, unwritable path) ends with one line ``nnxp: error: ...`` on stderr and
exit status 2, before anything is written.  A run that diverges exits with
status 1 and keeps its last good checkpoint; Ctrl-C exits with 130 and says
how to resume.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import __version__
from .errors import ConfigError, DataError, DivergenceError, NnxpError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nnxp", description="Neural networks on NumPy (CPU) or CuPy (CUDA GPUs).")
    parser.add_argument("--version", action="version", version=f"nnxp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    _add_train(commands)
    _add_evaluate(commands)
    from . import viz

    viz.add_commands(commands, data_arguments=_add_data_arguments, device_argument=_add_device_argument)
    from . import bench

    bench.add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else 0
    args.argv = argv  # the command line, for commands that record it (bench)
    try:
        return int(args.func(args) or 0)
    except DivergenceError as exc:
        print(f"nnxp: {exc}", file=sys.stderr)
        return 1
    except NnxpError as exc:
        print(f"nnxp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = getattr(args, "resume_hint", None)
        print("\nnnxp: interrupted" + (f"; resume with: {hint}" if hint else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `nnxp images | head`: the reader left, which is fine
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


# -- shared arguments ------------------------------------------------------------------------

def _add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", metavar="{auto,cpu,cuda,cuda:N}",
                   help="where to compute: auto (CUDA if CuPy sees a GPU, else CPU), cpu, cuda, "
                        "cuda:N (default: auto)")


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="bundled", choices=["bundled", "mnist", "fashion-mnist"],
                   help="bundled: 5,000 MNIST digits shipped with nnxp (offline); mnist, "
                        "fashion-mnist: the full sets (default: bundled)")
    p.add_argument("--data-dir", type=Path, metavar="DIR",
                   help="directory holding the four IDX files (default: the cache "
                        "$NNXP_CACHE_DIR or ~/.cache/nnxp/<dataset>, and Debian's "
                        "/usr/share/datasets/fashion-mnist)")
    p.add_argument("--download", action="store_true",
                   help="download the dataset if it is not found (SHA-256 verified)")


def load_data(args: argparse.Namespace):
    from .data import load_dataset

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


# -- train -----------------------------------------------------------------------------------------

def _add_train(commands: Any) -> None:
    p = commands.add_parser("train", help="train a digit recogniser",
                            description="Train an MLP on MNIST-style data. Writes a checkpoint "
                                        "after every epoch; --resume continues an interrupted run.")
    _add_device_argument(p)
    _add_data_arguments(p)
    p.add_argument("--hidden", type=layer_sizes, default=[256], metavar="N[,N...]",
                   help="hidden layer widths, comma-separated (default: 256)")
    p.add_argument("--activation", default="relu",
                   help="hidden activation: relu, leaky_relu (alpha 0.2; leaky_relu:A sets it), "
                        "sigmoid, tanh, identity (default: relu)")
    p.add_argument("--output", default="softmax", help="output activation (default: softmax)")
    p.add_argument("--loss", default="auto",
                   help="cross_entropy, squared_error, or auto: cross-entropy after softmax "
                        "(default: auto)")
    p.add_argument("--init", default="auto", help="auto, he, xavier or uniform (default: auto)")
    p.add_argument("--optimizer", default="adam", choices=["sgd", "momentum", "nesterov", "adam", "adamw"],
                   help="momentum and nesterov are SGD with momentum --momentum (default: adam)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="learning rate (default: 0.001 for adam/adamw, 0.1 for sgd, 0.05 with momentum)")
    p.add_argument("--schedule", default="constant", choices=["constant", "cosine"],
                   help="learning-rate schedule over the epochs (default: constant)")
    p.add_argument("--momentum", type=nonnegative_float, default=0.9, help="(default: 0.9)")
    p.add_argument("--weight-decay", type=nonnegative_float, default=0.0, help="(default: 0)")
    p.add_argument("--epochs", type=positive_int, default=20, help="(default: 20)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="(default: 32)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seeds weights and shuffles (default: 0)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="(default: float32)")
    saving = p.add_mutually_exclusive_group()
    saving.add_argument("--save", type=Path, metavar="PATH",
                        help="model/checkpoint file, rewritten atomically after every epoch "
                             "(default: nnxp-<dataset>.safetensors)")
    saving.add_argument("--no-save", action="store_true", help="write no model file")
    p.add_argument("--resume", type=Path, metavar="PATH",
                   help="continue the run saved in this checkpoint, up to --epochs in total; the "
                        "network, optimizer, batch size, seed and schedule come from the checkpoint, "
                        "--lr (if given), --device, --save and --metrics from this command")
    p.add_argument("--metrics", type=Path, metavar="PATH",
                   help="write one JSON line per epoch to this file")
    p.add_argument("--tf32", action="store_true",
                   help="CUDA only: allow TF32 matrix products (CUPY_TF32=1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel training on the processes MPI starts: mpiexec -n N nnxp train "
                        "--distributed ... (needs pip install 'nnxp[mpi]'); --batch-size is the global "
                        "batch, split over the ranks; rank 0 prints and writes the files; on GPUs one "
                        "GPU per rank (cuda:LOCAL_RANK) and NCCL")
    p.add_argument("--distributed-timeout", type=positive_float, default=300.0, metavar="SECONDS",
                   help="with --distributed: stop the job when a rank waits longer than this for the "
                        "others (a rank died or hangs) (default: 300)")
    p.set_defaults(func=cmd_train)


_DEFAULT_LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adam": 0.001, "adamw": 0.001}
# Settings a checkpoint fixes: a resumed run takes them from the file.
_RUN_SETTINGS = ("dataset", "hidden", "activation", "output", "loss", "init", "batch_size", "seed", "dtype",
                 "schedule")


def cmd_train(args: argparse.Namespace) -> int:
    from .backend import get_backend

    if args.tf32:
        os.environ["CUPY_TF32"] = "1"
    if not args.distributed:
        return _train(args, get_backend(args.device), None)  # an unknown device or missing GPU fails here, first
    from .distributed import device_for_rank, init
    from .distributed.faults import fail_fast
    from .distributed.launch import check_environment, local_rank_from_env

    check_environment()  # mpi4py installed, started by mpiexec: else one line, exit 2
    backend = get_backend(device_for_rank(args.device, local_rank_from_env()))
    dist = init(backend, timeout=args.distributed_timeout)
    with fail_fast(dist.comm):  # an error on one rank stops them all, with one line
        return _train(args, backend, dist)


def _train(args: argparse.Namespace, backend: Any, dist: Any) -> int:
    from .checkpoint import load_checkpoint
    from .data import image_inputs
    from .network import Network
    from .optim import get_optimizer
    from .train import fit

    root = dist is None or dist.is_root  # the one process that prints and writes files
    if args.resume is not None:
        checkpoint = load_checkpoint(args.resume, device=backend)
        for key in _RUN_SETTINGS:
            if key in checkpoint.settings:
                setattr(args, key, checkpoint.settings[key])
        net, optimizer, history = checkpoint.net, checkpoint.optimizer, checkpoint.history
        if checkpoint.epoch >= args.epochs:
            raise ConfigError(f"{args.resume} has already done {checkpoint.epoch} epochs: "
                              f"pass --epochs N with N > {checkpoint.epoch} to train further")
    save_path = None if args.no_save else (args.save or args.resume or Path(f"nnxp-{args.dataset}.safetensors"))
    for path in (save_path, args.metrics):
        check_writable(path)
    if save_path is not None and args.metrics is not None and save_path.resolve() == args.metrics.resolve():
        raise ConfigError(f"--metrics and the model file are both {save_path}: give them different paths")

    if dist is not None and args.download and not root:
        dist.comm.allreduce_host([0.0])  # wait while rank 0 downloads
    data = load_data(args)
    if dist is not None and args.download and root:
        dist.comm.allreduce_host([0.0])
    x_train, x_test = image_inputs(data.train_images), image_inputs(data.test_images)
    if args.resume is None:
        sizes = [x_train.shape[1], *args.hidden, data.num_classes]
        net = Network(sizes, hidden=args.activation, output=args.output, loss=args.loss, init=args.init,
                      seed=args.seed, dtype=args.dtype, device=backend)
        lr = args.lr if args.lr is not None else _DEFAULT_LR[args.optimizer]
        extra = {"momentum": args.momentum} if args.optimizer in ("momentum", "nesterov") else {}
        optimizer = get_optimizer(args.optimizer, lr=lr, weight_decay=args.weight_decay, **extra)
        history = None
    elif args.lr is not None:
        optimizer.lr = optimizer.initial_lr = args.lr

    settings = {key: getattr(args, key) for key in _RUN_SETTINGS}
    callbacks = []
    if save_path is not None and root:
        callbacks.append(_SaveCheckpoint(save_path, settings))
        args.resume_hint = f"nnxp train --resume {save_path} --epochs {args.epochs}"
    if args.metrics is not None and root:
        callbacks.append(_WriteMetrics(args.metrics))

    verbose = not args.quiet and root
    if verbose:
        ranks = f" | {dist.size} ranks ({dist.comm.name})" if dist is not None else ""
        print(_describe_run(data, net, optimizer, args) + ranks)
    try:
        history = fit(net, x_train, data.train_labels, epochs=args.epochs, batch_size=args.batch_size,
                      optimizer=optimizer, schedule=args.schedule, validation_data=(x_test, data.test_labels), seed=args.seed,
                      initial_epoch=len(history) if history else 0, history=history,
                      callbacks=callbacks, verbose=int(verbose), progress=verbose and sys.stderr.isatty(),
                      distributed=dist)
    except DivergenceError as exc:
        kept = f"; the last good checkpoint is {save_path}" if save_path is not None and save_path.exists() else ""
        raise DivergenceError(f"{exc}{kept}") from None
    final = history.last
    where = f"; model saved to {save_path}" if save_path is not None else ""
    if root:
        print(f"test accuracy {100 * final['val_accuracy']:.2f}% after {int(final['epoch'])} epochs{where}")
    return 0


class _SaveCheckpoint:
    def __init__(self, path: Path, settings: dict[str, Any]):
        self.path, self.settings = path, settings

    def on_epoch_end(self, net, optimizer, record, history) -> None:
        from .checkpoint import save_checkpoint

        save_checkpoint(self.path, net, optimizer, history, self.settings)


class _WriteMetrics:
    """Rewrites the whole JSON-lines file atomically each epoch, so it always matches the checkpoint."""

    def __init__(self, path: Path):
        self.path = path

    def on_epoch_end(self, net, optimizer, record, history) -> None:
        from .data._atomic import atomic_open

        try:
            with atomic_open(self.path, "w") as f:
                for r in history.records:
                    f.write(json.dumps(r) + "\n")
        except OSError as exc:
            raise DataError(f"cannot write {self.path}: {exc.strerror or exc}") from None


def check_writable(path: Path | None) -> None:
    """Fail before training, not after it, if ``path`` cannot be written."""
    if path is None:
        return
    if path.is_dir():
        raise DataError(f"{path} is a directory: give a file name, e.g. {path / 'model.safetensors'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise DataError(f"cannot write {path}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise DataError(f"cannot write {path}: permission denied; choose another path")


def _describe_run(data, net, optimizer, args) -> str:
    acts = "/".join(dict.fromkeys(a.name for a in net.activations))
    return (f"nnxp {__version__} | {data.name}: {len(data.train_labels):,} train, "
            f"{len(data.test_labels):,} test | {net.backend} | "
            f"{'-'.join(map(str, net.sizes))} {acts}, {net.loss.name}, {net.dtype_name} | "
            f"{optimizer.name} lr {optimizer.lr:g} | batch {args.batch_size} | seed {args.seed}")


# -- evaluate ---------------------------------------------------------------------------------------

def _add_evaluate(commands: Any) -> None:
    p = commands.add_parser("evaluate", help="accuracy and confusion matrix of a saved model",
                            description="Evaluate a saved model on a dataset's test split.")
    p.add_argument("model", type=Path, help="a .safetensors file written by nnxp train")
    _add_device_argument(p)
    _add_data_arguments(p)
    p.add_argument("--split", choices=["test", "train"], default="test", help="(default: test)")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import image_inputs
    from .serialization import load
    from .train import evaluate

    net = load(args.model, device=args.device)
    data = load_data(args)
    images = data.test_images if args.split == "test" else data.train_images
    labels = data.test_labels if args.split == "test" else data.train_labels
    x = image_inputs(images)
    if net.sizes[0] != x.shape[1] or net.sizes[-1] != data.num_classes:
        raise DataError(f"{args.model} takes {net.sizes[0]} inputs and gives {net.sizes[-1]} classes; "
                        f"{data.name} has {x.shape[1]} and {data.num_classes}: use a model trained on it")
    scores = evaluate(net, x, labels)
    predicted = net.backend.to_numpy(net.classify(x))
    matrix = confusion_matrix(labels, predicted, data.num_classes)
    print(f"{args.model} on {data.name} {args.split} ({len(labels):,} samples, {net.backend})")
    print(f"loss {scores['loss']:.4f}  accuracy {100 * scores['accuracy']:.2f}%")
    print(format_confusion(matrix, data.classes))
    return 0


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts: row = true class, column = predicted class."""
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


def format_confusion(matrix: np.ndarray, classes: Sequence[str]) -> str:
    k = len(classes)
    width = max(5, len(str(matrix.max())) + 1)
    short = [c[:width - 1] for c in classes]
    label_width = max(len(c) for c in classes)
    lines = ["confusion matrix (rows: true class, columns: predicted)",
             " " * (label_width + 1) + "".join(f"{c:>{width}}" for c in short) + "  accuracy"]
    for i in range(k):
        total = matrix[i].sum()
        acc = f"{100 * matrix[i, i] / total:7.2f}%" if total else "      -"
        lines.append(f"{classes[i]:>{label_width}} " + "".join(f"{v:>{width}}" for v in matrix[i]) + "  " + acc)
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
