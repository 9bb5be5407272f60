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
the words that hold the pair (an index pair -> words, which may list a word
twice or after the pair left it: such entries are skipped) and updates the
counts of the pairs those words lose and gain.  The most frequent pair comes
from a heap whose stale entries are re-pushed with their current count when
popped (counts of existing pairs only fall, so the top after that check is
exact).

**Long words** (more than :data:`LONG_WORD` symbols, e.g. a text without
spaces in the byte mode) are doubly linked lists of symbols with, for every
pair, the positions where it occurs; a merge visits only the positions of
its pair, so it costs what it changes, not the word's length.  Short words
are rewritten whole, which costs at most :data:`LONG_WORD` steps.
"""

from __future__ import annotations

import gc
import heapq
import numbers
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..errors import ConfigError, DataError

__all__ = ["Merges", "learn_merges", "merge_pair", "check_merges", "LONG_WORD"]

#: Words with more symbols than this are linked lists with per-pair positions.
LONG_WORD = 48


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


def check_merges(merges: Any) -> int:
    """``merges`` as an int, or a :class:`ConfigError` for a non-integer or negative number."""
    if isinstance(merges, bool) or not isinstance(merges, numbers.Integral):
        raise ConfigError(f"merges must be a whole number, got {merges!r}: pass e.g. merges=5000")
    if merges < 0:
        raise ConfigError(f"merges must be >= 0, got {merges}")
    return int(merges)


class _LongWord:
    """A word as a doubly linked list: ``sym[i]`` (-1 once merged into its left
    neighbour), ``nxt``/``prv`` links (-1 at the ends), and ``at[pair]``: the
    positions i where ``(sym[i], sym[nxt[i]]) == pair``."""

    __slots__ = ("sym", "nxt", "prv", "at")

    def __init__(self, ids: list[int]):
        n = len(ids)
        self.sym = list(ids)
        self.nxt = list(range(1, n)) + [-1]
        self.prv = [-1] + list(range(n - 1))
        at: dict[tuple[int, int], set[int]] = {}
        for i, pair in enumerate(zip(ids, ids[1:])):
            s = at.get(pair)
            if s is None:
                at[pair] = {i}
            else:
                s.add(i)
        self.at = at

    def merge(self, a: int, b: int, new: int, delta: dict, n: int) -> list[tuple[int, int]]:
        """Merge every ``a b`` (left to right); add the pair count changes times ``n`` to
        ``delta``; return the pairs gained (they hold ``new``)."""
        positions = self.at.pop((a, b), None)
        if not positions:
            return []
        sym, nxt, prv, at = self.sym, self.nxt, self.prv, self.at
        gained = []
        for i in sorted(positions):
            j = nxt[i]
            if sym[i] != a or j < 0 or sym[j] != b:  # consumed by the previous merge (a run of a == b)
                continue
            p, q = prv[i], nxt[j]
            if p >= 0:
                old = (sym[p], a)
                if old != (a, b):
                    at[old].discard(p)
                delta[old] = delta.get(old, 0) - n
                pair = (sym[p], new)
                at.setdefault(pair, set()).add(p)
                delta[pair] = delta.get(pair, 0) + n
                gained.append(pair)
            if q >= 0:
                old = (b, sym[q])
                if old != (a, b):
                    at[old].discard(j)
                delta[old] = delta.get(old, 0) - n
                pair = (new, sym[q])
                at.setdefault(pair, set()).add(i)
                delta[pair] = delta.get(pair, 0) + n
                gained.append(pair)
                prv[q] = i
            sym[i] = new
            sym[j] = -1
            nxt[i] = q
        return set(gained)

    def ids(self) -> list[int]:
        out, i, sym, nxt = [], 0, self.sym, self.nxt
        while i >= 0:
            out.append(sym[i])
            i = nxt[i]
        return out


def learn_merges(word_counts: Mapping[str, int], merges: int, *, alphabet: Iterable[str] = (),
                 min_count: int = 1, allow_fewer: bool = False) -> Merges:
    """Learn up to ``merges`` merges from ``word_counts`` (word -> corpus count).

    ``alphabet`` adds initial symbols beyond the words' characters (the 256
    byte characters in the byte-level mode).  Merging stops early when no pair
    occurs ``min_count`` times; with ``allow_fewer=False`` that is an error
    (the corpus cannot give the vocabulary asked for).
    """
    merges = check_merges(merges)
    # The structures hold millions of small tuples and lists and no cycles: the cyclic garbage
    # collector would only walk them again and again.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _learn_merges(word_counts, merges, alphabet, min_count, allow_fewer)
    finally:
        if enabled:
            gc.enable()


def _learn_merges(word_counts: Mapping[str, int], merges: int, alphabet: Iterable[str], min_count: int,
                  allow_fewer: bool) -> Merges:
    if not word_counts:
        raise DataError("the corpus has no words to learn a vocabulary from: give more text")
    chars = set(alphabet)
    for word in word_counts:
        chars.update(word)
    symbols = sorted(chars)
    ids = {s: i for i, s in enumerate(symbols)}
    words: list[Any] = []
    counts: list[int] = []
    pair_counts: dict[tuple[int, int], int] = {}
    where: dict[tuple[int, int], list[int]] = {}
    for wi, (word, n) in enumerate(word_counts.items()):
        n = int(n)
        w = [ids[c] for c in word]
        counts.append(n)
        for pair in zip(w, w[1:]):
            pair_counts[pair] = pair_counts.get(pair, 0) + n
        for pair in set(zip(w, w[1:])):
            lst = where.get(pair)
            if lst is None:
                where[pair] = [wi]
            else:
                lst.append(wi)
        words.append(_LongWord(w) if len(w) > LONG_WORD else w)
    heap = [(-c, pair) for pair, c in pair_counts.items()]
    heapq.heapify(heap)

    done: list[tuple[int, int]] = []
    heappop, heappush = heapq.heappop, heapq.heappush
    while len(done) < merges and heap:
        neg, pair = heappop(heap)
        count = pair_counts.get(pair, 0)
        if count != -neg:  # stale: re-queue with the current count
            if count > 0:
                heappush(heap, (-count, pair))
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
        delta: defaultdict[tuple[int, int], int] = defaultdict(int)
        gained: defaultdict[tuple[int, int], list[int]] = defaultdict(list)
        for wi in where.pop(pair):
            word = words[wi]
            n = counts[wi]
            if type(word) is _LongWord:
                for p in word.merge(a, b, new, delta, n):
                    gained[p].append(wi)
                continue
            merged = _merge_short(word, a, b, new, delta, n, gained, wi)
            if merged is not None:  # None: listed twice, or the pair left this word earlier
                words[wi] = merged
        for p, d in delta.items():
            if d:
                c = pair_counts[p] = pair_counts.get(p, 0) + d
                if d > 0:
                    heappush(heap, (-c, p))
        for p, wis in gained.items():
            lst = where.get(p)
            if lst is None:
                where[p] = wis
            else:
                lst.extend(wis)
        pair_counts.pop(pair, None)

    if len(done) < merges and not allow_fewer:
        raise ConfigError(
            f"the corpus allows only {len(done)} merges (a pair must occur at least {min_count} "
            f"time{'s' if min_count != 1 else ''}), not {merges}: ask for --merges {len(done)} "
            "or fewer, or give more text")
    final_words = [w.ids() if type(w) is _LongWord else list(w) for w in words]
    final = [0] * len(symbols)
    for word, n in zip(final_words, counts):
        for s in word:
            final[s] += n
    return Merges(symbols, [(symbols[a], symbols[b]) for a, b in done], final_words, final)


def _merge_short(word: list[int], a: int, b: int, new: int, delta: dict, n: int, gained: dict,
                 wi: int) -> list[int] | None:
    """``word`` with every ``a b`` merged (left to right), or None if it holds none; adds the
    changes of the other pairs' counts times ``n`` to ``delta`` (at each merge: the pair with the
    symbol before loses ``a`` and gains ``new``, the pair with the symbol after loses ``b`` and
    gains ``new``) and lists ``wi`` under the pairs gained (``delta`` and ``gained`` are
    defaultdicts of int and list)."""
    size = len(word)
    index = word.index
    out: list[int] = []
    start = i = 0
    while i < size - 1:
        try:  # the next a b at or after i
            i = index(a, i)
        except ValueError:
            break
        if i + 1 >= size or word[i + 1] != b:
            i += 1
            continue
        out += word[start:i]
        if out:
            left = out[-1]
            delta[left, a] -= n
            delta[left, new] += n
            gained[left, new].append(wi)
        start = i = i + 2
        if i < size:
            right = word[i]
            delta[b, right] -= n
            delta[new, right] += n
            gained[new, right].append(wi)
        out.append(new)
    if not start:
        return None
    out += word[start:]
    return out


def merge_pair(word: Any, a: Any, b: Any, new: Any) -> Any:
    """``word`` with every ``a b`` (left to right, non-overlapping) replaced by ``new``;
    ``word`` itself (the same object) when it holds no ``a b``."""
    n = len(word)
    i = 0
    # Fast path: find the first occurrence with list.index (in C).
    while True:
        try:
            i = word.index(a, i)
        except ValueError:
            return word
        if i + 1 < n and word[i + 1] == b:
            break
        i += 1
    out = list(word[:i])
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out
