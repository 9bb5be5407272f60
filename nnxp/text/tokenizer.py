"""A BPE tokenizer: the seed's word mode and a lossless byte-level mode; tokenizers-compatible files.

Two modes, chosen when learning:

``word`` (the seed's): the text is lower-cased and split into alphabetic words
(runs of Unicode letters, ``str.isalpha``); everything else (digits,
punctuation, spaces) is dropped, and words seen once in the training corpus
are dropped from training.  Encoding is therefore lossy: ``decode`` gives the
words' letters run together.  Characters never seen in training are skipped.

``byte`` (GPT-2 style): the text's UTF-8 bytes, each shown as one printable
character (GPT-2's byte-to-unicode table, a space is ``Ġ``), split first into
chunks -- an optional space and a run of letters (any non-ASCII character
counts as a letter), of digits or of other ASCII symbols; runs of whitespace;
English contractions -- so merges never cross them.  All 256 bytes are in
the vocabulary, so ``decode(encode(text)) == text`` for any text.  The chunk
pattern uses ASCII classes only, so Python's ``re`` and the Oniguruma engine
of Hugging Face ``tokenizers`` split every text identically.

Encoding applies the learned merges to each word/chunk, lowest rank first
(the leftmost occurrence first among equals), as GPT-2 and ``tokenizers`` do.

Files: :meth:`Tokenizer.save` writes a Hugging Face ``tokenizer.json``
(model type BPE, vocab and merges, with the matching normalizer,
pre-tokenizer and decoder) that ``tokenizers.Tokenizer.from_file`` loads and
encodes to the same ids; :meth:`Tokenizer.load` reads it back.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Sequence

from .._files import write_file
from ..errors import ConfigError, DataError
from ..io.read import read_text
from .bpe import Merges, learn_merges, merge_pair

__all__ = ["Tokenizer", "learn", "words_of", "chunks_of", "BYTE_CHUNK_PATTERN", "MODES"]

MODES = ("word", "byte")

_LETTERS = re.compile(r"[^\W\d_]+")  # letters, plus non-decimal numerics such as '½' (filtered below)
#: The byte mode's chunks (ASCII classes only: the same in Python's re and Oniguruma).
_L = r"[^\x00-@\[-`{-\x7f]"             # ASCII letters and every non-ASCII character
_O = r"[\x00-\x08\x0e-\x1f!-/:-@\[-`{-\x7f]"  # other ASCII, not whitespace
_S = r"[\t\n\x0b\x0c\r ]"
BYTE_CHUNK_PATTERN = (rf"'(?:[sdmt]|ll|ve|re)| ?{_L}+| ?[0-9]+| ?{_O}+|{_S}+(?![^\t\n\x0b\x0c\r ])|{_S}+")
_CHUNKS = re.compile(BYTE_CHUNK_PATTERN)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table: printable bytes stand for themselves, the others map to chr(256 + n)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, n = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


BYTE_TO_CHAR = _bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}
_BYTE_TRANSLATION = [BYTE_TO_CHAR[b] for b in range(256)]


def _lower(text: str) -> str:
    """Lower case character by character (no final-sigma rule), as ``tokenizers``' Lowercase does."""
    text = text.lower()
    return text.replace("ς", "σ") if "Σ" in text or "ς" in text else text


def words_of(text: str) -> list[str]:
    """The word mode's words: lower-cased runs of letters (``str.isalpha``)."""
    words = []
    for run in _LETTERS.findall(_lower(text)):
        if run.isalpha():
            words.append(run)
        else:  # split off numerics such as '²' that \w counts but isalpha does not
            words.extend(w for w in re.split(r"[^\w]|\d|_", "".join(c if c.isalpha() else " " for c in run)) if w)
    return words


def chunks_of(text: str) -> list[str]:
    """The byte mode's chunks, each as byte characters; their concatenation is the text's UTF-8."""
    return ["".join(_BYTE_TRANSLATION[b] for b in chunk.encode("utf-8")) for chunk in _CHUNKS.findall(text)]


