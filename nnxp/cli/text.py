"""The ``nnxp text`` commands: ``vocab``, ``train``, ``neighbours``.

With no CORPUS they read the English documentation text that ships with
CPython (:mod:`nnxp.text.corpus`), so they work offline.  Bad input (a binary
or empty file, an unknown token, more merges than the corpus allows) ends with
one ``nnxp: error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..io.paths import Input, Output
from .args import add_device_argument, add_threads_argument, files_of, nonnegative_int, positive_float, positive_int

__all__ = ["add_commands", "cmd_vocab", "cmd_train", "cmd_neighbours"]


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

    p = sub.add_parser("train", help="learn a vocabulary, then train token embeddings (next-token model)",
                       description="Learn a BPE vocabulary, then train a next-token model (Bengio et al. 2003: "
                                   "k context tokens -> embeddings -> tanh layer -> softmax) and report "
                                   "held-out perplexity per epoch beside an add-k bigram baseline.")
    p.add_argument("corpus", nargs="?", type=Input("corpus", directory=True), metavar="CORPUS", help=corpus_help)
    p.add_argument("--merges", type=positive_int, metavar="N",
                   help="BPE merges (default: 2000, or as many as the corpus allows if fewer)")
    _add_mode(p)
    p.add_argument("--context", type=positive_int, default=3, metavar="K", help="context tokens (default: 3)")
    p.add_argument("--dim", type=positive_int, default=32, metavar="D", help="embedding dimension (default: 32)")
    p.add_argument("--hidden", type=positive_int, default=128, metavar="H", help="hidden units (default: 128)")
    p.add_argument("--epochs", type=positive_int, default=3, metavar="N", help="epochs (default: 3)")
    p.add_argument("--batch-size", type=positive_int, default=256, metavar="B", help="batch size (default: 256)")
    p.add_argument("--optimizer", default="adam", choices=["sgd", "momentum", "nesterov", "adam", "adamw"],
                   help="optimizer (default: adam)")
    p.add_argument("--lr", type=positive_float, help="learning rate (default: 0.003)")
    p.add_argument("--held-out", type=_fraction, default=0.1, metavar="F",
                   help="fraction of the text, at its end, held out for perplexity (default: 0.1)")
    add_device_argument(p)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="(default: float32)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seeds the initial weights and shuffles (default: 0)")
    p.add_argument("-o", "--save", type=Output("model", may_be="--resume"), metavar="FILE",
                   help="model and checkpoint file, rewritten atomically after every epoch "
                        "(default: text_model.safetensors, or the --resume file)")
    p.add_argument("--resume", type=Input("checkpoint"), metavar="FILE",
                   help="continue the run saved in this checkpoint up to --epochs in total, on the same "
                        "CORPUS; the vocabulary, model, optimizer and settings come from the file")
    p.add_argument("--metrics", type=Output("metrics"), metavar="FILE", help="write one JSON line per epoch to FILE")
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


# Settings a checkpoint fixes: a resumed run takes them from the file.
_RUN_SETTINGS = ("mode", "context", "dim", "hidden", "batch_size", "held_out", "seed", "dtype")


def cmd_train(args: argparse.Namespace) -> int:
    import numpy as np

    from ..backend import get_backend
    from ..checkpoint import load_checkpoint, save_checkpoint
    from ..optim import get_optimizer
    from ..serialization import read_arrays
    from ..text.corpus import read_corpus
    from ..text.model import NextTokenModel, neighbours, train_model
    from ..text.tokenizer import Tokenizer
    from ..train import History

    backend = get_backend(args.device)  # an unusable device fails before any work
    save_path = files_of(args).output("--save", args.save or args.resume or Path("text_model.safetensors"),
                                      "model", may_be="--resume")
    _declare_corpus(args)
    if args.resume is not None:
        checkpoint = load_checkpoint(args.resume, device=backend)
        _, metadata = read_arrays(args.resume)
        if metadata.get("kind") != NextTokenModel.file_metadata(Tokenizer([], [])).get("kind"):
            raise DataError(f"{args.resume} is not a text model checkpoint: resume from the file "
                            "`nnxp text train` wrote")
        if checkpoint.epoch >= args.epochs:
            raise ConfigError(f"{args.resume} has already done {checkpoint.epoch} epochs: "
                              f"pass --epochs N with N > {checkpoint.epoch} to train further")
        for key in _RUN_SETTINGS:
            setattr(args, key, checkpoint.settings[key])
        tokenizer = Tokenizer.from_json(metadata["tokenizer"], str(args.resume))
        text, name = read_corpus(args.corpus)
        if name != checkpoint.settings["corpus"]:
            raise ConfigError(f"{args.resume} was trained on {checkpoint.settings['corpus']}, not {name}: "
                              "resume with the same CORPUS")
        model = NextTokenModel._wrap(checkpoint.net)
        optimizer, history = checkpoint.optimizer, checkpoint.history
        if args.lr is not None:
            optimizer.lr = optimizer.initial_lr = args.lr
    else:
        text, tokenizer, _ = _learn(args)
        model = NextTokenModel(len(tokenizer), args.context, args.dim, args.hidden, device=backend,
                               dtype=args.dtype, seed=args.seed)
        optimizer = get_optimizer(args.optimizer, args.lr if args.lr is not None else 0.003)
        history = History()
        name = _corpus_name(args.corpus)
    stream = np.asarray(tokenizer.encode(text), dtype=np.int64)
    settings = {key: getattr(args, key) for key in _RUN_SETTINGS} | {"corpus": name}
    print(f"{len(stream):,} tokens; model: {args.context} x {args.dim}-d embeddings -> {args.hidden} tanh -> "
          f"softmax over {len(tokenizer)}, {optimizer!r}, on {model.backend}", file=sys.stderr)
    args.resume_hint = (f"nnxp text train {'' if args.corpus is None else str(args.corpus) + ' '}"
                        f"--resume {save_path} --epochs {args.epochs}")
    metrics = (open(args.metrics, "a" if args.resume is not None else "w", encoding="utf-8")
               if args.metrics is not None else None)

    first_epoch = len(history) + 1

    def on_epoch(record, run):
        if record.epoch == first_epoch:
            print(f"held-out: the last {args.held_out:.0%} of the text, {run.test_tokens:,} tokens; "
                  f"bigram baseline (add-k, k={run.bigram_k:g}) perplexity {run.bigram_perplexity:.1f}")
        entry = {"epoch": record.epoch, "loss": record.train_loss, "perplexity": record.perplexity,
                 "bigram_perplexity": run.bigram_perplexity, "bigram_k": run.bigram_k, "seconds": record.seconds}
        history.records.append(entry)
        save_checkpoint(save_path, model.net, optimizer, history, settings,
                        extra_metadata=NextTokenModel.file_metadata(tokenizer))
        print(f"epoch {record.epoch}/{args.epochs}  train loss {record.train_loss:.4f}  held-out perplexity "
              f"{record.perplexity:.1f} (bigram {run.bigram_perplexity:.1f})  {record.seconds:.1f}s", flush=True)
        if metrics is not None:
            metrics.write(json.dumps(entry) + "\n")
            metrics.flush()

    try:
        run = train_model(model, stream, epochs=args.epochs, batch_size=args.batch_size, optimizer=optimizer,
                          held_out=args.held_out, seed=args.seed, progress=args.progress,
                          initial_epoch=len(history), on_epoch=on_epoch)
    finally:
        if metrics is not None:
            metrics.close()
    best = min(history["perplexity"])
    verdict = "beats" if best < run.bigram_perplexity else "does NOT beat"
    epochs = f"{len(history)} {'epoch' if len(history) == 1 else 'epochs'}"
    print(f"held-out perplexity {history.last['perplexity']:.1f} after {epochs} (best {best:.1f}) "
          f"{verdict} the bigram's {run.bigram_perplexity:.1f}; model and checkpoint in {save_path}")
    # Neighbours of the most frequent longer tokens.
    counts = Counter(stream.tolist())
    probes = [i for i, _ in counts.most_common() if len(tokenizer.token_text(i).strip()) >= 4][:5]
    for i in probes:
        near = ", ".join(tokenizer.token_text(j).strip() for j, _ in neighbours(model.embedding.table, i, 6))
        print(f"  {tokenizer.token_text(i).strip()}: {near}")
    return 0


def _corpus_name(corpus: Path | None) -> str:
    from ..text.corpus import DEFAULT_CORPUS_NAME

    return DEFAULT_CORPUS_NAME if corpus is None else str(corpus)


def cmd_neighbours(args: argparse.Namespace) -> int:
    from ..text.model import NextTokenModel, neighbours

    model, tokenizer, _ = NextTokenModel.load(args.model, device="cpu")
    ids = [tokenizer.token_id(token) for token in args.tokens]  # every token checked before printing
    for token, i in zip(args.tokens, ids):
        near = "  ".join(f"{tokenizer.token_text(j)} {cos:.3f}"
                         for j, cos in neighbours(model.embedding.table, i, args.count))
        print(f"{token}: {near}")
    return 0

