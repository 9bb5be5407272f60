"""Learning byte-pair-encoding merges (Sennrich et al. 2015) with incremental pair counts.

Input is a dictionary word -> count, each word a string of symbols (characters
in the word mode, byte characters in the byte-level mode).  Every word starts
as its characters; then, ``merges`` times, the most frequent adjacent symbol
pair -- its frequency summed over the corpus, i.e. weighted by word counts,
every adjacent position counted (``aaa`` holds the pair ``a a`` twice) -- is
replaced everywhere by one new symbol, left to right.

**Tie-breaking** (deterministic, and the same as Hugging Face ``tokenizers``'
``BpeTrainer``, so both learn the same merges from the same words): every
symbol has an id, the initial alphabet sorted by code point first, then each
new symbol in the order it was made; among pairs of equal frequency the one
with the smallest ``(id of left, id of right)`` wins.  A merge whose result
spells an existing symbol reuses that symbol's id.

**Incremental counts**: the pair counts are built once; a merge rewrites only
the words that hold the pair (an index pair -> words) and updates the counts
of the pairs those words lose and gain.  The most frequent pair comes from a
heap whose stale entries are re-pushed with their current count when popped
(counts of existing pairs only fall, so the top after that check is exact).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..errors import ConfigError, DataError

__all__ = ["Merges", "learn_merges", "merge_pair"]


@dataclass
class Merges:
    """What training learned.

    symbols : every symbol by id: the alphabet (sorted), then the merged symbols.
    merges : the merged pairs of symbol strings, in order (their rank).
    words : each training word's final symbol ids (same order as the input).
    counts : the corpus frequency of each symbol id in the final segmentation
        (0 for symbols that only appear inside longer ones).
    """

    symbols: list[str]
    merges: list[tuple[str, str]]
    words: list[list[int]]
    counts: list[int]

    def vocabulary_lines(self) -> list[str]:
        """The seed's output: ``count symbol`` for every symbol still in use, most frequent first
        (ties in symbol order)."""
        order = sorted((i for i, c in enumerate(self.counts) if c > 0),
                       key=lambda i: (-self.counts[i], self.symbols[i]))
        return [f"{self.counts[i]} {self.symbols[i]}" for i in order]


def learn_merges(word_counts: Mapping[str, int], merges: int, *, alphabet: Iterable[str] = (),
                 min_count: int = 1, allow_fewer: bool = False) -> Merges:
    """Learn up to ``merges`` merges from ``word_counts`` (word -> corpus count).

    ``alphabet`` adds initial symbols beyond the words' characters (the 256
    byte characters in the byte-level mode).  Merging stops early when no pair
    occurs ``min_count`` times; with ``allow_fewer=False`` that is an error
    (the corpus cannot give the vocabulary asked for).
    """
    if merges < 0:
        raise ConfigError(f"merges must be >= 0, got {merges}")
    if not word_counts:
        raise DataError("the corpus has no words to learn a vocabulary from: give more text")
    symbols = sorted(set(alphabet).union(*map(set, word_counts)))
    ids = {s: i for i, s in enumerate(symbols)}
    words = [[ids[c] for c in word] for word in word_counts]
    counts = [int(n) for n in word_counts.values()]

    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for wi, (word, n) in enumerate(zip(words, counts)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += n
            where[pair].add(wi)
    heap = [(-c, pair) for pair, c in pair_counts.items()]
    heapq.heapify(heap)

    done: list[tuple[int, int]] = []
    while len(done) < merges and heap:
        neg, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if count != -neg:  # stale: re-queue with the current count
            if count > 0:
                heapq.heappush(heap, (-count, pair))
            continue
        if count < min_count:
            break
        a, b = pair
        text = symbols[a] + symbols[b]
        new = ids.get(text)
        if new is None:
            new = ids[text] = len(symbols)
            symbols.append(text)
        done.append(pair)
        delta: dict[tuple[int, int], int] = defaultdict(int)
        gained: dict[tuple[int, int], list[int]] = defaultdict(list)
        for wi in where.pop(pair):
            word = words[wi]
            merged = merge_pair(word, a, b, new)
            if merged is word:  # the index is a superset: the pair left this word earlier
                continue
            n = counts[wi]
            for p in zip(word, word[1:]):
                delta[p] -= n
            for p in zip(merged, merged[1:]):
                delta[p] += n
                if new in p:
                    gained[p].append(wi)
            words[wi] = merged
        for p, d in delta.items():
            if d:
                pair_counts[p] += d
                if d > 0:
                    heapq.heappush(heap, (-pair_counts[p], p))
        for p, wis in gained.items():
            where[p].update(wis)
        pair_counts.pop(pair, None)

    if len(done) < merges and not allow_fewer:
        raise ConfigError(
            f"the corpus allows only {len(done)} merges (a pair must occur at least {min_count} "
            f"time{'s' if min_count != 1 else ''}), not {merges}: ask for --merges {len(done)} "
            "or fewer, or give more text")
    final = [0] * len(symbols)
    for word, n in zip(words, counts):
        for s in word:
            final[s] += n
    return Merges(symbols, [(symbols[a], symbols[b]) for a, b in done], words, final)


def merge_pair(word: list, a: Any, b: Any, new: Any) -> list:
    """``word`` with every ``a b`` (left to right, non-overlapping) replaced by ``new``;
    ``word`` itself (the same object) when it holds no ``a b``."""
    out: list = []
    i, n, found = 0, len(word), False
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
            found = True
        else:
            out.append(word[i])
            i += 1
    return out if found else word
