"""A naive BPE trainer, written to be obviously right, for differential tests.

Before every merge it recounts every adjacent pair of every word from
scratch (weighted by the word's count, overlapping positions counted), takes
the most frequent pair, ties going to the smallest (id of left, id of right)
-- ids numbering the sorted alphabet, then new symbols in the order they were
made, a result that spells an existing symbol keeping that symbol's id --
and rewrites every word left to right.  Quadratic and slow; only for small
corpora.
"""

from __future__ import annotations

from collections import Counter


def naive_bpe(word_counts: dict[str, int], merges: int, alphabet=()) -> tuple[list[str], list[tuple[str, str]]]:
    """(symbols by id, merges as symbol-string pairs)."""
    symbols = sorted(set(alphabet) | {c for w in word_counts for c in w})
    words = {w: list(w) for w in word_counts}
    out = []
    for _ in range(merges):
        counts: Counter = Counter()
        for w, parts in words.items():
            for pair in zip(parts, parts[1:]):
                counts[pair] += word_counts[w]
        if not counts:
            break
        rank = {s: i for i, s in enumerate(symbols)}
        a, b = min(counts, key=lambda p: (-counts[p], rank[p[0]], rank[p[1]]))
        out.append((a, b))
        if a + b not in rank:
            symbols.append(a + b)
        for w, parts in words.items():
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            words[w] = merged
    return symbols, out


def tokenizers_byte_merges(text: str, merges: int, pattern: str) -> list[tuple[str, str]]:
    """The merges Hugging Face ``tokenizers``' ``BpeTrainer`` learns from ``text`` in byte mode:
    chunks by ``pattern``, then bytes, vocabulary 256 + merges."""
    import json

    from nnxp.text.bench import hf_byte_trainer

    hf, trainer = hf_byte_trainer(pattern, merges)
    hf.train_from_iterator([text], trainer)
    learned = json.loads(hf.to_str())["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned]
