"""``nnxp train``: train a digit recogniser, checkpointing after every epoch; ``--resume``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ConfigError, DataError, DivergenceError
from .args import (add_blas_argument, add_data_arguments, add_device_argument, check_distinct, check_writable,
                   layer_sizes, load_data, nonnegative_float, nonnegative_int, positive_float, positive_int, probability)

__all__ = ["add_commands", "cmd_train"]


def add_commands(commands: Any) -> None:
    p = commands.add_parser("train", help="train a digit recogniser",
                            description="Train an MLP on MNIST-style data. Writes a checkpoint "
                                        "after every epoch; --resume continues an interrupted run.")
    add_device_argument(p)
    add_data_arguments(p)
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
    p.add_argument("--dropout", type=probability, default=0.0, metavar="P",
                   help="drop each hidden unit with probability P in training (default: 0, none)")
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
    p.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True,
                   help="CUDA only: replay each training step as a CUDA graph (default: on)")
    p.add_argument("--tf32", action="store_true",
                   help="CUDA only: allow TF32 matrix products (CUPY_TF32=1)")
    add_blas_argument(p)
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
_RUN_SETTINGS = ("dataset", "hidden", "activation", "output", "loss", "init", "dropout", "batch_size", "seed",
                 "dtype", "schedule")


def _one_of(*choices: str):
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(value)
        return value
    return check


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def _whole(least: int):
    def check(value: Any) -> int:
        if type(value) is not int or value < least:
            raise ValueError(value)
        return value
    return check


def _widths(value: Any) -> list[int]:
    if not isinstance(value, list):
        raise TypeError(value)
    return [_whole(1)(v) for v in value]


def _probability(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(value)
    return float(value)


# What a resumed run accepts for each setting its checkpoint records (a damaged one is refused).
_SETTING_RULES = {"dataset": _one_of("bundled", "mnist", "fashion-mnist"), "hidden": _widths,
                  "activation": _text, "output": _text, "loss": _text, "init": _text, "dropout": _probability,
                  "batch_size": _whole(1), "seed": _whole(0), "dtype": _one_of("float32", "float64"),
                  "schedule": _one_of("constant", "cosine")}


def _load_resume(path: Path, backend: Any):
    """The checkpoint to resume from; a missing file gets a message saying why that happens."""
    from ..checkpoint import load_checkpoint

    if not path.exists() and not path.is_symlink():
        raise DataError(f"checkpoint {path} not found: a run writes its first checkpoint at the end of its "
                        "first epoch, so a run stopped before that left nothing to resume; start it again "
                        "without --resume (or check the path)")
    return load_checkpoint(path, device=backend)


def cmd_train(args: argparse.Namespace) -> int:
    from ..backend import get_backend

    if args.tf32:
        os.environ["CUPY_TF32"] = "1"
    if not args.distributed:
        return _train(args, get_backend(args.device), None)  # an unknown device or missing GPU fails here, first
    from ..distributed import device_for_rank, init
    from ..distributed.faults import fail_fast
    from ..distributed.launch import check_environment, local_rank_from_env

    check_environment()  # mpi4py installed, started by mpiexec: else one line, exit 2
    backend = get_backend(device_for_rank(args.device, local_rank_from_env()))
    dist = init(backend, timeout=args.distributed_timeout)
    with fail_fast(dist.comm):  # an error on one rank stops them all, with one line
        return _train(args, backend, dist)


def _train(args: argparse.Namespace, backend: Any, dist: Any) -> int:
    """The run on ``backend``; ``dist`` (a DataParallel) for one rank of a distributed run, or None."""
    from ..checkpoint import check_settings
    from ..data import image_inputs
    from ..network import Network
    from ..optim import get_optimizer
    from ..train import fit

    root = dist is None or dist.is_root  # the one process that prints and writes files
    if args.resume is not None:
        checkpoint = _load_resume(args.resume, backend)
        for key, value in check_settings(checkpoint, args.resume, _SETTING_RULES).items():
            setattr(args, key, value)
        net, optimizer, history = checkpoint.net, checkpoint.optimizer, checkpoint.history
        if checkpoint.epoch >= args.epochs:
            raise ConfigError(f"{args.resume} has already done {checkpoint.epoch} epochs: "
                              f"pass --epochs N with N > {checkpoint.epoch} to train further")
    save_path = None if args.no_save else (args.save or args.resume or Path(f"nnxp-{args.dataset}.safetensors"))
    # The checkpoint being resumed may be updated in place (the default); nothing else may coincide.
    same_as_resume = save_path is not None and args.resume is not None and save_path == args.resume
    check_distinct({"--metrics": args.metrics, "--save": None if same_as_resume else save_path},
                   {"--resume": args.resume})
    for path in (save_path, args.metrics):
        check_writable(path)

    if dist is not None and args.download and not root:
        dist.comm.allreduce_host([0.0])  # wait while rank 0 downloads
    data = load_data(args)
    if dist is not None and args.download and root:
        dist.comm.allreduce_host([0.0])
    x_train, x_test = image_inputs(data.train_images), image_inputs(data.test_images)
    if args.resume is None:
        sizes = [x_train.shape[1], *args.hidden, data.num_classes]
        net = Network(sizes, hidden=args.activation, output=args.output, loss=args.loss, init=args.init,
                      seed=args.seed, dtype=args.dtype, device=backend, dropout=args.dropout)
        lr = args.lr if args.lr is not None else _DEFAULT_LR[args.optimizer]
        extra = {"momentum": args.momentum} if args.optimizer in ("momentum", "nesterov") else {}
        optimizer = get_optimizer(args.optimizer, lr=lr, weight_decay=args.weight_decay, **extra)
        history = None
    elif args.lr is not None:
        optimizer.lr = optimizer.initial_lr = args.lr

    settings = {key: getattr(args, key) for key in _RUN_SETTINGS}
    callbacks = []
    # The last good checkpoint: the one resumed from, until this run writes its own.
    good = args.resume
    if good is not None:
        args.resume_hint = f"nnxp train --resume {good} --epochs {args.epochs}"
    saver = None
    if save_path is not None and root:
        saver = _SaveCheckpoint(save_path, settings, args)
        callbacks.append(saver)
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
                      cuda_graphs=args.cuda_graphs, distributed=dist, blas=args.blas)
    except DivergenceError as exc:
        good = save_path if saver is not None and saver.written else good
        kept = (f"; the last good checkpoint is {good}" if good is not None
                else "; no checkpoint was written (it diverged in the first epoch)")
        raise DivergenceError(f"{exc}{kept}") from None
    final = history.last
    where = f"; model saved to {save_path}" if save_path is not None else ""
    if root:
        print(f"test accuracy {100 * final['val_accuracy']:.2f}% after {int(final['epoch'])} epochs{where}")
    return 0


class _SaveCheckpoint:
    """Writes the checkpoint after every good epoch (fit checks for divergence first)."""

    def __init__(self, path: Path, settings: dict[str, Any], args: argparse.Namespace):
        self.path, self.settings, self.args = path, settings, args
        self.written = False

    def on_epoch_end(self, net, optimizer, record, history) -> None:
        from ..checkpoint import save_checkpoint

        save_checkpoint(self.path, net, optimizer, history, self.settings)
        self.written = True
        self.args.resume_hint = f"nnxp train --resume {self.path} --epochs {self.args.epochs}"


class _WriteMetrics:
    """Rewrites the whole JSON-lines file atomically each epoch, so it always matches the checkpoint."""

    def __init__(self, path: Path):
        self.path = path

    def on_epoch_end(self, net, optimizer, record, history) -> None:
        from .._files import atomic_open

        try:
            with atomic_open(self.path, "w") as f:
                for r in history.records:
                    f.write(json.dumps(r) + "\n")
        except OSError as exc:
            raise DataError(f"cannot write {self.path}: {exc.strerror or exc}") from None


def _describe_run(data, net, optimizer, args) -> str:
    acts = "/".join(dict.fromkeys(a.name for a in net.activations))
    return (f"nnxp {__version__} | {data.name}: {len(data.train_labels):,} train, "
            f"{len(data.test_labels):,} test | {net.backend} | "
            f"{'-'.join(map(str, net.sizes))} {acts}, {net.loss.name}, {net.dtype_name} | "
            f"{optimizer.name} lr {optimizer.lr:g} | batch {args.batch_size} | seed {args.seed}")
