"""``nnxp train``: train a digit recogniser, checkpointing after every epoch; ``--resume``.

Model selection never looks at the test split: ``--val-split`` holds out a
stratified part of the training data, whose loss and accuracy the epoch lines
show and ``--patience`` / ``--save-best`` watch; the test split is evaluated
once, at the end (every epoch with ``--eval-test-every-epoch``).  ``--save``
writes the model (weights and config, and the run's history and settings);
``--checkpoint`` adds the optimizer state and is rewritten after every epoch,
so ``--resume`` can continue a run killed at any moment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ConfigError, DataError, DivergenceError
from ..io.paths import Input, Output
from .args import (add_blas_argument, add_data_arguments, add_device_argument, add_threads_argument, files_of,
                   layer_sizes, load_data, nonnegative_float, nonnegative_int, positive_float,
                   positive_int, probability)

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
    p.add_argument("--val-split", type=probability, default=0.0, metavar="F",
                   help="hold out this fraction of the training data (stratified by class) for "
                        "validation: the epoch lines show its loss and accuracy, --patience and "
                        "--save-best watch it (default: 0, none)")
    p.add_argument("--patience", type=positive_int, metavar="N",
                   help="stop when the validation loss has not improved for N epochs and keep the "
                        "best epoch's weights (needs --val-split)")
    p.add_argument("--save-best", type=Output("model"), metavar="PATH",
                   help="write the model of the epoch with the lowest validation loss here, as it "
                        "happens (needs --val-split)")
    p.add_argument("--eval-test-every-epoch", action="store_true",
                   help="also evaluate the test split after every epoch (default: once, at the end, "
                        "so it plays no part in choosing the model)")
    saving = p.add_mutually_exclusive_group()
    saving.add_argument("--save", type=Output("model"), metavar="PATH",
                        help="the trained model: weights and config (no optimizer state), written "
                             "atomically at the end (default: nnxp-<dataset>.safetensors)")
    saving.add_argument("--no-save", action="store_true", help="write no model and no checkpoint")
    p.add_argument("--checkpoint", type=Output("checkpoint", may_be="--resume"), metavar="PATH",
                   help="model plus optimizer state and progress, rewritten atomically after every "
                        "epoch, for --resume (default: the --save name with .ckpt before the suffix)")
    p.add_argument("--resume", type=Input("checkpoint"), metavar="PATH",
                   help="continue the run saved in this checkpoint, up to --epochs in total; the "
                        "network, optimizer, batch size, seed, schedule, validation split and the "
                        "--save/--metrics files come from the checkpoint; --lr, --device, --threads "
                        "and any file given here from this command")
    p.add_argument("--metrics", type=Output("metrics"), metavar="PATH",
                   help="write one JSON line per epoch to this file")
    p.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True,
                   help="CUDA only: replay each training step as a CUDA graph (default: on)")
    p.add_argument("--tf32", action="store_true",
                   help="CUDA only: allow TF32 matrix products (CUPY_TF32=1)")
    add_threads_argument(p)
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
                 "dtype", "schedule", "val_split", "patience", "eval_test_every_epoch")
# Files a checkpoint remembers; a resumed run keeps writing them unless told otherwise.
_RUN_FILES = ("save", "metrics", "save_best")


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


def _optional(check):
    return lambda value: None if value is None else check(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(value)
    return value


def _probability(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(value)
    return float(value)


# What a resumed run accepts for each setting its checkpoint records (a damaged one is refused).
_SETTING_RULES = {"dataset": _one_of("bundled", "mnist", "fashion-mnist"), "hidden": _widths,
                  "activation": _text, "output": _text, "loss": _text, "init": _text, "dropout": _probability,
                  "batch_size": _whole(1), "seed": _whole(0), "dtype": _one_of("float32", "float64"),
                  "schedule": _one_of("constant", "cosine"), "val_split": _probability,
                  "patience": _optional(_whole(1)), "eval_test_every_epoch": _flag,
                  "save": _text, "metrics": _text, "save_best": _text}


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
    from ..checkpoint import check_settings, save_trained_model
    from ..data import image_inputs
    from ..network import Network
    from ..optim import get_optimizer
    from ..threads import choose_threads
    from ..train import evaluate, fit

    root = dist is None or dist.is_root  # the one process that prints and writes files
    checkpoint = None
    if args.resume is not None:
        checkpoint = _load_resume(args.resume, backend)
        for key, value in check_settings(checkpoint, args.resume, _SETTING_RULES).items():
            if key in _RUN_FILES:  # files the run wrote: kept unless this command names others
                if getattr(args, key) is None:
                    setattr(args, key, _remembered(value, args.resume))
            else:
                setattr(args, key, value)
        net, optimizer, history = checkpoint.net, checkpoint.optimizer, checkpoint.history
        if checkpoint.epoch >= args.epochs:
            raise ConfigError(f"{args.resume} has already done {checkpoint.epoch} epochs: "
                              f"pass --epochs N with N > {checkpoint.epoch} to train further")
    if (args.patience or args.save_best) and not args.val_split:
        flag = "--patience" if args.patience else "--save-best"
        raise ConfigError(f"{flag} watches the validation loss: add --val-split 0.1 (a stratified tenth "
                          "of the training data held out)")
    save_path, ckpt_path = _output_paths(args)

    if dist is not None and args.download and not root:
        dist.comm.allreduce_host([0.0])  # wait while rank 0 downloads
    data = load_data(args)
    if dist is not None and args.download and root:
        dist.comm.allreduce_host([0.0])
    x_train, x_test = image_inputs(data.train_images), image_inputs(data.test_images)
    if checkpoint is None:
        sizes = [x_train.shape[1], *args.hidden, data.num_classes]
        net = Network(sizes, hidden=args.activation, output=args.output, loss=args.loss, init=args.init,
                      seed=args.seed, dtype=args.dtype, device=backend, dropout=args.dropout)
        lr = args.lr if args.lr is not None else _DEFAULT_LR[args.optimizer]
        extra = {"momentum": args.momentum} if args.optimizer in ("momentum", "nesterov") else {}
        optimizer = get_optimizer(args.optimizer, lr=lr, weight_decay=args.weight_decay, **extra)
        history = None
    elif args.lr is not None:
        optimizer.lr = optimizer.initial_lr = args.lr
    threads = args.threads
    if threads is None and backend.name != "cupy" and dist is None:
        threads = choose_threads(args.batch_size, net.sizes)

    settings = {key: getattr(args, key) for key in _RUN_SETTINGS}
    # Remembered absolute, so that a run resumed from another directory writes the same files.
    settings.update({key: str(getattr(args, key).absolute()) for key in _RUN_FILES if getattr(args, key) is not None})
    if save_path is not None:
        settings["save"] = str(save_path.absolute())
    callbacks: list[Any] = []
    if args.eval_test_every_epoch:
        callbacks.append(_EvaluateTest(x_test, data.test_labels))
    # The last good checkpoint: the one resumed from, until this run writes its own.
    good = args.resume
    if good is not None:
        args.resume_hint = _resume_command(good, args)
    saver = None
    if ckpt_path is not None and root:
        saver = _SaveCheckpoint(ckpt_path, settings, args)
        callbacks.append(saver)
    if args.metrics is not None and root:
        callbacks.append(_WriteMetrics(args.metrics))
    if args.save_best is not None and root:
        from ..callbacks import SaveBest

        callbacks.append(SaveBest(args.save_best, metadata={"training": {"settings": settings}}))
    stopper = None
    if args.patience:
        from ..callbacks import EarlyStopping

        stopper = EarlyStopping(patience=args.patience)
        stopper.prime(history)
        callbacks.append(stopper)

    verbose = not args.quiet and root
    if verbose:
        ranks = f" | {dist.size} ranks ({dist.comm.name})" if dist is not None else ""
        print(_describe_run(data, net, optimizer, args, threads) + ranks)
        if checkpoint is not None:
            print(f"resumed {args.resume} at epoch {checkpoint.epoch} (of {args.epochs}); writing "
                  + ", ".join(f"{what} {path}" for what, path in (
                      ("the model to", save_path), ("checkpoints to", ckpt_path), ("metrics to", args.metrics),
                      ("the best model to", args.save_best)) if path is not None))
    try:
        history = fit(net, x_train, data.train_labels, epochs=args.epochs, batch_size=args.batch_size,
                      optimizer=optimizer, schedule=args.schedule, validation_split=args.val_split,
                      seed=args.seed, initial_epoch=len(history) if history else 0, history=history,
                      callbacks=callbacks, verbose=int(verbose), progress=verbose and sys.stderr.isatty(),
                      threads=threads, cuda_graphs=args.cuda_graphs, distributed=dist, blas=args.blas)
    except DivergenceError as exc:
        good = ckpt_path if saver is not None and saver.written else good
        kept = (f"; the last good checkpoint is {good}" if good is not None
                else "; no checkpoint was written (it diverged in the first epoch)")
        raise DivergenceError(f"{exc}{kept}") from None
    if stopper is not None and stopper.stopped_epoch and root:
        restored = (f"; the weights of epoch {stopper.best_epoch} (lowest validation loss) are kept"
                    if stopper.restored else
                    f"; the best epoch, {stopper.best_epoch}, came before --resume: the last weights are "
                    "kept (--save-best keeps the best)")
        print(f"stopped early after epoch {stopper.stopped_epoch}: no better validation loss for "
              f"{args.patience} epochs{restored}")
    if save_path is not None and root:
        save_trained_model(save_path, net, history, settings)
    scores = evaluate(net, x_test, data.test_labels)  # the test split, once
    where = f"; model saved to {save_path}" if save_path is not None else ""
    weights = (f" (the weights of epoch {stopper.best_epoch})"
               if stopper is not None and stopper.restored else "")
    if root:
        print(f"test accuracy {100 * scores['accuracy']:.2f}% (loss {scores['loss']:.4f}) after "
              f"{int(history.last['epoch'])} epochs{weights}{where}")
    return 0


def _resume_command(checkpoint: Path, args: argparse.Namespace) -> str:
    metrics = f" --metrics {args.metrics}" if args.metrics is not None else ""
    return f"nnxp train --resume {checkpoint} --epochs {args.epochs}{metrics}"


def _remembered(value: str, checkpoint: Path) -> Path:
    """A path a checkpoint remembers: absolute in files written now; a relative one (older files)
    is taken relative to the checkpoint's directory, never to the current one."""
    path = Path(value)
    return path if path.is_absolute() else checkpoint.parent / path


