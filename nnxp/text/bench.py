"""Benchmark: nnxp's BPE against Hugging Face ``tokenizers``, side by side in one process.

``python -m nnxp.text.bench [--repeats N] [--merges N] [--json FILE] [--readme FILE]``

On one corpus (default: CPython's documentation text) it measures, for the
byte-level mode with ``--merges`` merges (vocabulary 256 + merges) and the
seed's word mode with every merge the corpus allows:

- training time: nnxp ``learn`` vs ``tokenizers``' ``BpeTrainer`` (same
  pre-tokenization, same alphabet, same vocabulary size), interleaved
  repeats, median and spread;
- whether both learned the same merges;
- compression: tokens per UTF-8 byte of the corpus, each encoding with its own encoder;
- encoding throughput (MB/s): nnxp's ``encode`` (cold: a fresh tokenizer;
  warm: its word cache filled) vs ``tokenizers``' ``encode`` (one string)
  and ``encode_batch`` (lines, in parallel).

``--readme`` replaces the text between ``<!-- nnxp-bench:text -->`` and
``<!-- /nnxp-bench:text -->`` in that file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from .._files import atomic_open
from ..errors import DataError
from .corpus import read_corpus
from .tokenizer import BYTE_CHUNK_PATTERN, Tokenizer, learn, words_of

__all__ = ["run", "format_markdown", "main", "hf_byte_trainer"]


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _stats(samples: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "samples": samples}


def _hf_merges(hf) -> list[tuple[str, str]]:
    merges = json.loads(hf.to_str())["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


def hf_byte_trainer(pattern: str, merges: int):
    """(a ``tokenizers`` BPE tokenizer splitting as nnxp's byte mode does -- ``pattern`` as a
    ``Split`` pre-tokenizer, then ``ByteLevel`` without its own regex -- and a ``BpeTrainer`` for
    the 256 bytes + ``merges``)."""
    import tokenizers
    from tokenizers import Regex, models, pre_tokenizers, trainers

    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=256 + merges, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    return hf, trainer


def run(text: str, corpus_name: str, merges: int = 5000, repeats: int = 5) -> dict[str, Any]:
    try:
        import tokenizers
        from tokenizers import Regex, models, pre_tokenizers, trainers
    except ImportError:
        raise DataError("the text benchmark compares with Hugging Face tokenizers: pip install tokenizers") from None

    def hf_byte():
        hf, trainer = hf_byte_trainer(BYTE_CHUNK_PATTERN, merges)
        hf.train_from_iterator([text], trainer)
        return hf

    word_merges = len(learn(text, 10**9, "word", allow_fewer=True)[1].merges)  # all the corpus allows
    kept = [w for w, n in Counter(words_of(text)).items() if n > 1 for _ in range(n)]
    word_alphabet = len({c for w in kept for c in w})

    def hf_word():
        hf = tokenizers.Tokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        trainer = trainers.BpeTrainer(vocab_size=word_alphabet + word_merges, show_progress=False)
        hf.train_from_iterator(kept, trainer)
        return hf

    n_bytes = len(text.encode("utf-8"))
    lines = text.splitlines(keepends=True)
    cases = {}
    for mode, n_merges, hf_train in (("byte", merges, hf_byte), ("word", word_merges, hf_word)):
        mine_t, theirs_t = [], []
        mine = theirs = None
        for _ in range(repeats):  # interleaved, so drifting load hits both alike
            t, (mine, _) = _timed(lambda: learn(text, n_merges, mode))
            mine_t.append(t)
            t, theirs = _timed(hf_train)
            theirs_t.append(t)
        # The word mode's tokenizers model is trained on the kept words; it encodes with its own pieces.
        if mode == "word":
            theirs.normalizer = tokenizers.normalizers.Lowercase()
            theirs.pre_tokenizer = pre_tokenizers.Split(Regex(r"\p{L}+"), "removed", invert=True)
        mine_tokens = len(mine.encode(text))
        theirs_tokens = len(theirs.encode(text).ids)
        enc = {"nnxp_cold": [], "nnxp_warm": [], "tokenizers": [], "tokenizers_batch": []}
        for _ in range(repeats):
            fresh = Tokenizer(mine.symbols, mine.merges, mode)
            enc["nnxp_cold"].append(_timed(lambda: fresh.encode(text))[0])
            enc["nnxp_warm"].append(_timed(lambda: fresh.encode(text))[0])
            enc["tokenizers"].append(_timed(lambda: theirs.encode(text))[0])
            enc["tokenizers_batch"].append(_timed(lambda: theirs.encode_batch(lines))[0])
        cases[mode] = {
            "merges": n_merges, "vocabulary": {"nnxp": len(mine), "tokenizers": theirs.get_vocab_size()},
            "train_seconds": {"nnxp": _stats(mine_t), "tokenizers": _stats(theirs_t)},
            "same_merges": mine.merges == _hf_merges(theirs),
            "tokens": {"nnxp": mine_tokens, "tokenizers": theirs_tokens},
            "tokens_per_byte": {"nnxp": mine_tokens / n_bytes, "tokenizers": theirs_tokens / n_bytes},
            "encode_mb_per_s": {k: n_bytes / 1e6 / statistics.median(v) for k, v in enc.items()},
        }
    return {
        "kind": "text", "corpus": corpus_name, "bytes": n_bytes, "repeats": repeats, "cases": cases,
        "machine": {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cpu": _cpu_model(),
                    "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "tokenizers": tokenizers.__version__, "load_average_1min": os.getloadavg()[0],
                    "tokenizers_threads": os.environ.get("RAYON_NUM_THREADS", f"all cores ({os.cpu_count()})")},
    }


def format_markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    out = [f"Corpus: {result['corpus']}, {result['bytes']:,} bytes. {m['date']}; {m['cpu']}, {m['cores']} cores, "
           f"{m['platform']}; load average {m['load_average_1min']:.1f} at the end; Python {m['python']}, tokenizers {m['tokenizers']} "
           f"(threads: {m['tokenizers_threads']}); median of {result['repeats']} interleaved runs.", "",
           "| mode | merges | vocabulary | train nnxp (s) | train tokenizers (s) | time ratio | same merges "
           "| tokens/byte nnxp | tokens/byte tokenizers | encode nnxp MB/s (cold / warm) "
           "| encode tokenizers MB/s (one string / batch of lines) |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for mode, c in result["cases"].items():
        a, b = c["train_seconds"]["nnxp"]["median"], c["train_seconds"]["tokenizers"]["median"]
        e = c["encode_mb_per_s"]
        tpb = c["tokens_per_byte"]
        out.append(f"| {mode} | {c['merges']} | {c['vocabulary']['nnxp']} | {a:.3f} | {b:.3f} | {a / b:.2f}x "
                   f"| {'yes' if c['same_merges'] else 'no'} | {tpb['nnxp']:.4f} | {tpb['tokenizers']:.4f} "
                   f"| {e['nnxp_cold']:.2f} / {e['nnxp_warm']:.2f} | {e['tokenizers']:.2f} / {e['tokenizers_batch']:.2f} |")
    return "\n".join(out) + "\n"


def update_readme(path: Path, markdown: str) -> None:
    start, end = "<!-- nnxp-bench:text -->", "<!-- /nnxp-bench:text -->"
    text = path.read_text(encoding="utf-8")
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise DataError(f"{path} has no lines {start} ... {end} to put the text results between: add them")
    with atomic_open(path, "w") as f:
        f.write(text[:i + len(start)] + "\n" + markdown + text[j:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnxp.text.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="?", type=Path, help="UTF-8 file or directory (default: CPython's docs)")
    parser.add_argument("--merges", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--readme", type=Path)
    args = parser.parse_args(argv)
    try:
        text, name = read_corpus(args.corpus)
        result = run(text, name, args.merges, args.repeats)
        markdown = format_markdown(result)
        print(markdown)
        if args.json:
            with atomic_open(args.json, "w") as f:
                json.dump(result, f, indent=1)
        if args.readme:
            update_readme(args.readme, markdown)
    except DataError as exc:
        print(f"nnxp: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
