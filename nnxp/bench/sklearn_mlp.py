"""scikit-learn's MLPClassifier against nnxp.sklearn's, side by side: ``python -m nnxp.bench.sklearn_mlp``.

The configuration is scikit-learn's own ``benchmarks/bench_mnist.py`` "MLP-adam":
``MLPClassifier(hidden_layer_sizes=(100, 100), max_iter=400, alpha=1e-4, solver="adam",
learning_rate_init=0.001, momentum=0.9, tol=1e-4, random_state=1)`` on pixels / 255 in
float32 (as that script loads them), batch ``"auto"`` (200).  Both estimators get the
same arrays, in one process, interleaved (scikit-learn, nnxp, scikit-learn, nnxp, ...),
``--repeats`` times; the table shows medians of fit time and test error.

Threads: nnxp chooses its BLAS thread count per fit (:mod:`nnxp.threads`: one for
small products or a busy machine).  scikit-learn is timed twice: with that same
count (``threadpoolctl``), the like-for-like comparison, and with its default
(every core), which is what a scikit-learn user gets.

Datasets: ``bundled`` (nnxp's 4,000 + 1,000 MNIST digits) and ``fashion-mnist``
(Debian's ``dataset-fashion-mnist`` or the nnxp cache; ``--rows`` caps the training
rows, ``--max-iter`` the epochs, for a machine where the full run takes too long).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..data.datasets import load_dataset
from ..threads import choose_threads
from .machine import describe_machine, machine_info

__all__ = ["main", "run"]

CONFIG = dict(hidden_layer_sizes=(100, 100), max_iter=400, alpha=1e-4, solver="adam", learning_rate_init=0.001,
              momentum=0.9, tol=1e-4, random_state=1)


def _data(name: str, rows: int | None) -> tuple[np.ndarray, ...]:
    d = load_dataset(name)
    x_train = d.train_images.reshape(len(d.train_images), -1).astype(np.float32) / 255
    x_test = d.test_images.reshape(len(d.test_images), -1).astype(np.float32) / 255
    y_train, y_test = d.train_labels, d.test_labels
    if rows:
        x_train, y_train = x_train[:rows], y_train[:rows]
    return x_train, y_train, x_test, y_test


def _fit(cls: Any, config: dict[str, Any], data: tuple[np.ndarray, ...], threads: int | None) -> dict[str, float]:
    from threadpoolctl import threadpool_limits

    x_train, y_train, x_test, y_test = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = cls(**config)
        with threadpool_limits(threads) if threads else _Nothing():
            started = time.perf_counter()
            model.fit(x_train, y_train)
            seconds = time.perf_counter() - started
    return {"fit_s": seconds, "test_error": 1.0 - model.score(x_test, y_test), "n_iter": model.n_iter_}


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def run(dataset: str, *, rows: int | None = None, max_iter: int = 400, repeats: int = 3,
        default_threads: bool = True) -> dict[str, Any]:
    """Interleaved fits of each contender; returns every measurement and the medians."""
    from sklearn.neural_network import MLPClassifier as SkMLP

    from ..sklearn import MLPClassifier as NnxpMLP

    data = _data(dataset, rows)
    config = {**CONFIG, "max_iter": max_iter}
    runs: dict[str, list[dict[str, float]]] = {"scikit-learn (nnxp's threads)": [], "nnxp": []}
    if default_threads:
        runs["scikit-learn (default threads)"] = []
    for _ in range(repeats):
        threads = choose_threads(min(200, len(data[0])), [data[0].shape[1], 100, 100, 10])
        runs["scikit-learn (nnxp's threads)"].append({**_fit(SkMLP, config, data, threads), "threads": threads})
        runs["nnxp"].append({**_fit(NnxpMLP, config, data, None), "threads": threads})
        if default_threads:
            runs["scikit-learn (default threads)"].append(_fit(SkMLP, config, data, None))
    medians = {name: {key: statistics.median(r[key] for r in rs) for key in ("fit_s", "test_error", "n_iter")}
               for name, rs in runs.items()}
    return {"dataset": dataset, "train_rows": len(data[0]), "test_rows": len(data[2]), "config": config,
            "repeats": repeats, "runs": runs, "medians": medians}


def table(result: dict[str, Any]) -> list[str]:
    base = result["medians"]["nnxp"]["fit_s"]
    lines = [f"{result['dataset']}: {result['train_rows']} train / {result['test_rows']} test rows, "
             f"max_iter={result['config']['max_iter']}, median of {result['repeats']}",
             "| estimator | fit time (s) | nnxp faster by | test error | epochs |", "|---|---:|---:|---:|---:|"]
    for name, m in result["medians"].items():
        lines.append(f"| {name} | {m['fit_s']:.2f} | {m['fit_s'] / base:.2f}x | {100 * m['test_error']:.2f}% "
                     f"| {m['n_iter']:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnxp.bench.sklearn_mlp", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", choices=["bundled", "fashion-mnist"],
                        help="repeatable; default: both")
    parser.add_argument("--rows", type=int, default=None, help="cap on training rows (fashion-mnist: 60,000)")
    parser.add_argument("--max-iter", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-default-threads", action="store_true",
                        help="skip scikit-learn with its default thread count")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write (e.g. benchmarks/...json)")
    args = parser.parse_args(argv)
    machine = machine_info("cpu")
    print("\n".join(describe_machine(machine)))
    results = []
    for name in args.dataset or ["bundled", "fashion-mnist"]:
        result = run(name, rows=args.rows, max_iter=args.max_iter, repeats=args.repeats,
                     default_threads=not args.no_default_threads)
        print("\n".join(table(result)))
        results.append(result)
    if args.out is not None:
        args.out.write_text(json.dumps({"machine": machine, "results": results}, indent=1, default=str) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