class Tokenizer:
    """BPE symbols (id -> string) and ranked merges, in ``mode`` "word" or "byte"."""

    def __init__(self, symbols: Sequence[str], merges: Sequence[tuple[str, str]], mode: str = "word"):
        if mode not in MODES:
            raise ConfigError(f"unknown tokenizer mode {mode!r}: choose word or byte")
        self.mode = mode
        self.symbols = list(symbols)
        self.ids = {s: i for i, s in enumerate(self.symbols)}
        self.merges = [tuple(m) for m in merges]
        self.ranks: dict[tuple[str, str], int] = {}
        for rank, pair in enumerate(self.merges):
            self.ranks.setdefault(pair, rank)
        self._cache: dict[str, list[int]] = {}

    def __len__(self) -> int:
        return len(self.symbols)

    def __repr__(self) -> str:
        return f"Tokenizer({self.mode} mode, {len(self)} symbols, {len(self.merges)} merges)"

    # -- encoding -------------------------------------------------------------------
    def pieces(self, text: str) -> list[str]:
        """The words (word mode) or byte-character chunks (byte mode) BPE works on."""
        return words_of(text) if self.mode == "word" else chunks_of(text)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        out: list[int] = []
        cache = self._cache
        for piece in self.pieces(text):
            ids = cache.get(piece)
            if ids is None:
                ids = cache[piece] = self._bpe(piece)
            out.extend(ids)
        return out

    def _bpe(self, piece: str) -> list[int]:
        parts = [c for c in piece if c in self.ids]  # word mode: unseen characters are skipped
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

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` (byte mode: exact; invalid UTF-8 from a partial sequence shows as U+FFFD)."""
        try:
            text = "".join(self.symbols[int(i)] for i in ids)
        except IndexError:
            bad = next(int(i) for i in ids if not 0 <= int(i) < len(self.symbols))
            raise ConfigError(f"token id {bad} is outside the vocabulary of {len(self)} tokens") from None
        if self.mode == "word":
            return text
        return bytes(CHAR_TO_BYTE[c] for c in text).decode("utf-8", errors="replace")

    def token_id(self, token: str) -> int:
        """The id of one token as written (word mode: lower-cased; byte mode: a space may be written ' ')."""
        key = _lower(token) if self.mode == "word" else "".join(_BYTE_TRANSLATION[b] for b in token.encode())
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
            byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                          "use_regex": False}
            pre = {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": BYTE_CHUNK_PATTERN}, "behavior": "Isolated",
                 "invert": False}, byte_level]}
            decoder = byte_level
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
        try:
            model = spec["model"]
            if model.get("type") != "BPE":
                raise ValueError(f"model type {model.get('type')!r}, not BPE")
            vocab = model["vocab"]
            symbols = sorted(vocab, key=vocab.__getitem__)
            if [vocab[s] for s in symbols] != list(range(len(symbols))):
                raise ValueError("vocabulary ids are not 0..n-1")
            merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
            if any(len(m) != 2 for m in merges):
                raise ValueError("a merge is not a pair")
            mode = "word" if (spec.get("normalizer") or {}).get("type") == "Lowercase" else "byte"
            if mode == "byte" and json.dumps(spec.get("pre_tokenizer")) != json.dumps(
                    cls([], [], "byte").to_json()["pre_tokenizer"]):
                raise ValueError("its pre-tokenizer is not nnxp's")
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise DataError(f"{source} is not a BPE tokenizer.json written by nnxp ({exc})") from None
        return cls(symbols, merges, mode)

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


def learn(text: str, merges: int = 5000, mode: str = "word", *, allow_fewer: bool = False) -> tuple[Tokenizer, Merges]:
    """Learn a tokenizer from ``text``: (the tokenizer, the training result with symbol counts).

    Word mode follows the seed: words seen once are dropped before merging.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown tokenizer mode {mode!r}: choose word or byte")
    if mode == "word":
        counts = {w: n for w, n in Counter(words_of(text)).items() if n > 1}
        if not counts:
            raise DataError("the corpus has no word that occurs twice (the word mode drops words seen "
                            "once): give more English text, or use the byte mode")
        result = learn_merges(counts, merges, allow_fewer=allow_fewer)
    else:
        result = learn_merges(Counter(chunks_of(text)), merges, alphabet=BYTE_TO_CHAR.values(),
                              allow_fewer=allow_fewer)
    return Tokenizer(result.symbols, result.merges, mode), result
