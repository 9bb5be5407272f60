"""Before BPE: lower-casing, the word mode's words, the byte mode's chunks, streaming counts.

``word`` mode: the text is lower-cased character by character (as Hugging
Face ``tokenizers``' ``Lowercase`` normalizer does: Rust's ``char::to_lowercase``
on each character, so a capital ``Σ`` always becomes ``σ`` -- never the final
``ς`` that Python's ``str.lower`` picks at the end of a word -- while an ``ς``
in the text stays ``ς``; ``İ`` becomes ``i̇``, ``ß`` stays ``ß``) and split
into runs of letters (``str.isalpha``).

``byte`` mode: the text is split into chunks by a pre-tokenizer pattern, then
each chunk's UTF-8 bytes are shown as one printable character each (GPT-2's
byte-to-unicode table; a space is ``Ġ``).  Two patterns:

- ``gpt2`` (the default): an optional space and a run of letters (any
  non-ASCII character counts as a letter), of digits or of other ASCII
  symbols; runs of whitespace; English contractions.  ASCII classes only, so
  Python's ``re`` and the Oniguruma engine of ``tokenizers`` split every text
  identically.
- ``gpt4``: the pattern of OpenAI's cl100k_base (GPT-4): Unicode letters and
  numbers (``\\p{L}``, ``\\p{N}``, digits in groups of at most three),
  contractions in any case, punctuation with its following line breaks.  It
  needs the ``regex`` package (``pip install regex``, or nnxp's ``text`` extra).

:func:`count_pieces` counts the words or chunks of a stream of text blocks
(see :func:`nnxp.text.corpus.text_blocks`) in one dictionary, so the corpus
is never held as a list of chunks.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable, Iterable

from ..errors import ConfigError

__all__ = ["BYTE_CHUNK_PATTERN", "GPT4_CHUNK_PATTERN", "PRE_TOKENIZERS", "BYTE_TO_CHAR", "CHAR_TO_BYTE",
           "lower", "words_of", "chunks_of", "chunk_finder", "byte_chars", "count_pieces",
           "byte_pre_tokenizer_json"]

#: The ``gpt2`` chunks (ASCII classes only: the same in Python's re and Oniguruma).
_L = r"[^\x00-@\[-`{-\x7f]"             # ASCII letters and every non-ASCII character
_O = r"[\x00-\x08\x0e-\x1f!-/:-@\[-`{-\x7f]"  # other ASCII, not whitespace
_S = r"[\t\n\x0b\x0c\r ]"
BYTE_CHUNK_PATTERN = (rf"'(?:[sdmt]|ll|ve|re)| ?{_L}+| ?[0-9]+| ?{_O}+|{_S}+(?![^\t\n\x0b\x0c\r ])|{_S}+")
#: OpenAI's cl100k_base pattern (GPT-4), as ``tiktoken`` publishes it.
GPT4_CHUNK_PATTERN = (r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"
                      r"|\s*[\r\n]|\s+(?!\S)|\s+")
PRE_TOKENIZERS = {"gpt2": BYTE_CHUNK_PATTERN, "gpt4": GPT4_CHUNK_PATTERN}

_LETTERS = re.compile(r"[^\W\d_]+")  # letters, plus non-decimal numerics such as '½' (filtered below)
_FINDERS: dict[str, Callable[[str], list[str]]] = {"gpt2": re.compile(BYTE_CHUNK_PATTERN).findall}


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
_LATIN1_TO_CHAR = {b: c for b, c in BYTE_TO_CHAR.items()}  # str.translate table on latin-1-decoded bytes


def lower(text: str) -> str:
    """Lower case character by character, as ``tokenizers``' Lowercase does (no final-sigma rule)."""
    # str.lower is context-free except for the capital sigma, which it maps to 'ς' at a word's end.
    return text.replace("Σ", "σ").lower() if "Σ" in text else text.lower()


def words_of(text: str) -> list[str]:
    """The word mode's words: lower-cased runs of letters (``str.isalpha``)."""
    words = []
    for run in _LETTERS.findall(lower(text)):
        if run.isalpha():
            words.append(run)
        else:  # split off numerics such as '²' that \w counts but isalpha does not
            words.extend(w for w in re.split(r"[^\w]|\d|_", "".join(c if c.isalpha() else " " for c in run)) if w)
    return words


def chunk_finder(pre_tokenizer: str = "gpt2") -> Callable[[str], list[str]]:
    """``findall`` of a pre-tokenizer's pattern: text -> its chunks (as text)."""
    finder = _FINDERS.get(pre_tokenizer)
    if finder is None:
        if pre_tokenizer not in PRE_TOKENIZERS:
            raise ConfigError(f"unknown pre-tokenizer {pre_tokenizer!r}: choose "
                              f"{' or '.join(PRE_TOKENIZERS)}")
        try:
            import regex
        except ImportError:
            raise ConfigError(f"the {pre_tokenizer} pre-tokenizer needs the regex package (for \\p{{L}}): "
                              "pip install regex, or pip install 'nnxp[text]'") from None
        finder = _FINDERS[pre_tokenizer] = regex.compile(PRE_TOKENIZERS[pre_tokenizer]).findall
    return finder


def byte_chars(chunk: str) -> str:
    """A chunk's UTF-8 bytes as GPT-2 byte characters."""
    return chunk.encode("utf-8").decode("latin-1").translate(_LATIN1_TO_CHAR)


def chunks_of(text: str, pre_tokenizer: str = "gpt2") -> list[str]:
    """The byte mode's chunks, each as byte characters; their concatenation is the text's UTF-8."""
    return [byte_chars(chunk) for chunk in chunk_finder(pre_tokenizer)(text)]


def byte_pre_tokenizer_json(pre_tokenizer: str) -> tuple[dict, dict]:
    """The byte mode's ``pre_tokenizer`` and ``decoder`` in ``tokenizer.json``."""
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    pre = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": PRE_TOKENIZERS[pre_tokenizer]}, "behavior": "Isolated",
         "invert": False}, byte_level]}
    return pre, byte_level


def count_pieces(blocks: Iterable[str], mode: str, pre_tokenizer: str = "gpt2") -> dict[str, int]:
    """How often each word (word mode) or chunk (byte mode, as byte characters) occurs in ``blocks``.

    Each block is split on its own (the blocks must be cut where no chunk
    crosses), and only the distinct pieces are kept.
    """
    counts: Counter[str] = Counter()
    if mode == "word":
        for block in blocks:
            counts.update(words_of(block))
        return counts
    find = chunk_finder(pre_tokenizer)
    for block in blocks:
        counts.update(find(block))
    out: dict[str, int] = {}
    while counts:  # convert while freeing the text chunks: one copy of the distinct chunks at a time
        chunk, n = counts.popitem()
        out[byte_chars(chunk)] = n
    return out
