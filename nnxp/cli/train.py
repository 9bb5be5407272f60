"""``nnxp train``: train on digit images, or on your own table (``--data``, :mod:`.table`),
checkpointing after every epoch; ``--resume``.

Model selection never looks at the test split: ``--val-split`` holds out a
stratified part of the training data, whose loss and accuracy the epoch lines
show and ``--patience`` / ``--save-best`` watch; the test split is evaluated
once, at the end (every epoch with ``--eval-test-every-epoch``); a table has no
test split, and its run ends with the validation rows' scores.  ``--save``
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

import numpy as np

from .. import __version__
from ..errors import ConfigError, DataError, DivergenceError
from ..io.paths import Input, Output
from .table import TrainingData, add_table_arguments, load_table_data
from .args import (add_blas_argument, add_data_arguments, add_device_argument, add_threads_argument, files_of,
                   layer_sizes, load_data, nonnegative_float, nonnegative_int, positive_float,
                   positive_int, probability)

__all__ = ["add_commands", "cmd_train"]


def add_commands(commands: Any) -> None:
    p = commands.add_parser("train", help="train a network on digit images or on your own table",
                            usage="nnxp train [--data FILE --target COLUMN | --dataset NAME] [options]",
                            description="Train an MLP on MNIST-style images, or on your own table with "
                                        "--data. Writes a checkpoint after every epoch; --resume continues "
                                        "an interrupted run.")
    data = p.add_argument_group("data")
    add_data_arguments(data)
    add_table_arguments(data)
    data.add_argument("--val-split", type=probability, default=0.0, metavar="F",
                      help="hold out this fraction for validation (default: 0)")
    data.add_argument("--eval-test-every-epoch", action="store_true",
                      help="images: score the test split every epoch too")

    model = p.add_argument_group("model")
    model.add_argument("--hidden", type=layer_sizes, default=[256], metavar="N[,N...]",
                       help="hidden layer widths, or none (default: 256)")
    model.add_argument("--activation", default="relu", metavar="NAME",
                       help="relu, leaky_relu[:A], sigmoid, tanh, identity")
    model.add_argument("--output", default="softmax", metavar="NAME",
                       help="output activation (default: softmax, or identity)")
    model.add_argument("--loss", default="auto", metavar="NAME",
                       help="cross_entropy, squared_error, auto (default: auto)")
    model.add_argument("--init", default="auto", metavar="NAME",
                       help="init: auto, he, xavier, uniform (default: auto)")
    model.add_argument("--dropout", type=probability, default=0.0, metavar="P",
                       help="drop hidden units with probability P (default: 0)")
    model.add_argument("--dtype", default="float32", choices=["float32", "float64"], metavar="NAME",
                       help="float32 or float64 (default: float32)")
    model.add_argument("--seed", type=nonnegative_int, default=0, metavar="N",
                       help="seeds the initial weights and shuffles (default: 0)")

    optimisation = p.add_argument_group("optimisation")
    optimisation.add_argument("--optimizer", default="adam", choices=["sgd", "momentum", "nesterov", "adam", "adamw"],
                              metavar="NAME", help="sgd, momentum, nesterov, adam, adamw (default: adam)")
    optimisation.add_argument("--lr", type=positive_float, default=None,
                              help="step size (default: adam 0.001, sgd 0.1, else 0.05)")
    optimisation.add_argument("--momentum", type=nonnegative_float, default=0.9, metavar="M",
                              help="for momentum and nesterov (default: 0.9)")
    optimisation.add_argument("--weight-decay", type=nonnegative_float, default=0.0, metavar="W",
                              help="L2 penalty; adamw: decoupled (default: 0)")
    optimisation.add_argument("--schedule", default="constant", choices=["constant", "cosine"], metavar="NAME",
                              help="learning rate by epoch: constant, cosine")
    optimisation.add_argument("--epochs", type=positive_int, default=20, metavar="N",
                              help="epochs in all (default: 20)")
    optimisation.add_argument("--batch-size", type=positive_int, default=32, metavar="N",
                              help="samples per step (default: 32)")
    optimisation.add_argument("--patience", type=positive_int, metavar="N",
                              help="stop after N epochs without a better val. loss")

    files = p.add_argument_group("output and checkpoints")
    saving = files.add_mutually_exclusive_group()
    saving.add_argument("--save", type=Output("model"), metavar="PATH",
                        help="the model (default: nnxp-<data>.safetensors)")
    saving.add_argument("--no-save", action="store_true", help="write no model and no checkpoint")
    files.add_argument("--checkpoint", type=Output("checkpoint", may_be="--resume"), metavar="PATH",
                       help="rewritten every epoch (default: <save>.ckpt.*)")
    files.add_argument("--resume", type=Input("checkpoint"), metavar="PATH",
                       help="continue this checkpoint's run up to --epochs")
    files.add_argument("--save-best", type=Output("model"), metavar="PATH",
                       help="keep the model of the best val. loss here")
    files.add_argument("--metrics", type=Output("metrics"), metavar="PATH", help="write one JSON line per epoch here")
    files.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no epoch lines")

    hardware = p.add_argument_group("hardware")
    add_device_argument(hardware)
    add_threads_argument(hardware, default="auto")
    add_blas_argument(hardware)
    hardware.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True,
                          help="CUDA: replay each step as a graph (default: on)")
    hardware.add_argument("--tf32", action="store_true", help="CUDA: allow TF32 matrix products")

    distributed = p.add_argument_group("distributed (mpiexec -n N nnxp train --distributed ...)")
    distributed.add_argument("--distributed", action="store_true",
                             help="data-parallel over the MPI ranks (nnxp[mpi])")
    distributed.add_argument("--distributed-timeout", type=positive_float, default=300.0, metavar="SECONDS",
                             help="stop when a rank waits this long (default: 300)")
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
                  "save": _text, "metrics": _text, "save_best": _text,
                  "data": _text, "target": _optional(_text), "task": _one_of("classification", "regression")}


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
    from ..divergence import check_result
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
            elif key == "data":  # the table the run trains on, unless this command names it
                if args.data is None:
                    args.data = files_of(args).input("--data", _remembered(value, args.resume), "table")
            else:
                setattr(args, key, value)
        net, optimizer, history = checkpoint.net, checkpoint.optimizer, checkpoint.history
        if checkpoint.epoch >= args.epochs:
            _remove_stale_temps(args)  # a run killed while writing its last file leaves nothing behind
            missing = (f"; its model file {args.save} does not exist (a run stopped while writing it), but "
                       f"the checkpoint holds the same weights: nnxp evaluate, predict and export read it"
                       if args.save is not None and not Path(args.save).exists() else "")
            done = f"{checkpoint.epoch} {'epoch' if checkpoint.epoch == 1 else 'epochs'}"
            raise ConfigError(f"{args.resume} has already done {done}: "
                              f"pass --epochs N with N > {checkpoint.epoch} to train further{missing}")
    if (args.patience or args.save_best) and not args.val_split:
        flag = "--patience" if args.patience else "--save-best"
        raise ConfigError(f"{flag} watches the validation loss: add --val-split 0.1 (a stratified tenth "
                          "of the training data held out)")
    save_path, ckpt_path = _output_paths(args)

    if dist is not None:  # before any other collective: a mismatch is one line, never a corrupt broadcast
        dist.agree(_must_match(args, checkpoint), "start every rank with the same nnxp train command")
    data = _training_data(args, dist)
    if dist is not None:
        dist.agree({"the training data": _digest(data.x, data.y)},
                   "give every rank the same data files (--dataset, --data-dir or --data)")
    if checkpoint is None:
        sizes = [data.x.shape[1], *args.hidden, data.n_outputs]
        output = "identity" if data.regression and args.output == "softmax" else args.output
        net = Network(sizes, hidden=args.activation, output=output, loss=args.loss, init=args.init,
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
    if args.data is not None:
        settings.update(data=str(Path(args.data).absolute()), target=args.target, task=args.task)
    # Remembered absolute, so that a run resumed from another directory writes the same files.
    settings.update({key: str(getattr(args, key).absolute()) for key in _RUN_FILES if getattr(args, key) is not None})
    if save_path is not None:
        settings["save"] = str(save_path.absolute())
    callbacks: list[Any] = []
    if args.eval_test_every_epoch and data.test is not None:
        callbacks.append(_EvaluateTest(*data.test))
    # The last good checkpoint: the one resumed from, until this run writes its own.
    good = args.resume
    if good is not None:
        args.resume_hint = _resume_command(good, args)
    saver = None
    if ckpt_path is not None and root:
        saver = _SaveCheckpoint(ckpt_path, settings, args, data.metadata)
        callbacks.append(saver)
    if args.metrics is not None and root:
        callbacks.append(_WriteMetrics(args.metrics))
    if args.save_best is not None and root:
        from ..callbacks import SaveBest

        callbacks.append(SaveBest(args.save_best, metadata={**data.metadata, "training": {"settings": settings}}))
    stopper = None
    if args.patience:
        from ..callbacks import EarlyStopping

        stopper = EarlyStopping(patience=args.patience)
        stopper.prime(history)
        callbacks.append(stopper)

    verbose = not args.quiet and root
    if verbose and data.regression:  # its own epoch lines: RMSE, not fit's accuracy
        from .table import RegressionLines

        callbacks.append(RegressionLines(args.epochs, data.spec.target_scale))
    fit_verbose = verbose and not data.regression
    if verbose:
        ranks = f" | {dist.size} ranks ({dist.comm.name})" if dist is not None else ""
        print(_describe_run(data, net, optimizer, args, threads) + ranks)
        if checkpoint is not None:
            print(f"resumed {args.resume} at epoch {checkpoint.epoch} (of {args.epochs}); writing "
                  + ", ".join(f"{what} {path}" for what, path in (
                      ("the model to", save_path), ("checkpoints to", ckpt_path), ("metrics to", args.metrics),
                      ("the best model to", args.save_best)) if path is not None))
    try:
        history = fit(net, data.x, data.y, epochs=args.epochs, batch_size=args.batch_size,
                      optimizer=optimizer, schedule=args.schedule, validation_data=data.validation,
                      validation_split=data.validation_split,
                      seed=args.seed, initial_epoch=len(history) if history else 0, history=history,
                      callbacks=callbacks, verbose=int(fit_verbose), progress=verbose and sys.stderr.isatty(),
                      threads=threads, cuda_graphs=args.cuda_graphs, distributed=dist, blas=args.blas)
    except DivergenceError as exc:
        raise _with_last_good(exc, ckpt_path if saver is not None and saver.written else good,
                              "it diverged in the first epoch") from None
    if stopper is not None and stopper.stopped_epoch and root and not fit_verbose:  # else fit said it
        print(stopper.summary())
    if data.test is not None:
        scores = evaluate(net, *data.test)  # the test split, once, before the model is saved
        try:
            check_result(scores, "the test loss", optimizer.lr)  # a NaN test loss is a divergence (exit 1)
        except DivergenceError as exc:
            raise _with_last_good(exc, ckpt_path if saver is not None and saver.written else good, "") from None
        result = f"test accuracy {100 * scores['accuracy']:.2f}% (loss {scores['loss']:.4f})"
    else:
        from .table import final_scores

        result = final_scores(net, data)
    if save_path is not None and root:
        save_trained_model(save_path, net, history, settings, extra_metadata=data.metadata)
    where = f"; model saved to {save_path}" if save_path is not None else ""
    weights = (f" (the weights of epoch {stopper.best_epoch})"
               if stopper is not None and stopper.restored else "")
    if root:
        done = int(history.last['epoch'])
        print(f"{result} after {done} {'epoch' if done == 1 else 'epochs'}{weights}{where}")
    return 0


# Flags every rank of a distributed run must share, in the order a mismatch is reported.
_MUST_MATCH = ("dataset", "download", "hidden", "activation", "output", "loss", "init", "dropout", "dtype", "optimizer",
               "lr", "momentum", "weight_decay", "schedule", "epochs", "batch_size", "seed", "val_split", "patience")


def _must_match(args: argparse.Namespace, checkpoint: Any) -> dict[str, Any]:
    """{flag: value} of the settings every rank must share (after --resume filled them in)."""
    settings = {"--" + key.replace("_", "-"): getattr(args, key) for key in _MUST_MATCH}
    if checkpoint is not None:
        settings["--resume"] = {"epoch": checkpoint.epoch, "optimizer": checkpoint.optimizer.config()}
    return settings


def _digest(*arrays: Any) -> str:
    """SHA-256 of the training inputs and targets (every rank must train on the same data)."""
    import hashlib

    h = hashlib.sha256()
    for a in arrays:
        h.update(repr((a.shape, str(a.dtype))).encode())
        h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
    return h.hexdigest()[:16]


def _with_last_good(exc: DivergenceError, good: Path | None, why_none: str) -> DivergenceError:
    """``exc`` with the last good checkpoint named (or why there is none)."""
    kept = (f"; the last good checkpoint is {good}" if good is not None
            else f"; no checkpoint was written{f' ({why_none})' if why_none else ''}")
    return DivergenceError(f"{exc}{kept}")


def _resume_command(checkpoint: Path, args: argparse.Namespace) -> str:
    metrics = f" --metrics {args.metrics}" if args.metrics is not None else ""
    return f"nnxp train --resume {checkpoint} --epochs {args.epochs}{metrics}"


def _remove_stale_temps(args: argparse.Namespace) -> None:
    """Temporary files that dead writers left beside this run's files (a kill during a write)."""
    from .._files import remove_stale_temps

    for path in (args.save, args.checkpoint, args.resume, args.metrics, args.save_best):
        if path is not None:
            remove_stale_temps(path)


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
        name = Path(args.data).stem if args.data is not None else args.dataset
        save_path = args.save or Path(f"nnxp-{name}.safetensors")
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

    def __init__(self, path: Path, settings: dict[str, Any], args: argparse.Namespace,
                 metadata: dict[str, Any] | None = None):
        self.path, self.settings, self.args, self.metadata = path, settings, args, metadata
        self.written = False

    def on_epoch_end(self, net, optimizer, record, history) -> None:
        from ..checkpoint import save_checkpoint

        save_checkpoint(self.path, net, optimizer, history, self.settings, extra_metadata=self.metadata)
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