def _output_paths(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """(model path, checkpoint path). Every output, given, default or remembered by a resumed
    checkpoint, goes through the command's Files: writable, none of them an input or another output
    (the checkpoint being resumed may be rewritten in place: the default)."""
    if args.no_save:
        save_path = ckpt_path = None
    else:
        save_path = args.save or Path(f"nnxp-{args.dataset}.safetensors")
        ckpt_path = args.checkpoint or args.resume or save_path.with_name(
            f"{save_path.stem}.ckpt{save_path.suffix or '.safetensors'}")
    files = files_of(args)
    for flag, path, kind in (("--save", save_path, "model"), ("--checkpoint", ckpt_path, "checkpoint"),
                             ("--metrics", args.metrics, "metrics"), ("--save-best", args.save_best, "model")):
        if path is not None:
            files.output(flag, path, kind, may_be="--resume" if flag == "--checkpoint" else None)
    return save_path, ckpt_path


class _EvaluateTest:
    """Adds ``test_loss`` and ``test_accuracy`` to each epoch's record (--eval-test-every-epoch)."""

    def __init__(self, x: Any, y: Any):
        self.x, self.y = x, y

    def on_epoch_end(self, net, optimizer, record, history) -> None:
        from ..train import evaluate

        record.update({f"test_{k}": v for k, v in evaluate(net, self.x, self.y).items()})


class _SaveCheckpoint:
    """Writes the checkpoint after every good epoch (fit checks for divergence first)."""

    def __init__(self, path: Path, settings: dict[str, Any], args: argparse.Namespace):
        self.path, self.settings, self.args = path, settings, args
        self.written = False

    def on_epoch_end(self, net, optimizer, record, history) -> None:
        from ..checkpoint import save_checkpoint

        save_checkpoint(self.path, net, optimizer, history, self.settings)
        self.written = True
        self.args.resume_hint = _resume_command(self.path, self.args)


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


def _describe_run(data, net, optimizer, args, threads: int | None) -> str:
    acts = "/".join(dict.fromkeys(a.name for a in net.activations))
    n_train = len(data.train_labels)
    split = f"{n_train:,} train"
    if args.val_split:
        split += f" ({100 * args.val_split:g}% held out for validation)"
    cpu = f" | {threads} thread{'s' if threads != 1 else ''}" if threads else ""
    return (f"nnxp {__version__} | {data.name}: {split}, "
            f"{len(data.test_labels):,} test | {net.backend}{cpu} | "
            f"{'-'.join(map(str, net.sizes))} {acts}, {net.loss.name}, {net.dtype_name} | "
            f"{optimizer.name} lr {optimizer.lr:g} | batch {args.batch_size} | seed {args.seed}")
