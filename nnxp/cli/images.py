"""Looking at data and models: ``nnxp predict``, ``nnxp images`` and ``nnxp plot``.

- ``nnxp predict MODEL IMAGE...`` classifies your own digit images: each is
  read (PGM by the built-in parser; PNG, JPEG and the rest through Pillow),
  turned into an MNIST-style 28x28 image by :func:`nnxp.viz.to_mnist` and fed
  to the model in one batch.
- ``nnxp images`` prints dataset images as text art with their labels (and a
  model's predictions, mistakes marked), and writes them as a grid image.
- ``nnxp plot METRICS`` draws the loss and accuracy curves of the JSON-lines
  file ``nnxp train --metrics`` writes.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..viz.figures import digit_grid_figure, figure_format, metrics_figure, require_matplotlib, save_figure
from ..viz.images import FIELD, INSTALL_PLOT, read_image, to_mnist
from ..viz.metrics import read_metrics
from ..viz.terminal import colour, format_digits, half_block_art, terminal_width, text_art
from ..io.paths import Input, Output
from .args import (add_data_arguments, add_device_argument, add_threads_argument, check_writable, files_of,
                   load_data, load_model, nonnegative_int, positive_int, warn_other_dataset)

__all__ = ["add_commands", "cmd_predict", "cmd_images", "cmd_plot"]

# Most digits one grid image holds (a 25x16 grid is already 2000x2300 pixels).
MAX_GRID = 400


def add_commands(commands: Any) -> None:
    """Add ``predict``, ``images`` and ``plot`` to the ``nnxp`` subparsers ``commands``."""
    p = commands.add_parser(
        "predict", help="classify your own digit images, or your own table's rows, with a saved model",
        description="Classify image files with a saved model. Each image is made MNIST-like: "
                    "greyscale, white digit on black (a bright background is inverted), cropped "
                    "to the digit, scaled to 20 px and centred by mass in 28x28. Works best on a "
                    "cropped, evenly lit digit drawn with a thick stroke. With --data: one prediction "
                    "per row of your own table.")
    p.add_argument("model", type=Input("model"), metavar="MODEL", help="a .safetensors file written by nnxp train")
    p.add_argument("images", type=Input("image"), nargs="*", metavar="IMAGE",
                   help="PGM files (read without extra packages), or PNG, JPEG and other "
                        "formats Pillow reads")
    p.add_argument("--data", type=Input("table"), metavar="FILE",
                   help="instead of images: a table (.csv, .npz, .parquet) with the model's feature columns")
    p.add_argument("--output", type=Output("predictions"), metavar="FILE",
                   help="with --data: write the predictions here (CSV, one per row) instead of stdout")
    add_device_argument(p)
    add_threads_argument(p)
    p.add_argument("--classes", default="auto", choices=["auto", "mnist", "fashion-mnist"],
                   help="names of a 10-output model's classes: auto takes the dataset the model "
                        "file was trained on, digits if it does not say (default: auto)")
    p.add_argument("--top", type=positive_int, default=3, metavar="K",
                   help="show the K most likely classes (default: 3)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object per image instead")
    out.add_argument("--show", action="store_true",
                     help="also print each image as the network sees it (28x28 text art)")
    p.set_defaults(func=cmd_predict)

    p = commands.add_parser(
        "images", help="show dataset images as text art or a grid image (with predictions)",
        description="Print dataset images as text art with their labels; with --model also the "
                    "model's predictions, mistakes marked; with --png also as a grid image.")
    add_data_arguments(p)
    add_device_argument(p)
    p.add_argument("--split", default="test", choices=["test", "train"], help="(default: test)")
    p.add_argument("--count", type=positive_int, default=8, metavar="N",
                   help="how many images (default: 8)")
    p.add_argument("--start", type=nonnegative_int, default=0, metavar="I",
                   help="index of the first image (default: 0)")
    p.add_argument("--model", type=Input("model"), metavar="PATH", help="also show this model's predictions")
    add_threads_argument(p)
    p.add_argument("--only-mistakes", action="store_true",
                   help="with --model: show only images the model gets wrong, from --start on")
    p.add_argument("--png", type=Output("image"), metavar="PATH",
                   help=f"also write a grid image (.png, .svg or .pdf; needs matplotlib: {INSTALL_PLOT})")
    p.add_argument("--no-text", action="store_true", help="print no text art (use with --png)")
    p.add_argument("--ramp", action="store_true",
                   help="text art with grey levels, one line per pixel row (28 lines a digit) "
                        "instead of half blocks (two pixel rows a line, 14 lines)")
    p.set_defaults(func=cmd_images)

    p = commands.add_parser(
        "plot", help="plot the loss and accuracy curves of a training run",
        description="Plot loss and accuracy per epoch (training, and validation or test where the run "
                    "recorded them) from the JSON-lines file nnxp train --metrics writes, or from a model "
                    f"or checkpoint nnxp train wrote. Needs matplotlib: {INSTALL_PLOT}.")
    p.add_argument("metrics", type=Input("metrics"), metavar="METRICS",
                   help="the file nnxp train --metrics wrote, or a model or checkpoint file of nnxp train")
    p.add_argument("-o", "--output", type=Output("image"), metavar="PATH",
                   help="image to write: .png, .svg or .pdf (default: METRICS with suffix .png)")
    p.set_defaults(func=cmd_plot)


# -- models -------------------------------------------------------------------------------------

def _probabilities(net: Any, x: np.ndarray) -> tuple[np.ndarray, bool]:
    """((N, K) host scores per class, whether they are probabilities); one forward pass.

    A one-output network (sigmoid, class 1 when >= 0.5) gives K = 2: [1 - a, a].
    """
    scores = np.asarray(net.backend.to_numpy(net.predict(x)), dtype=np.float64)
    name = net.output.name
    if scores.shape[1] == 1:
        scores = np.concatenate([1.0 - scores, scores], axis=1)
    return scores, name in ("softmax", "sigmoid")


# -- nnxp predict ------------------------------------------------------------------------------

def cmd_predict(args: argparse.Namespace) -> int:
    from ..data import FASHION_MNIST_CLASSES, MNIST_CLASSES, image_inputs

    if args.data is not None:
        from .table import predict_table, read_model

        net, spec, _ = read_model(args.model, args.device)
        predict_table(args, net, spec)
        return 0
    if not args.images:
        raise ConfigError("give one or more image files, or --data TABLE")
    if args.output is not None:
        raise ConfigError("--output is for --data: image predictions are printed")
    net, trained_on = load_model(args.model, args.device)
    if net.sizes[0] != FIELD * FIELD:
        raise DataError(f"{args.model} takes {net.sizes[0]} inputs, but nnxp predict gives it 28x28 "
                        "images (784 inputs): use a model trained on MNIST-style data")
    k = max(2, net.sizes[-1])
    if args.classes != "auto" and k != 10:
        raise ConfigError(f"--classes {args.classes} names 10 classes but {args.model} has "
                          f"{net.sizes[-1]} outputs: leave out --classes")
    kind = args.classes if args.classes != "auto" else trained_on
    if k == 10:
        classes = FASHION_MNIST_CLASSES if kind == "fashion-mnist" else MNIST_CLASSES
    else:
        classes = tuple(str(i) for i in range(k))

    inputs = np.stack([to_mnist(read_image(path), name=str(path)) for path in args.images])
    scores, is_probability = _probabilities(net, image_inputs(inputs))
    key = "p" if is_probability else "score"
    for path, image, row in zip(args.images, inputs, scores):
        order = np.argsort(-row, kind="stable")[:args.top]
        if args.json:
            top = [{"class": int(c), "name": classes[c], key: float(row[c])} for c in order]
            print(json.dumps({"path": str(path), **top[0], "top": top}))
            continue
        best = order[0]
        line = f"{path}: {classes[best]}  ({key}={row[best]:.3f})"
        if len(order) > 1:
            line += "   next: " + ", ".join(f"{classes[c]} {row[c]:.3f}" for c in order[1:])
        print(line)
        if args.show:
            print("\n".join(text_art(image)))
    return 0


# -- nnxp images -------------------------------------------------------------------------------

def cmd_images(args: argparse.Namespace) -> int:
    from ..data import image_inputs

    if args.only_mistakes and args.model is None:
        raise ConfigError("--only-mistakes needs --model PATH: the model whose mistakes to show")
    if args.no_text and args.png is None:
        raise ConfigError("--no-text leaves nothing to show: add --png PATH, or drop --no-text")
    if args.png is not None:
        figure_format(args.png)
        if args.count > MAX_GRID:
            raise ConfigError(f"--count {args.count} is too many for one grid image: "
                              f"use at most {MAX_GRID} with --png")
        check_writable(args.png)
        require_matplotlib()
    net = None
    if args.model is not None:
        net, trained_on = load_model(args.model, args.device)

    data = load_data(args)
    images = data.test_images if args.split == "test" else data.train_images
    labels = data.test_labels if args.split == "test" else data.train_labels
    n = len(labels)
    if args.start >= n:
        raise ConfigError(f"--start {args.start} is past the end of the {data.name} {args.split} "
                          f"images ({n:,}): use 0..{n - 1}")
    if net is not None:
        pixels = images.shape[1] * images.shape[2]
        if net.sizes[0] != pixels or max(2, net.sizes[-1]) != data.num_classes:
            raise DataError(f"{args.model} takes {net.sizes[0]} inputs and gives {net.sizes[-1]} "
                            f"classes; {data.name} has {pixels} and {data.num_classes}: "
                            "use a model trained on it")
        warn_other_dataset(args.model, trained_on, data.name)

    classes = data.classes
    predicted = None
    if args.only_mistakes:
        candidates = np.arange(args.start, n)
        guesses = _classify(net, image_inputs(images[args.start:]))
        wrong = np.flatnonzero(guesses != labels[args.start:])
        index = candidates[wrong[:args.count]]
        predicted = guesses[wrong[:args.count]]
        scanned = f"{data.name} {args.split} images {args.start}-{n - 1}"
        if len(index) == 0:
            print(f"no mistakes in {scanned}: {args.model} gets all {n - args.start:,} right")
            return 0
        accuracy = 100.0 * (1.0 - len(wrong) / len(candidates))
        summary = (f"{len(index)} of the {len(wrong):,} mistakes in {scanned} "
                   f"({accuracy:.2f}% correct)")
    else:
        index = np.arange(args.start, min(n, args.start + args.count))
        if net is not None:
            predicted = _classify(net, image_inputs(images[index]))
            mistakes = int((predicted != labels[index]).sum())
            summary = f"{args.model}: {mistakes} of {len(index)} wrong"
        shown = f"{index[0]}-{index[-1]}" if len(index) > 1 else f"{index[0]}"
        heading = f"{data.name} {args.split} images {shown}"

    if predicted is not None:  # the PNG titles show how sure the model was
        scores, is_probability = _probabilities(net, image_inputs(images[index]))
        key = "p" if is_probability else "score"
    headers, titles, marks = [], [], []
    for j, i in enumerate(index):
        label = classes[labels[i]]
        head = [f"#{i}  label {label}"]
        title = f"#{i}: {label}"
        bad = False
        if predicted is not None:
            guess = classes[predicted[j]]
            bad = guess != label
            head.append(f"predicted {guess}" + ("  WRONG" if bad else ""))
            title += f"\npredicted {guess} ({key}={scores[j, predicted[j]]:.2f})"
        headers.append(head)
        titles.append(title)
        marks.append(bad)

    if not args.no_text:
        if not args.only_mistakes:
            print(heading)
        art = text_art if args.ramp else half_block_art
        print(colour(format_digits(images[index], headers, width=terminal_width(), art=art)))
    if predicted is not None:
        print(summary)
    if args.png is not None:
        suptitle = heading if not args.only_mistakes else summary
        if net is not None and not args.only_mistakes:
            suptitle += f"; {summary}"
        fig = digit_grid_figure(images[index], titles, marks, suptitle=suptitle)
        save_figure(fig, args.png)
        print(f"wrote grid of {len(index)} {'image' if len(index) == 1 else 'images'} to {args.png}")
    return 0


def _classify(net: Any, x: np.ndarray) -> np.ndarray:
    """Host (N,) predicted class indices."""
    return np.asarray(net.backend.to_numpy(net.classify(x)), dtype=np.int64)


def cmd_plot(args: argparse.Namespace) -> int:

    output = args.output if args.output is not None else args.metrics.with_suffix(".png")
    figure_format(output)
    files_of(args).output("--output", output, "image")  # never the metrics file, by any name
    records = read_metrics(args.metrics)
    require_matplotlib()
    fig = metrics_figure(records, title=args.metrics.name)
    save_figure(fig, output)
    epochs = len(records)
    print(f"wrote plot of {epochs} {'epoch' if epochs == 1 else 'epochs'} to {output}")
    return 0