def _training_data(args: argparse.Namespace, dist: Any) -> TrainingData:
    """The table ``--data``, or the image dataset (rank 0 downloads while the others wait)."""
    if args.data is not None:
        if args.download or args.eval_test_every_epoch:
            flag = "--download" if args.download else "--eval-test-every-epoch"
            raise ConfigError(f"{flag} is for the image datasets; a table (--data) has no test split: "
                              "--val-split holds out rows")
        return load_table_data(args)
    if args.target is not None or args.task != "classification":
        raise ConfigError(f"{'--target' if args.target is not None else '--task'} is for a table: add --data FILE")
    from ..data import image_inputs

    root = dist is None or dist.is_root
    if dist is not None and args.download and not root:
        dist.comm.allreduce_host([0.0])  # wait while rank 0 downloads
    images = load_data(args)
    if dist is not None and args.download and root:
        dist.comm.allreduce_host([0.0])
    return TrainingData(images.name, image_inputs(images.train_images), images.train_labels, images.num_classes,
                        validation_split=args.val_split,
                        test=(image_inputs(images.test_images), images.test_labels), classes=tuple(images.classes))


def _describe_run(data: TrainingData, net, optimizer, args, threads: int | None) -> str:
    acts = "/".join(dict.fromkeys(a.name for a in net.activations))
    n_held = len(data.validation[1]) if data.validation is not None else 0
    split = f"{len(data.y) + n_held:,} {'train' if data.test is not None else 'rows'}"
    if args.val_split:
        split += f" ({100 * args.val_split:g}% held out for validation)"
    tested = f", {len(data.test[1]):,} test" if data.test is not None else ""
    task = f" ({'regression' if data.regression else 'classification'} of {data.spec.target!r})" \
        if data.spec is not None else ""
    cpu = f" | {threads} thread{'s' if threads != 1 else ''}" if threads else ""
    return (f"nnxp {__version__} | {data.name}{task}: {split}"
            f"{tested} | {net.backend}{cpu} | "
            f"{'-'.join(map(str, net.sizes))} {acts}, {net.loss.name}, {net.dtype_name} | "
            f"{optimizer.name} lr {optimizer.lr:g} | batch {args.batch_size} | seed {args.seed}")
