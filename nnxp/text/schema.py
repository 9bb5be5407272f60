"""Checking a ``tokenizer.json`` before using it: one line naming the file, the field and the fix.

Every message reads ``"{file}: {field}: {problem}; {fix}"``.  What is checked:

- the structure: an object whose ``model`` is an object of type ``BPE`` with
  a ``vocab`` object (token -> id) and a ``merges`` list;
- ``model.vocab``: every id a whole number in ``0 .. n-1``, each once (n
  tokens), every token a non-empty string;
- ``model.merges``: each a ``"left right"`` string or a ``[left, right]``
  pair whose parts and whose joined token are in the vocabulary;
- the mode: ``normalizer`` ``Lowercase`` (word mode) or none (byte mode);
  the byte mode's ``pre_tokenizer`` must be one nnxp writes (``gpt2`` or
  ``gpt4``), every token made of GPT-2 byte characters, and all 256 of them
  in the vocabulary (so every text can be encoded).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import DataError
from .pretokenize import BYTE_TO_CHAR, CHAR_TO_BYTE, PRE_TOKENIZERS, byte_pre_tokenizer_json

__all__ = ["check_tokenizer_json"]

_FIX = "write it again with `nnxp text vocab -o FILE` (or Tokenizer.save)"


def _fail(source: str, field: str, problem: str, fix: str = _FIX) -> DataError:
    return DataError(f"{source}: {field}: {problem}; {fix}")


def check_tokenizer_json(spec: Any, source: str = "tokenizer.json") -> tuple[list[str], list[tuple[str, str]], str, str]:
    """(symbols by id, merges, mode, pre-tokenizer) of a checked ``tokenizer.json`` structure."""
    if not isinstance(spec, dict):
        raise _fail(source, "(top level)", f"a JSON {type(spec).__name__}, not an object",
                    "give a tokenizer.json written by nnxp")
    model = spec.get("model")
    if not isinstance(model, dict):
        raise _fail(source, "model", "missing or not an object", "give a BPE tokenizer.json written by nnxp")
    if model.get("type") != "BPE":
        raise _fail(source, "model.type", f"{model.get('type')!r}, not 'BPE'",
                    "nnxp reads BPE tokenizers only: give one written by nnxp")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or not vocab:
        raise _fail(source, "model.vocab", "missing, empty or not an object of token -> id")
    n = len(vocab)
    symbols: list[Any] = [None] * n
    for token, i in vocab.items():
        if not token:
            raise _fail(source, "model.vocab", "an empty token")
        if isinstance(i, bool) or not isinstance(i, int):
            raise _fail(source, f"model.vocab[{json.dumps(token, ensure_ascii=False)}]",
                        f"id {i!r} is not a whole number")
        if not 0 <= i < n:
            raise _fail(source, f"model.vocab[{json.dumps(token, ensure_ascii=False)}]",
                        f"id {i} is out of range: {n} tokens have ids 0 to {n - 1}")
        if symbols[i] is not None:
            raise _fail(source, f"model.vocab[{json.dumps(token, ensure_ascii=False)}]",
                        f"id {i} is also the id of {symbols[i]!r}: each id must be used once")
        symbols[i] = token
    raw = model.get("merges")
    if not isinstance(raw, list):
        raise _fail(source, "model.merges", "missing or not a list")
    merges = []
    for k, m in enumerate(raw):
        pair = m.split(" ") if isinstance(m, str) else m
        if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(s, str) for s in pair):
            raise _fail(source, f"model.merges[{k}]", f"{m!r} is not a pair 'left right'")
        a, b = pair
        for part in (a, b, a + b):
            if part not in vocab:
                raise _fail(source, f"model.merges[{k}]",
                            f"{m!r}: {part!r} is not in model.vocab (merges must be consistent with it)")
        merges.append((a, b))
    normalizer = spec.get("normalizer")
    if normalizer is not None and normalizer != {"type": "Lowercase"}:
        raise _fail(source, "normalizer", f"{json.dumps(normalizer)[:80]} is not nnxp's (Lowercase or null)")
    if normalizer is not None:
        return symbols, merges, "word", "gpt2"
    pre = spec.get("pre_tokenizer")
    name = next((k for k in PRE_TOKENIZERS if pre == byte_pre_tokenizer_json(k)[0]), None)
    if name is None:
        raise _fail(source, "pre_tokenizer", "not a byte-level pre-tokenizer nnxp writes "
                    f"({' or '.join(PRE_TOKENIZERS)} pattern, then ByteLevel)")
    for token in symbols:
        bad = next((c for c in token if c not in CHAR_TO_BYTE), None)
        if bad is not None:
            raise _fail(source, f"model.vocab[{json.dumps(token, ensure_ascii=False)}]",
                        f"{bad!r} is not a byte character (GPT-2's byte-to-unicode table)")
    missing = [b for b, c in BYTE_TO_CHAR.items() if c not in vocab]
    if missing:
        raise _fail(source, "model.vocab", f"{len(missing)} of the 256 byte characters are missing "
                    f"(byte {missing[0]}, {BYTE_TO_CHAR[missing[0]]!r}, first): the byte mode needs them all")
    return symbols, merges, "byte", name
