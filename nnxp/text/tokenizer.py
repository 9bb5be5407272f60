"""A BPE tokenizer: the seed's word mode and a lossless byte-level mode; tokenizers-compatible files.

Two modes, chosen when learning:

``word`` (the seed's): the text is lower-cased and split into alphabetic words
(runs of Unicode letters, ``str.isalpha``); everything else (digits,
punctuation, spaces) is dropped, and words seen once in the training corpus
are dropped from training.  Encoding is therefore lossy: ``decode`` gives the
words' letters run together.  Characters never seen in training are skipped.

``byte`` (GPT-2 style): the text's UTF-8 bytes, each shown as one printable
character (GPT-2's byte-to-unicode table, a space is ``Ġ``), split first into
chunks by a pre-tokenizer pattern (``gpt2``, the default, or ``gpt4``: see
:mod:`nnxp.text.pretokenize`) so merges never cross them.  All 256 bytes are
in the vocabulary, so ``decode(encode(text)) == text`` for any text.

Encoding applies the learned merges to each word/chunk, lowest rank first
(the leftmost occurrence first among equals), as GPT-2 and ``tokenizers`` do.

Files: :meth:`Tokenizer.save` writes a Hugging Face ``tokenizer.json``
(model type BPE, vocab and merges, with the matching normalizer,
pre-tokenizer and decoder) that ``tokenizers.Tokenizer.from_file`` loads and
encodes to the same ids; :meth:`Tokenizer.load` reads it back, checked field
by field (:mod:`nnxp.text.schema`).  The encoder remembers the ids of the last
:data:`CACHE_SIZE` distinct pieces it met (a least-recently-used cache).
"""

from __future__ import annotations

import heapq
import json
import numbers
import os
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from .._files import write_file
from ..errors import ConfigError, DataError
from ..io.read import read_text
from .bpe import Merges, check_merges, learn_merges, merge_pair
from .pretokenize import (BYTE_CHUNK_PATTERN, BYTE_TO_CHAR, CHAR_TO_BYTE, GPT4_CHUNK_PATTERN, PRE_TOKENIZERS,
                          byte_chars, byte_pre_tokenizer_json, chunk_finder, chunks_of, count_pieces, lower,
                          words_of)

__all__ = ["Tokenizer", "learn", "words_of", "chunks_of", "BYTE_CHUNK_PATTERN", "GPT4_CHUNK_PATTERN", "MODES",
           "PRE_TOKENIZERS", "CACHE_SIZE"]

MODES = ("word", "byte")
#: How many distinct words/chunks an encoder remembers (least recently used ones are forgotten).
CACHE_SIZE = 1 << 16
#: Pieces with more symbols than this are encoded with a heap (see Tokenizer._bpe_long).
LONG_PIECE = 64


