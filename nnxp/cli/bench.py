"""``nnxp bench``: time a training step against references, or race to a test accuracy.

The harness itself is the library package :mod:`nnxp.bench`; this module is its
command line (``scripts/bench.py`` and ``scripts/race.py`` run ``nnxp bench``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..bench.contenders import CONTENDERS
from ..bench.race import run_race
from ..bench.report import (SCHEMA, TARGETS, format_markdown, format_race, format_table, log, race_markdown,
                            readme_parts, update_readme, write_json)
from ..bench.step import CPU_BATCHES, DEFAULT_SIZES, GPU_BATCHES, run_step_bench
from ..errors import ConfigError, DataError
from ..io.paths import Input, Output, Update
from ..io.read import read_text
from .args import (add_blas_argument, bench_contenders, check_writable, int_list, nonnegative_float, positive_float, positive_int,
                   sizes_list, thread_count)

__all__ = ["add_commands", "cmd_bench"]


def add_commands(commands: Any) -> None:
    """Add the ``bench`` subcommand to the ``nnxp`` parser."""
    p = commands.add_parser(
        "bench", help="time a training step against NumPy, PyTorch and the GEMM floor; or race to an accuracy",
        description="Time ONE training step (forward, loss gradient, backward, update; float32) of nnxp "
                    "(SGD, Adam) side by side with a hand-written NumPy step, PyTorch eager and the GEMM "
                    "floor, interleaved, median of many samples. With --race: train 784-256-10 to a test "
                    "accuracy with nnxp and with PyTorch and compare wall times.")
    p.add_argument("--device", default="cpu", metavar="{cpu,cuda,cuda:N}",
                   help="cpu: NumPy vs torch CPU; cuda: nnxp on CuPy vs torch CUDA (default: cpu)")
    p.add_argument("--sizes", type=sizes_list, metavar="A-B-C[,...]",
                   help="layer sizes to time (default: 784-128-10,784-256-10,784-800-10,784-1024-1024-10)")
    p.add_argument("--batches", type=int_list, metavar="N[,N...]",
                   help="batch sizes (default: 64,128,1024; plus 4096 on a GPU)")
    p.add_argument("--contenders", type=bench_contenders, default=list(CONTENDERS), metavar="NAME[,...]",
                   help=f"which to time (default: all of {', '.join(CONTENDERS)}; graphs only on a GPU)")
    p.add_argument("--repeats", type=positive_int, default=None,
                   help="samples per contender (default: 31; 5 with --quick)")
    p.add_argument("--min-sample-ms", type=positive_float, default=None,
                   help="each sample times enough consecutive steps to last this long (default: 25; 3 with --quick)")
    p.add_argument("--warmup-ms", type=positive_float, default=None,
                   help="warm-up per contender before sampling (default: 200; 10 with --quick)")
    p.add_argument("--settle-ms", type=nonnegative_float, default=None,
                   help="untimed steps before a sample whenever the thread pool changes (NumPy <-> torch), "
                        "so the other library's idle threads have stopped spinning (default: 150; 20 with --quick)")
    p.add_argument("--order", choices=["interleaved", "blocked"], default="interleaved",
                   help="interleaved: round-robin within each repeat (the honest default); blocked: each "
                        "contender's samples together (to diagnose interference between contenders)")
    p.add_argument("--processes", action="store_true",
                   help="time each contender in its own process, the processes taking turns one sample each "
                        "per round, so no library's idle threads spin beside another's (what the README "
                        "tables use); without it all run in this process, interleaved (--order)")
    p.add_argument("--threads", type=thread_count, default=None,
                   help="threads for NumPy's BLAS and torch (default: the BLAS's current count)")
    add_blas_argument(p)
    p.add_argument("--max-foreign-load", type=nonnegative_float, default=0.25, metavar="CORES",
                   help="a round (race: a run) during which other processes used more than this many "
                        "cores is retaken once the machine is quiet; 'inf' never retakes (default: 0.25)")
    p.add_argument("--max-wait", type=nonnegative_float, default=None, metavar="SECONDS",
                   help="the most the whole run waits for other processes to go quiet; it says when it "
                        "waits (default: 600; 5 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="short run of the README's headline case, 784-256-10 at batch 128 (unless "
                        "--sizes/--batches), few samples")
    p.add_argument("--json", type=Output("json"), metavar="PATH", help="write raw samples, summary and machine info (atomically)")
    p.add_argument("--markdown", action="store_true",
                   help="print the README section (markdown) instead of the plain table")
    p.add_argument("--readme", type=Update("markdown"), metavar="PATH",
                   help="also replace the step (or race) section of this markdown file, between the lines "
                        "<!-- nnxp-bench:step --> and <!-- /nnxp-bench:step --> (race: nnxp-bench:race)")
    p.add_argument("--from-json", type=Input("json"), metavar="PATH",
                   help="do not run anything: print the report of a result file written by --json")
    race = p.add_argument_group("race (--race)")
    race.add_argument("--race", action="store_true", help="run the end-to-end race instead of the step benchmark")
    race.add_argument("--dataset", default="auto", choices=["auto", "mnist", "fashion-mnist", "bundled"],
                      help="auto: mnist if found, else fashion-mnist (default: auto)")
    race.add_argument("--data-dir", type=Input("dataset", directory=True), metavar="DIR", help="directory holding the four IDX files")
    race.add_argument("--download", action="store_true",
                      help="download the dataset if it is not found (SHA-256 verified)")
    race.add_argument("--target", type=positive_float, default=None,
                      help="test accuracy to reach, as a fraction (default: 0.96 mnist, 0.85 fashion-mnist)")
    race.add_argument("--max-epochs", type=positive_int, default=50, help="(default: 50)")
    race.add_argument("--race-repeats", type=positive_int, default=2,
                      help="runs per contender, in ABBA order (default: 2)")
    race.add_argument("--torch-init", choices=["same", "default"], default="same",
                      help="same: torch starts from nnxp's initial weights; default: torch's own init")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.from_json is not None:
        try:
            result = json.loads(read_text(args.from_json, "json", "a bench result"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {args.from_json}: {exc}") from None
        if result.get("schema") != SCHEMA:
            raise DataError(f"{args.from_json} is not an nnxp bench result ({SCHEMA})")
        if args.readme is not None:
            update_readme(args.readme, result)
        print(format_markdown(result) if args.markdown else
              (format_race(result) if result.get("kind") == "race" else format_table(result)))
        return 0

    device = _check_device(args.device)
    if args.json is not None:
        check_writable(args.json)
    if args.readme is not None:
        readme_parts(args.readme, "race" if args.race else "step")  # fail now, not after the run
    if args.processes and args.order == "blocked":
        raise ConfigError("--processes takes turns by rounds: it cannot be combined with --order blocked")
    argv = args.argv[args.argv.index("bench") + 1:]
    if args.max_wait is None:
        args.max_wait = 5.0 if args.quick else 600.0
    if args.race:
        result = run_race(dataset=args.dataset, data_dir=args.data_dir, download=args.download,
                          target=args.target,
                          max_epochs=args.max_epochs, device=device, repeats=args.race_repeats,
                          threads=args.threads, torch_init=args.torch_init,
                          max_foreign=args.max_foreign_load, max_wait_s=args.max_wait, argv=argv,
                          blas=args.blas)
        text = race_markdown(result) if args.markdown else format_race(result)
    else:
        gpu = device != "cpu"
        # --quick: the case of the targets and of the README's headline table.
        sizes = args.sizes or ([list(TARGETS["sizes"])] if args.quick else [list(s) for s in DEFAULT_SIZES])
        batches = args.batches or ([TARGETS["batch"]] if args.quick else list(GPU_BATCHES if gpu else CPU_BATCHES))
        repeats = args.repeats or (5 if args.quick else 31)
        min_ms = args.min_sample_ms or (3.0 if args.quick else 25.0)
        warm_ms = args.warmup_ms or (10.0 if args.quick else 200.0)
        settle_ms = args.settle_ms if args.settle_ms is not None else (20.0 if args.quick else 150.0)
        result = run_step_bench(sizes, batches, device=device, names=args.contenders, repeats=repeats,
                                min_sample_s=min_ms / 1e3, warmup_s=warm_ms / 1e3, order=args.order,
                                threads=args.threads, max_foreign=args.max_foreign_load,
                                max_wait_s=args.max_wait, settle_s=settle_ms / 1e3, argv=argv,
                                blas=args.blas, processes=args.processes)
        text = format_markdown(result) if args.markdown else format_table(result)
    if args.json is not None:
        write_json(args.json, result)
    if args.readme is not None:
        update_readme(args.readme, result)
    print(text)
    if args.json is not None:
        log(f"wrote {args.json}")
    return 0


def _check_device(spec: str) -> str:
    """'cpu' or 'cuda[:N]', failing with one clear line when the GPU is not there."""
    from ..backend import get_backend

    text = spec.strip().lower()
    if text == "auto":
        from ..backend import cuda_available

        text = "cuda" if cuda_available() else "cpu"
    if text != "cpu" and not (text == "cuda" or text.startswith("cuda:")):
        raise ConfigError(f"unknown device {spec!r} for nnxp bench: use cpu, cuda or cuda:N")
    backend = get_backend(text)  # raises BackendError("device 'cuda' is not available: ...")
    if backend.name == "cupy" and text.startswith("cuda:"):
        backend.device.use()  # CuPy's and torch's "current device" is then this one
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.set_device(backend.device.id)
        except ImportError:
            pass
    return text
