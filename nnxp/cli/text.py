"""The ``nnxp text`` commands: ``vocab``, ``train``, ``neighbours``.

With no CORPUS they read the English documentation text that ships with
CPython (:mod:`nnxp.text.corpus`), so they work offline.  Bad input (a binary
or empty file, an unknown token, more merges than the corpus allows) ends with
one ``nnxp: error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..io.paths import Input, Output
from .args import (add_device_argument, add_threads_argument, files_of, nonnegative_float, nonnegative_int,
                   positive_float, positive_int, probability)
from .train import _one_of, _probability, _text, _whole

__all__ = ["add_commands", "cmd_vocab", "cmd_train", "cmd_neighbours", "TRAIN_DEFAULTS"]

#: ``nnxp text train``'s defaults (the model's shape and training were chosen on the validation split
#: of the default corpus; docs/text.md has the measurements).
TRAIN_DEFAULTS = {"context": 5, "dim": 128, "hidden": 512, "dropout": 0.5, "embedding_dropout": 0.5,
                  "epochs": 15, "patience": 2, "lr_decay": 0.5, "batch_size": 128, "lr": 0.002,
                  "weight_decay": 1e-4, "val_split": 0.1, "test_split": 0.1}


def add_commands(commands: Any) -> None:
    """Add ``text`` (with ``vocab``, ``train``, ``neighbours``) to the ``nnxp`` subparsers ``commands``."""
    text = commands.add_parser("text", help="learn a BPE vocabulary and token embeddings from text",
                               description="Learn a byte-pair-encoding vocabulary, then token embeddings "
                                           "with a next-token model. Without CORPUS: the English "
                                           "documentation that ships with CPython (offline).")
    sub = text.add_subparsers(dest="text_command", metavar="COMMAND", parser_class=type(text))
    sub.required = True
    corpus_help = "a UTF-8 text file or a directory of them (default: CPython's documentation text)"

    p = sub.add_parser("vocab", help="learn BPE merges; print `count symbol` lines, most frequent first",
                       description="Learn BPE merges (Sennrich et al. 2015) and print each final symbol with "
                                   "its corpus frequency, one `count symbol` line each, most frequent first.")
    p.add_argument("corpus", nargs="?", type=Input("corpus", directory=True), metavar="CORPUS", help=corpus_help)
    p.add_argument("--merges", type=positive_int, metavar="N",
                   help="merges to learn; more than the corpus allows is an error (default: 5000, "
                        "or as many as the corpus allows if fewer)")
    _add_mode(p)
    p.add_argument("--pre-tokenizer", choices=["gpt2", "gpt4"], default="gpt2",
                   help="byte mode: how text is split before merging: gpt2 (ASCII classes, the default) or "
                        "gpt4 (OpenAI's cl100k pattern, Unicode classes; needs the regex package)")
    p.add_argument("-o", "--output", type=Output("tokenizer"), metavar="FILE",
                   help="also write the vocabulary and merges as a Hugging Face tokenizer.json")
    p.set_defaults(func=cmd_vocab, default_merges=5000)

    p = sub.add_parser("train", help="learn a vocabulary, then train a next-token model against n-gram baselines",
                       description="Learn a BPE vocabulary, then train a next-token model (Bengio et al. 2003: "
                                   "k context tokens -> embeddings -> tanh layer -> softmax, with dropout), "
                                   "choosing its epochs and learning rate on a validation split, and report its "
                                   "perplexity beside add-k and interpolated Kneser-Ney 2/3/4-gram baselines "
                                   "tuned on the same validation split; the test split is scored once, at the end.")
    p.add_argument("corpus", nargs="?", type=Input("corpus", directory=True), metavar="CORPUS", help=corpus_help)
    p.add_argument("--merges", type=positive_int, metavar="N",
                   help="BPE merges (default: 2000, or as many as the corpus allows if fewer)")
    _add_mode(p)
    d = TRAIN_DEFAULTS
    p.add_argument("--context", type=positive_int, default=d["context"], metavar="K",
                   help=f"context tokens (default: {d['context']})")
    p.add_argument("--dim", type=positive_int, default=d["dim"], metavar="D",
                   help=f"embedding dimension (default: {d['dim']})")
    p.add_argument("--hidden", type=positive_int, default=d["hidden"], metavar="H",
                   help=f"hidden tanh units (default: {d['hidden']})")
    p.add_argument("--dropout", type=probability, default=d["dropout"], metavar="P",
                   help=f"dropout on the hidden units in training (default: {d['dropout']})")
    p.add_argument("--embedding-dropout", type=probability, default=d["embedding_dropout"], metavar="P",
                   help=f"dropout on the concatenated embeddings in training (default: {d['embedding_dropout']})")
    p.add_argument("--epochs", type=positive_int, default=d["epochs"], metavar="N",
                   help=f"most epochs; early stopping usually ends sooner (default: {d['epochs']})")
    p.add_argument("--patience", type=positive_int, default=d["patience"], metavar="N",
                   help="stop after N epochs in a row without a better validation perplexity "
                        f"(default: {d['patience']})")
    p.add_argument("--lr-decay", type=_decay, default=d["lr_decay"], metavar="F",
                   help="when the validation perplexity does not improve, go back to the best weights and "
                        f"multiply the learning rate by F (default: {d['lr_decay']}; 1: keep it)")
    p.add_argument("--batch-size", type=positive_int, default=d["batch_size"], metavar="B",
                   help=f"batch size (default: {d['batch_size']})")
    p.add_argument("--optimizer", default="adam", choices=["sgd", "momentum", "nesterov", "adam", "adamw"],
                   help="optimizer (default: adam)")
    p.add_argument("--lr", type=positive_float, help=f"learning rate (default: {d['lr']})")
    p.add_argument("--weight-decay", type=nonnegative_float, default=d["weight_decay"], metavar="L",
                   help=f"weight decay (L2; decoupled for adamw) (default: {d['weight_decay']})")
    p.add_argument("--val-split", type=_fraction, default=d["val_split"], metavar="F",
                   help="fraction of the text, before the test text, that chooses the epochs, learning rate "
                        f"and the baselines' settings (default: {d['val_split']})")
    p.add_argument("--test-split", "--held-out", dest="test_split", type=_fraction, default=d["test_split"],
                   metavar="F", help="fraction of the text, at its end, scored once at the end "
                                     f"(default: {d['test_split']})")
    add_device_argument(p)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="(default: float32)")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seeds the initial weights, shuffles and dropout (default: 0)")
    p.add_argument("-o", "--save", type=Output("model", may_be="--resume"), metavar="FILE",
                   help="model and checkpoint file, rewritten atomically after every epoch with the best "
                        "weights so far (default: text_model.safetensors, or the --resume file)")
    p.add_argument("--resume", type=Input("checkpoint"), metavar="FILE",
                   help="continue the run saved in this checkpoint up to --epochs in total, on the same "
                        "CORPUS; the vocabulary, model, optimizer and settings come from the file")
    p.add_argument("--metrics", type=Output("metrics"), metavar="FILE", help="write one JSON line per epoch to FILE")
    p.add_argument("--json", type=Output("json"), metavar="FILE",
                   help="write the perplexity table (baselines and model; train, validation, test) as JSON")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")
    add_threads_argument(p)
    p.set_defaults(func=cmd_train, default_merges=2000)

    p = sub.add_parser("neighbours", aliases=["neighbors"], help="nearest tokens by cosine similarity",
                       description="Print the tokens whose embeddings are nearest (cosine similarity) to "
                                   "each TOKEN, from a model written by `nnxp text train`.")
    p.add_argument("model", type=Input("model"), metavar="MODEL")
    p.add_argument("tokens", nargs="+", metavar="TOKEN")
    p.add_argument("-n", "--count", type=positive_int, default=8, help="neighbours per token (default: 8)")
    add_threads_argument(p)
    p.set_defaults(func=cmd_neighbours)


def _add_mode(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=["word", "byte"], default="word",
                   help="word: lower-cased alphabetic words, words seen once dropped (the seed's); "
                        "byte: GPT-2-style byte level, lossless for any text (default: word)")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction between 0 and 1, e.g. 0.1")
    return value


def _decay(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be in (0, 1], e.g. 0.5")
    return value


def _learn(args: argparse.Namespace, keep_text: bool = True):
    """Learn the vocabulary: (the text, or None when not ``keep_text``: then the corpus is streamed
    in blocks, never held whole), the tokenizer, the training result."""
    from ..text.corpus import corpus_blocks, read_corpus
    from ..text.tokenizer import learn

    asked = args.merges is not None  # an explicit --merges the corpus cannot give is an error
    merges = args.merges if asked else args.default_merges
    pre_tokenizer = getattr(args, "pre_tokenizer", "gpt2")
    start = time.perf_counter()
    if keep_text:
        text, name = read_corpus(args.corpus)
        size = len(text.encode("utf-8"))
        tokenizer, result = learn(text, merges, args.mode, allow_fewer=not asked, pre_tokenizer=pre_tokenizer)
    else:
        text, (blocks, name), sizes = None, corpus_blocks(args.corpus), []

        def measured():
            for block in blocks:
                sizes.append(len(block.encode("utf-8")))
                yield block

        tokenizer, result = learn(measured(), merges, args.mode, allow_fewer=not asked, pre_tokenizer=pre_tokenizer)
        size = sum(sizes)
    seconds = time.perf_counter() - start
    if len(result.merges) < merges:
        print(f"note: the corpus allows only {len(result.merges)} merges (every kept word is one symbol), "
              f"not the default {merges}", file=sys.stderr)
    print(f"learned {len(result.merges)} merges ({args.mode} mode) from {name}, "
          f"{size:,} bytes, in {seconds:.2f}s: {len(tokenizer)} symbols",
          file=sys.stderr)
    return text, tokenizer, result


def _declare_corpus(args: argparse.Namespace) -> None:
    """The files of a CORPUS directory are inputs too: no output may be one of them."""
    from ..text.corpus import corpus_files

    if args.corpus is not None and args.corpus.is_dir():
        for path in corpus_files(args.corpus):
            files_of(args).input("CORPUS", path, "corpus")


def cmd_vocab(args: argparse.Namespace) -> int:
    _declare_corpus(args)
    _, tokenizer, result = _learn(args, keep_text=False)
    if args.output is not None:
        tokenizer.save(args.output)
        print(f"wrote {args.output} (Hugging Face tokenizer.json: tokenizers.Tokenizer.from_file loads it)",
              file=sys.stderr)
    sys.stdout.write("\n".join(result.vocabulary_lines()) + "\n")
    return 0


# Settings a checkpoint fixes: a resumed run takes them from the file, each checked first.
def _decay_setting(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(value)
    return float(value)


_SETTING_RULES = {"mode": _one_of("word", "byte"), "corpus": _text, "context": _whole(1), "dim": _whole(1),
                  "hidden": _whole(1), "dropout": _probability, "embedding_dropout": _probability,
                  "batch_size": _whole(1), "val_split": _probability, "test_split": _probability, "seed": _whole(0),
                  "dtype": _one_of("float32", "float64"), "patience": _whole(1), "lr_decay": _decay_setting}
_RUN_SETTINGS = tuple(key for key in _SETTING_RULES if key != "corpus")


def _resumed(args: argparse.Namespace, backend: Any):
    """(model, tokenizer, optimizer, history, corpus name) of the checkpoint ``args.resume``, all checked."""
    from ..checkpoint import check_settings, load_checkpoint
    from ..serialization import read_arrays
    from ..text.model import MODEL_KIND, NextTokenModel

    path = args.resume
    if not path.exists():
        raise DataError(f"checkpoint {path} not found: a run writes its first checkpoint after its first epoch; "
                        "start it again without --resume (or check the path)")
    _, metadata = read_arrays(path)
    if metadata.get("kind") != MODEL_KIND:
        raise DataError(f"{path} is not a text model checkpoint: resume from the file `nnxp text train` wrote")
    checkpoint = load_checkpoint(path, device=backend)
    model = NextTokenModel._wrap(checkpoint.net, path)
    settings = check_settings(checkpoint, path, _SETTING_RULES)
    missing = [key for key in _SETTING_RULES if key not in settings]
    if missing:
        raise DataError(f"{path}: settings: {missing[0]!r} is missing; start a new run without --resume")
    if any(key not in r for r in checkpoint.history.records for key in ("val_perplexity", "improved", "next_lr")):
        raise DataError(f"{path}: history: not written by this version of `nnxp text train` (no validation "
                        "perplexity); start a new run without --resume")
    config = model.config()
    for key, actual in (("context", config["context"]), ("dim", config["dimension"]),
                        ("hidden", config["hidden"]), ("dropout", config["dropout"]),
                        ("embedding_dropout", config["embedding_dropout"]), ("dtype", config["dtype"])):
        if settings[key] != actual:
            raise DataError(f"{path}: settings: {key!r} is {settings[key]!r} but the network has {actual!r}; "
                            "the file is damaged, start a new run without --resume")
    if settings["val_split"] + settings["test_split"] >= 1.0 or min(settings["val_split"], settings["test_split"]) <= 0:
        raise DataError(f"{path}: settings: val_split and test_split must be fractions above 0 with a sum below 1; "
                        "start a new run without --resume")
    tokenizer = model.checked_tokenizer(metadata.get("tokenizer"), path)
    if tokenizer.mode != settings["mode"]:
        raise DataError(f"{path}: tokenizer: a {tokenizer.mode}-mode tokenizer in a {settings['mode']}-mode "
                        "run; the file is damaged, start a new run without --resume")
    stale = 0
    for record in checkpoint.history.records:
        stale = 0 if record["improved"] else stale + 1
    if stale >= settings["patience"]:
        raise ConfigError(f"{path}: the run stopped early after epoch {checkpoint.epoch} (no better validation "
                          f"perplexity for {stale} epochs): its file already holds the best weights; nothing to resume")
    if checkpoint.epoch >= args.epochs:
        raise ConfigError(f"{path} has already done {checkpoint.epoch} epochs: "
                          f"pass --epochs N with N > {checkpoint.epoch} to train further")
    for key in _RUN_SETTINGS:
        setattr(args, key, settings[key])
    return model, tokenizer, checkpoint.optimizer, checkpoint.history, settings["corpus"]


def cmd_train(args: argparse.Namespace) -> int:
    import numpy as np

    from ..backend import get_backend
    from ..checkpoint import save_checkpoint
    from ..optim import get_optimizer
    from ..text.baselines import split_stream
    from ..text.corpus import read_corpus
    from ..text.model import NextTokenModel, neighbours, train_model
    from ..threads import thread_limit
    from ..train import History

    _check_text_arguments(args)
    if args.val_split + args.test_split >= 1.0:
        raise ConfigError(f"--val-split {args.val_split} and --test-split {args.test_split} leave no training "
                          "text: give fractions that add up to less than 1, e.g. 0.1 and 0.1")
    backend = get_backend(args.device)  # an unusable device fails before any work
    save_path = files_of(args).output("--save", args.save or args.resume or Path("text_model.safetensors"),
                                      "model", may_be="--resume")
    _declare_corpus(args)
    if args.resume is not None:
        model, tokenizer, optimizer, history, name = _resumed(args, backend)
        text, corpus_name = read_corpus(args.corpus)
        if corpus_name != name:
            raise ConfigError(f"{args.resume} was trained on {name}, not {corpus_name}: resume with the same CORPUS")
        if args.lr is not None:
            optimizer.lr = optimizer.initial_lr = args.lr
            if history.records:
                history.records[-1]["next_lr"] = args.lr
    else:
        text, tokenizer, _ = _learn(args)
        model = NextTokenModel(len(tokenizer), args.context, args.dim, args.hidden, dropout=args.dropout,
                               embedding_dropout=args.embedding_dropout, device=backend, dtype=args.dtype,
                               seed=args.seed)
        optimizer = get_optimizer(args.optimizer, args.lr if args.lr is not None else TRAIN_DEFAULTS["lr"],
                                  weight_decay=args.weight_decay)
        history = History()
        name = _corpus_name(args.corpus)
    stream = np.asarray(tokenizer.encode(text), dtype=np.int64)
    split = split_stream(stream, args.val_split, args.test_split, args.context)
    settings = {key: getattr(args, key) for key in _RUN_SETTINGS} | {"corpus": name}
    print(f"{len(stream):,} tokens; model: {args.context} x {args.dim}-d embeddings (dropout "
          f"{args.embedding_dropout:g}) -> {args.hidden} tanh (dropout {args.dropout:g}) -> softmax over "
          f"{len(tokenizer)}, {optimizer!r}, on {model.backend}", file=sys.stderr)
    args.resume_hint = (f"nnxp text train {'' if args.corpus is None else str(args.corpus) + ' '}"
                        f"--resume {save_path} --epochs {args.epochs}")
    metrics = (open(args.metrics, "a" if args.resume is not None else "w", encoding="utf-8")
               if args.metrics is not None else None)
    first_epoch = len(history) + 1

    def on_epoch(record, run):
        if record.epoch == first_epoch:
            _print_baselines(args, run)
        entry = record.as_dict()
        history.records.append(entry)
        save_checkpoint(save_path, model.net, optimizer, history, settings,
                        extra_metadata=NextTokenModel.file_metadata(tokenizer))
        note = "" if record.improved else f"  (no better: best weights restored, lr -> {record.next_lr:g})"
        print(f"epoch {record.epoch}/{args.epochs}  train loss {record.train_loss:.4f}  validation perplexity "
              f"{record.val_perplexity:.1f}  {record.seconds:.1f}s{note}", flush=True)
        if metrics is not None:
            metrics.write(json.dumps(entry) + "\n")
            metrics.flush()

    sizes = [args.context * args.dim, args.hidden, len(tokenizer)]
    started = time.perf_counter()
    try:
        with thread_limit(getattr(args, "threads", None), args.batch_size, sizes, model.backend):
            run = train_model(model, split, epochs=args.epochs, batch_size=args.batch_size, optimizer=optimizer,
                              seed=args.seed, patience=args.patience, lr_decay=args.lr_decay,
                              progress=args.progress, history=history.records, on_epoch=on_epoch)
    finally:
        if metrics is not None:
            metrics.close()
    seconds = time.perf_counter() - started
    _print_table(run, len(history), seconds, save_path)
    if args.json is not None:
        _write_json(args.json, args, run, len(history), seconds, name, len(tokenizer), str(model.backend))
    # Neighbours of the most frequent longer tokens.
    counts = Counter(stream.tolist())
    probes = [i for i, _ in counts.most_common() if len(tokenizer.token_text(i).strip()) >= 4][:5]
    for i in probes:
        near = ", ".join(tokenizer.token_text(j).strip() for j, _ in neighbours(model.embedding.table, i, 6))
        print(f"  {tokenizer.token_text(i).strip()}: {near}")
    return 0


def _print_baselines(args: argparse.Namespace, run: Any) -> None:
    print(f"split: {run.train_tokens:,} training, {run.val_tokens:,} validation (next {args.val_split:.0%}), "
          f"{run.test_tokens:,} test (last {args.test_split:.0%}) targets; baselines tuned on validation: "
          + ", ".join(f"{b.name} ({b.setting}) {b.val:.1f}" for b in run.baselines))


def _print_table(run: Any, epochs: int, seconds: float, save_path: Path) -> None:
    why = "early stop" if run.stopped_early else "last epoch"
    print(f"perplexity after {epochs} epoch{'' if epochs == 1 else 's'} ({why}; best validation weights); "
          f"{seconds:.0f}s for the baselines, training and scoring:")
    print(f"  {'':<18}{'train':>9}{'validation':>12}{'test':>9}")
    for b in run.baselines:
        print(f"  {b.name:<18}{'':>9}{b.val:>12.1f}{b.test:>9.1f}   {b.setting}")
    print(f"  {'nnxp model':<18}{run.train_perplexity:>9.1f}{run.val_perplexity:>12.1f}{run.test_perplexity:>9.1f}")
    for b in run.mixtures[-1:]:  # the model interpolated with the strongest baseline: reported apart
        print(f"  {b.name:<18}{'':>9}{b.val:>12.1f}{b.test:>9.1f}   {b.setting} (a mixture, not the model)")
    kn = {b.name: b.test for b in run.baselines}
    beaten = [name for name, value in kn.items() if run.test_perplexity < value]
    if kn:
        print(f"test: the model beats {', '.join(beaten) if beaten else 'none of the baselines'}; "
              f"model and checkpoint in {save_path}")


def _write_json(path: Path, args: argparse.Namespace, run: Any, epochs: int, seconds: float, corpus: str,
                vocabulary: int, device: str) -> None:
    from .._files import write_file

    table = {b.name: {"setting": b.setting, "validation": b.val, "test": b.test} for b in run.baselines}
    table["nnxp model"] = {"train": run.train_perplexity, "validation": run.val_perplexity,
                           "test": run.test_perplexity}
    for b in run.mixtures:
        table[b.name] = {"setting": b.setting, "validation": b.val, "test": b.test}
    report = {"corpus": corpus, "mode": args.mode, "vocabulary": vocabulary, "device": device,
              "tokens": {"train": run.train_tokens, "validation": run.val_tokens, "test": run.test_tokens},
              "settings": {key: getattr(args, key) for key in _RUN_SETTINGS},
              "epochs": epochs, "stopped_early": run.stopped_early, "train_seconds": seconds,
              "per_epoch": [r.as_dict() for r in run.epochs], "perplexity": table}
    write_file(path, (json.dumps(report, indent=1) + "\n").encode("utf-8"))


def _corpus_name(corpus: Path | None) -> str:
    from ..text.corpus import DEFAULT_CORPUS_NAME

    return DEFAULT_CORPUS_NAME if corpus is None else str(corpus)


def cmd_neighbours(args: argparse.Namespace) -> int:
    from ..text.model import NextTokenModel, neighbours

    _check_text_arguments(args)
    model, tokenizer, _ = NextTokenModel.load(args.model, device="cpu")
    ids = [tokenizer.token_id(token) for token in args.tokens]  # every token checked before printing
    for token, i in zip(args.tokens, ids):
        near = "  ".join(f"{tokenizer.token_text(j)} {cos:.3f}"
                         for j, cos in neighbours(model.embedding.table, i, args.count))
        print(f"{token}: {near}")
    return 0


_ARGUMENT_NAMES = {"tokens": "TOKEN", "corpus": "CORPUS", "model": "MODEL"}


def _check_text_arguments(args: argparse.Namespace) -> None:
    """Refuse (one line) an argument that is not valid UTF-8: the shell passed bytes that Python
    could only keep as surrogate escapes, which no token is and no message could print."""
    for key, value in vars(args).items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, (str, Path)):
                text = str(item)
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    shown = os.fsencode(text).decode("utf-8", errors="backslashreplace")
                    what = _ARGUMENT_NAMES.get(key, "--" + key.replace("_", "-"))
                    raise ConfigError(f"{what} {shown!r} is not valid UTF-8 text: give it in UTF-8 "
                                      "(a file name too: rename the file)") from None