class Tokenizer:
    """BPE symbols (id -> string) and ranked merges, in ``mode`` "word" or "byte"; the byte mode
    splits text with ``pre_tokenizer`` "gpt2" (default) or "gpt4"."""

    def __init__(self, symbols: Sequence[str], merges: Sequence[tuple[str, str]], mode: str = "word",
                 pre_tokenizer: str = "gpt2"):
        if mode not in MODES:
            raise ConfigError(f"unknown tokenizer mode {mode!r}: choose word or byte")
        if pre_tokenizer not in PRE_TOKENIZERS:
            raise ConfigError(f"unknown pre-tokenizer {pre_tokenizer!r}: choose {' or '.join(PRE_TOKENIZERS)}")
        self.mode = mode
        self.pre_tokenizer = pre_tokenizer
        self.symbols = list(symbols)
        self.ids = {s: i for i, s in enumerate(self.symbols)}
        self.merges = [tuple(m) for m in merges]
        self.ranks: dict[tuple[str, str], int] = {}
        for rank, pair in enumerate(self.merges):
            self.ranks.setdefault(pair, rank)
        # A bounded cache: piece (as it appears in the text) -> ids.
        self._piece_ids = lru_cache(maxsize=CACHE_SIZE)(self._encode_piece)

    def __len__(self) -> int:
        return len(self.symbols)

    def __repr__(self) -> str:
        split = f", {self.pre_tokenizer} pre-tokenizer" if self.mode == "byte" else ""
        return f"Tokenizer({self.mode} mode{split}, {len(self)} symbols, {len(self.merges)} merges)"

    # -- encoding -------------------------------------------------------------------
    def pieces(self, text: str) -> list[str]:
        """The words (word mode) or byte-character chunks (byte mode) BPE works on."""
        return words_of(text) if self.mode == "word" else chunks_of(text, self.pre_tokenizer)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        if not isinstance(text, str):
            raise ConfigError(f"encode takes a str, got {type(text).__name__}")
        from .corpus import text_blocks

        out: list[int] = []
        piece_ids = self._piece_ids
        split = words_of if self.mode == "word" else chunk_finder(self.pre_tokenizer)
        for block in text_blocks([text], max_run=max(len(text), 1)):  # never all the pieces at once
            for piece in split(block):
                out.extend(piece_ids(piece))
        return out

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        return tuple(self._bpe(piece if self.mode == "word" else byte_chars(piece)))

    def _bpe(self, piece: str) -> list[int]:
        parts = [c for c in piece if c in self.ids]  # word mode: unseen characters are skipped
        if len(parts) > LONG_PIECE:
            return [self.ids[p] for p in self._bpe_long(parts)]
        ranks = self.ranks
        while len(parts) > 1:
            best, best_rank = None, None
            for pair in zip(parts, parts[1:]):
                r = ranks.get(pair)
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = pair, r
            if best is None:
                break
            a, b = best
            parts = merge_pair(parts, a, b, a + b)
        return [self.ids[p] for p in parts]

    def _bpe_long(self, parts: list[str]) -> list[str]:
        """:meth:`_bpe` for a long piece: a linked list and a heap of (rank, position), so each merge
        costs what it changes (lowest rank first, leftmost first among equals, as :meth:`_bpe`)."""
        ranks = self.ranks
        sym: list = list(parts)
        n = len(sym)
        nxt = list(range(1, n)) + [-1]
        prv = [-1] + list(range(n - 1))
        heap = [(r, i) for i, pair in enumerate(zip(sym, sym[1:])) if (r := ranks.get(pair)) is not None]
        heapq.heapify(heap)
        while heap:
            rank, i = heapq.heappop(heap)
            j = nxt[i] if sym[i] is not None else -1
            if j < 0 or ranks.get((sym[i], sym[j])) != rank:  # stale: merged away or changed
                continue
            sym[i] += sym[j]
            sym[j] = None
            q = nxt[i] = nxt[j]
            if q >= 0:
                prv[q] = i
                r = ranks.get((sym[i], sym[q]))
                if r is not None:
                    heapq.heappush(heap, (r, i))
            p = prv[i]
            if p >= 0:
                r = ranks.get((sym[p], sym[i]))
                if r is not None:
                    heapq.heappush(heap, (r, p))
        return [s for s in sym if s is not None]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` (byte mode: exact; invalid UTF-8 from a partial sequence shows as U+FFFD).

        Every id must be a whole number in ``0 .. len(self) - 1`` (a :class:`ConfigError` otherwise).
        """
        symbols, n = self.symbols, len(self.symbols)
        parts = []
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, numbers.Integral):
                raise ConfigError(f"token id {i!r} is not a whole number: ids are integers 0 to {n - 1}")
            if not 0 <= i < n:
                raise ConfigError(f"token id {int(i)} is outside the vocabulary of {n} tokens (0 to {n - 1})")
            parts.append(symbols[i])
        text = "".join(parts)
        if self.mode == "word":
            return text
        return bytes(CHAR_TO_BYTE[c] for c in text).decode("utf-8", errors="replace")

    def token_id(self, token: str) -> int:
        """The id of one token as written (word mode: lower-cased; byte mode: a space may be written ' ')."""
        try:
            key = lower(token) if self.mode == "word" else byte_chars(token)
        except UnicodeEncodeError:  # a lone surrogate, e.g. an undecodable command-line argument
            raise ConfigError(f"token {token!r} is not valid Unicode text (undecodable bytes?): "
                              "give the token as UTF-8 text") from None
        if key not in self.ids:
            raise ConfigError(f"unknown token {token!r}: not one of the {len(self)} tokens of this "
                              "vocabulary (see `nnxp text vocab` for them)")
        return self.ids[key]

    def token_text(self, i: int) -> str:
        """How token ``i`` reads (byte mode: its bytes decoded, spaces shown as spaces)."""
        s = self.symbols[i]
        return s if self.mode == "word" else bytes(CHAR_TO_BYTE[c] for c in s).decode("utf-8", errors="replace")

    # -- files ----------------------------------------------------------------------
    def to_json(self) -> dict:
        """The Hugging Face ``tokenizer.json`` structure."""
        if self.mode == "word":
            normalizer = {"type": "Lowercase"}
            pre = {"type": "Split", "pattern": {"Regex": r"\p{L}+"}, "behavior": "Removed", "invert": True}
            decoder = {"type": "Fuse"}
        else:
            normalizer = None
            pre, decoder = byte_pre_tokenizer_json(self.pre_tokenizer)
        return {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
            "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": None, "decoder": decoder,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False, "vocab": self.ids,
                      "merges": [f"{a} {b}" for a, b in self.merges]},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``tokenizer.json`` atomically."""
        path = Path(path)
        data = json.dumps(self.to_json(), ensure_ascii=False, indent=1).encode("utf-8")
        return write_file(path, data)

    @classmethod
    def from_json(cls, spec: dict, source: str = "tokenizer") -> "Tokenizer":
        """A tokenizer from a ``tokenizer.json`` structure, checked field by field
        (:func:`nnxp.text.schema.check_tokenizer_json`): one :class:`DataError` naming the field."""
        from .schema import check_tokenizer_json

        symbols, merges, mode, pre_tokenizer = check_tokenizer_json(spec, source)
        return cls(symbols, merges, mode, pre_tokenizer)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        path = Path(path)
        try:
            spec = json.loads(read_text(path, "tokenizer"))
        except FileNotFoundError:
            raise DataError(f"tokenizer file {path} not found: check the path") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read {path} as tokenizer.json: {exc}") from None
        return cls.from_json(spec, str(path))


def learn(text: str | Iterable[str], merges: int = 5000, mode: str = "word", *, allow_fewer: bool = False,
          pre_tokenizer: str = "gpt2") -> tuple[Tokenizer, Merges]:
    """Learn a tokenizer from ``text``: (the tokenizer, the training result with symbol counts).

    ``text`` is a string or an iterable of blocks cut where no chunk crosses
    (:func:`nnxp.text.corpus.corpus_blocks` streams a file so).  Word mode
    follows the seed: words seen once are dropped before merging.
    """
    merges = check_merges(merges)
    if mode not in MODES:
        raise ConfigError(f"unknown tokenizer mode {mode!r}: choose word or byte")
    chunk_finder(pre_tokenizer)  # an unknown or unavailable pre-tokenizer fails before any work
    if mode == "word" and pre_tokenizer != "gpt2":
        raise ConfigError(f"the {pre_tokenizer} pre-tokenizer is for the byte mode (the word mode splits text "
                          "into runs of letters): add --mode byte")
    if isinstance(text, str):
        from .corpus import text_blocks

        blocks = text_blocks([text], max_run=max(len(text), 1))
    else:
        blocks = text
    counts = count_pieces(blocks, mode, pre_tokenizer)
    if mode == "word":
        counts = {w: n for w, n in counts.items() if n > 1}
        if not counts:
            raise DataError("the corpus has no word that occurs twice (the word mode drops words seen "
                            "once): give more English text, or use the byte mode")
        result = learn_merges(counts, merges, allow_fewer=allow_fewer)
    else:
        if not counts:
            raise DataError("the corpus has no text to learn a vocabulary from: give some UTF-8 text")
        result = learn_merges(counts, merges, alphabet=BYTE_TO_CHAR.values(), allow_fewer=allow_fewer)
    return Tokenizer(result.symbols, result.merges, mode, pre_tokenizer), result
