"""Benchmark at scale: byte-level BPE training time and peak memory, nnxp against ``tokenizers``.

``python -m nnxp.text.bench_scale CORPUS [--merges 32000] [--repeats 1] [--pre-tokenizer gpt2] [--json FILE]``

Each run is a fresh Python process that learns ``--merges`` merges
(vocabulary 256 + merges) from CORPUS and reports its wall time (reading the
corpus included) and its peak resident memory (``ru_maxrss``: the
interpreter and imports included).  The runs alternate, nnxp then
``tokenizers``, so drifting load hits both alike.

- **nnxp**: ``learn(corpus_blocks(CORPUS), merges, "byte")``: the corpus
  streamed in blocks of about 64 KiB, chunks counted in one dictionary.
- **tokenizers**: a ``BPE`` model with the same pre-tokenization (nnxp's
  pattern as a ``Split`` pre-tokenizer, then ``ByteLevel`` without its own
  regex), the same 256-byte initial alphabet and vocabulary size, trained by
  ``BpeTrainer`` with ``train_from_iterator`` over the same blocks (so both
  see the same chunks; its Rayon threads use every core).

It checks that both learned the same merges.  The corpus used for the
documentation's table comes from ``scripts/make_text_corpus.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["run", "format_markdown", "main"]


def _child(argv: list[str]) -> None:
    """One measured run (in its own process): prints a JSON line."""
    library, corpus, merges, pre_tokenizer, merges_out = argv[0], argv[1], int(argv[2]), argv[3], argv[4]
    start = time.perf_counter()
    from nnxp.text.corpus import corpus_blocks

    blocks, _ = corpus_blocks(corpus)
    if library == "nnxp":
        from nnxp.text.tokenizer import learn

        tokenizer, _ = learn(blocks, merges, "byte", allow_fewer=True, pre_tokenizer=pre_tokenizer)
        learned = [list(m) for m in tokenizer.merges]
        version = "-"
    else:
        import tokenizers

        from nnxp.text.bench import hf_byte_trainer
        from nnxp.text.pretokenize import PRE_TOKENIZERS

        hf, trainer = hf_byte_trainer(PRE_TOKENIZERS[pre_tokenizer], merges)
        hf.train_from_iterator(blocks, trainer)
        raw = json.loads(hf.to_str())["model"]["merges"]
        learned = [m.split(" ") if isinstance(m, str) else list(m) for m in raw]
        version = tokenizers.__version__
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    Path(merges_out).write_text(json.dumps(learned, ensure_ascii=False), encoding="utf-8")
    print(json.dumps({"seconds": seconds, "peak_rss_bytes": peak, "merges": len(learned), "version": version}))


def _measure(library: str, corpus: Path, merges: int, pre_tokenizer: str, out: Path) -> dict[str, Any]:
    code = "import sys; from nnxp.text.bench_scale import _child; _child(sys.argv[1:])"
    done = subprocess.run([sys.executable, "-c", code, library, str(corpus), str(merges), pre_tokenizer, str(out)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {library} run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(corpus: Path, merges: int = 32000, repeats: int = 1, pre_tokenizer: str = "gpt2",
        work: Path | None = None) -> dict[str, Any]:
    work = work or Path(corpus).parent
    size = sum(p.stat().st_size for p in ([corpus] if corpus.is_file() else corpus.rglob("*")) if p.is_file())
    runs: dict[str, list[dict[str, Any]]] = {"nnxp": [], "tokenizers": []}
    learned = {}
    for _ in range(repeats):
        for library in runs:
            out = work / f".bench_scale_{library}_merges.json"
            runs[library].append(_measure(library, corpus, merges, pre_tokenizer, out))
            learned[library] = json.loads(out.read_text(encoding="utf-8"))
            out.unlink()
    summary = {}
    for library, rs in runs.items():
        seconds = [r["seconds"] for r in rs]
        peaks = [r["peak_rss_bytes"] for r in rs]
        summary[library] = {"seconds": {"median": statistics.median(seconds), "samples": seconds},
                            "peak_rss_bytes": {"median": statistics.median(peaks), "samples": peaks},
                            "bytes_per_corpus_byte": statistics.median(peaks) / size,
                            "merges": rs[-1]["merges"]}
    return {
        "kind": "text-scale", "corpus": str(corpus), "bytes": size, "merges": merges, "pre_tokenizer": pre_tokenizer,
        "repeats": repeats, "results": summary, "same_merges": learned["nnxp"] == learned["tokenizers"],
        "machine": {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cores": os.cpu_count(),
                    "platform": platform.platform(), "python": platform.python_version(),
                    "tokenizers": runs["tokenizers"][-1]["version"], "load_average_1min": os.getloadavg()[0],
                    "tokenizers_threads": os.environ.get("RAYON_NUM_THREADS", f"all cores ({os.cpu_count()})")},
    }


def _size(n: int) -> str:
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"


def format_markdown(result: dict[str, Any]) -> str:
    m, r = result["machine"], result["results"]
    a, b = r["nnxp"], r["tokenizers"]
    ratio = a["seconds"]["median"] / b["seconds"]["median"]
    return "\n".join([
        f"| corpus | merges | library | time (s) | peak RSS (MB) | bytes per corpus byte |",
        "|---|---|---|---|---|---|",
        *(f"| {_size(result['bytes'])} | {result['merges']} | {name} | {x['seconds']['median']:.1f} "
          f"| {x['peak_rss_bytes']['median'] / 1e6:.0f} | {x['bytes_per_corpus_byte']:.2f} |"
          for name, x in (("nnxp", a), (f"tokenizers {m['tokenizers']}", b))),
        "",
        f"Time ratio nnxp / tokenizers: {ratio:.2f}; same merges: {'yes' if result['same_merges'] else 'no'}; "
        f"median of {result['repeats']} run(s) each; {m['date']}, {m['cores']} cores, Python {m['python']}, "
        f"load average {m['load_average_1min']:.1f} at the end.", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnxp.text.bench_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--merges", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--pre-tokenizer", default="gpt2", choices=["gpt2", "gpt4"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not args.corpus.exists():
        print(f"nnxp: error: corpus {args.corpus} not found: make one with scripts/make_text_corpus.py",
              file=sys.stderr)
        return 2
    result = run(args.corpus, args.merges, args.repeats, args.pre_tokenizer)
    print(format_markdown(result))
    if args.json:
        from .._files import atomic_open

        with atomic_open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
