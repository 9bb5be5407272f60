"""Every nnxp path on the GPU against the CPU path: test accuracy after 2 epochs, same seed (issue 18).

    python scripts/gpu_compare.py --data-dir DIR [--dataset fashion-mnist] [--json PATH] [--device cuda]

Trains 784-256-10 (ReLU, softmax + cross-entropy, float32, batch 128) with SGD
and with Adam on: the CPU (NumPy), and on ``--device``: the fused step in CUDA
graphs (fit's default), the fused step eager (``cuda_graphs=False``) and the
reference executor (``fast=False``).  Each GPU path must reach the CPU's test
accuracy within 0.01; prints one line per run and writes the numbers as JSON.
Exit status 1 if any path is off.  ``--device cpu`` dry-runs the plumbing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # nnxp from this tree

import nnxp  # noqa: E402
from nnxp.data.datasets import image_inputs, load_dataset  # noqa: E402

TOLERANCE = 0.01
PATHS = {"graph": {}, "eager": {"cuda_graphs": False}, "reference": {"fast": False}}


def run(data, device: str, optimizer: str, epochs: int, options: dict) -> dict:
    x, y = image_inputs(data.train_images), data.train_labels
    net = nnxp.Network([784, 256, 10], seed=0, device=device, dtype="float32")
    make = nnxp.SGD(lr=0.05) if optimizer == "sgd" else nnxp.Adam(lr=0.001)
    started = time.perf_counter()
    net.fit(x, y, epochs=epochs, batch_size=128, optimizer=make, verbose=0, **options)
    seconds = time.perf_counter() - started
    scores = net.evaluate(image_inputs(data.test_images), data.test_labels)
    return {"test_accuracy": float(scores["accuracy"]), "fit_seconds": round(seconds, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    results, failed = [], False
    for optimizer in ("sgd", "adam"):
        cpu = run(data, "cpu", optimizer, args.epochs, {})
        results.append({"optimizer": optimizer, "path": "cpu", **cpu})
        print(f"{optimizer:5s} cpu        test accuracy {cpu['test_accuracy']:.4f}  fit {cpu['fit_seconds']:.1f} s",
              flush=True)
        for path, options in PATHS.items():
            got = run(data, args.device, optimizer, args.epochs, options)
            off = abs(got["test_accuracy"] - cpu["test_accuracy"])
            ok = off <= TOLERANCE
            failed |= not ok
            results.append({"optimizer": optimizer, "path": f"{args.device} {path}", "off_cpu": round(off, 4),
                            "ok": ok, **got})
            print(f"{optimizer:5s} {args.device} {path:9s} test accuracy {got['test_accuracy']:.4f}  "
                  f"fit {got['fit_seconds']:.1f} s  |diff from cpu| {off:.4f} {'ok' if ok else 'OFF'}", flush=True)
    out = {"dataset": data.name, "source": data.source, "epochs": args.epochs, "tolerance": TOLERANCE,
           "device": args.device, "results": results}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
