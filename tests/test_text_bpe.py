"""BPE merges: the seed's output on a corpus worked by hand, an independent full-recount
reference, and Hugging Face tokenizers' BpeTrainer (same merges from the same words)."""

from __future__ import annotations

from collections import Counter

import re
import subprocess
import sys
import tracemalloc
from pathlib import Path
from unittest import mock

import pytest
from bpe_reference import naive_bpe, tokenizers_byte_merges
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nnxp.errors import ConfigError, DataError
from nnxp.text import bpe, learn, learn_merges
from nnxp.text.tokenizer import BYTE_CHUNK_PATTERN, BYTE_TO_CHAR, words_of

REPO = Path(__file__).resolve().parent.parent


def test_seed_output_on_a_corpus_worked_by_hand():
    # Words: the x2, cat x2, sat x1 (seen once: dropped).  Alphabet sorted by code point:
    # a=0 c=1 e=2 h=3 t=4.  Pair counts: t h 2, h e 2, c a 2, a t 2 -- a four-way tie, won by the
    # smallest (left id, right id): (a=0, t=4) -> "at" (id 5).  Then the words are t h e / c at:
    # t h 2, h e 2, c at 2 -> smallest ids (c=1, at=5) -> "cat" (id 6).  Then t h (4,3) and h e (3,2)
    # tie -> (3,2) "he" (id 7), then t he (4,7) -> "the" (id 8).  Nothing is left to merge.
    _, result = learn("The cat, the CAT sat.", 4)
    assert result.merges == [("a", "t"), ("c", "at"), ("h", "e"), ("t", "he")]
    assert result.vocabulary_lines() == ["2 cat", "2 the"]
    _, two = learn("The cat, the CAT sat.", 2)
    assert two.vocabulary_lines() == ["2 cat", "2 e", "2 h", "2 t"]


def test_more_merges_than_the_corpus_allows_is_an_error_naming_the_limit():
    with pytest.raises(ConfigError, match="allows only 4 merges.*--merges 4"):
        learn("The cat, the CAT sat.", 5)
    _, result = learn("The cat, the CAT sat.", 5, allow_fewer=True)
    assert len(result.merges) == 4


def test_no_repeated_word_is_a_data_error():
    with pytest.raises(DataError, match="no word that occurs twice"):
        learn("every word here is unique", 3)


def test_words_are_lower_cased_letter_runs():
    assert words_of("Don't stop: 3x ½² Café_Bar ΟΔΥΣΣΕΥΣ") == ["don", "t", "stop", "x", "café", "bar", "οδυσσευσ"]


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(alphabet="abcab", min_size=1, max_size=7), st.integers(1, 5),
                       min_size=1, max_size=12),
       st.integers(0, 15))
def test_incremental_counts_agree_with_a_full_recount(word_counts, merges):
    result = learn_merges(word_counts, merges, allow_fewer=True)
    assert result.merges == naive_bpe(word_counts, merges)[1]
    # The final symbol counts are the corpus frequencies of the final segmentation.
    lengths = sum(n * len(w) for w, n in word_counts.items())
    assert sum(len(result.symbols[s]) * c for s, c in enumerate(result.counts)) == lengths


def _tokenizers_merges(hf) -> list[tuple[str, str]]:
    import json

    merges = json.loads(hf.to_str())["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


def test_byte_mode_learns_the_same_merges_as_tokenizers_bpe_trainer():
    pytest.importorskip("tokenizers")
    from nnxp.text.corpus import default_corpus

    text = default_corpus()[:60_000]
    mine, _ = learn(text, 300, "byte")
    assert tokenizers_byte_merges(text, 300, BYTE_CHUNK_PATTERN) == mine.merges


def test_word_mode_learns_the_same_merges_as_tokenizers_bpe_trainer():
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, trainers

    from nnxp.text.corpus import default_corpus

    text = default_corpus()[:60_000]
    mine, result = learn(text, 400, "word")
    kept = Counter(w for w in words_of(text))
    lines = [w for w, n in kept.items() if n > 1 for _ in range(n)]
    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    alphabet = sorted({c for w in lines for c in w})
    trainer = trainers.BpeTrainer(vocab_size=len(alphabet) + 400, show_progress=False)
    hf.train_from_iterator(lines, trainer)
    assert _tokenizers_merges(hf) == mine.merges


# -- the trainer against a naive reference, on random corpora ----------------------------------

# Ties (few letters, repeated), Unicode case edge cases (Greek sigma in all three forms, dotted
# and dotless i, German sharp s, title-case digraphs), whitespace runs, punctuation, contractions.
EDGE_ALPHABET = "aab" + "Σσς" + "İiı" + "ßS" + "ǅǄǆ" + "  \t\n\n" + ",.'" + "é"


def _reference_pieces(text: str, mode: str) -> dict[str, int]:
    """The corpus's pieces, computed independently of nnxp's pre-tokenizer code."""
    if mode == "byte":
        chunks = re.findall(BYTE_CHUNK_PATTERN, text)
        return Counter("".join(BYTE_TO_CHAR[b] for b in c.encode("utf-8")) for c in chunks)
    lowered = "".join(c.lower() for c in text)  # one character at a time, as tokenizers' Lowercase
    words = Counter(re.findall(r"[^\W\d_]+", lowered))
    runs: Counter = Counter()
    for w, n in words.items():
        for run in "".join(c if c.isalpha() else " " for c in w).split():
            runs[run] += n
    return {w: n for w, n in runs.items() if n > 1}


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=EDGE_ALPHABET, max_size=400), merges=st.integers(0, 30),
       mode=st.sampled_from(["byte", "word"]), long_word=st.sampled_from([0, 3, bpe.LONG_WORD]))
@example(text="σοφός σοφός ΣΟΦΟΣ ΣΟΦΟΣ İİ ßß ǅǅ", merges=12, mode="word", long_word=0)
@example(text="ab" * 200 + "  \n\n  " * 3 + "aaaa aaa", merges=30, mode="byte", long_word=0)
def test_learn_equals_the_naive_reference_trainer(text, merges, mode, long_word):
    pieces = _reference_pieces(text, mode)
    alphabet = BYTE_TO_CHAR.values() if mode == "byte" else ()
    symbols, expected = naive_bpe(pieces, merges, alphabet)
    with mock.patch.object(bpe, "LONG_WORD", long_word):  # 0: every word a linked list
        try:
            tokenizer, result = learn(text, merges, mode, allow_fewer=True)
        except DataError:  # no piece at all (or, word mode, none seen twice)
            assert not pieces
            return
    assert result.merges == expected
    assert tokenizer.symbols == symbols
    # The final segmentation spells every piece, and the counts are its symbol frequencies.
    assert sorted("".join(result.symbols[s] for s in w) for w in result.words) == sorted(pieces)
    total = sum(n * len(w) for w, n in pieces.items())
    assert sum(len(result.symbols[s]) * c for s, c in enumerate(result.counts)) == total


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text(alphabet="abab c", min_size=1, max_size=90), st.integers(1, 4),
                       min_size=1, max_size=6),
       st.integers(0, 60))
def test_long_words_as_linked_lists_agree_with_the_reference(word_counts, merges):
    with mock.patch.object(bpe, "LONG_WORD", 0):
        result = learn_merges(word_counts, merges, allow_fewer=True)
    assert result.merges == naive_bpe(word_counts, merges)[1]
    assert ["".join(result.symbols[s] for s in w) for w in result.words] == list(word_counts)


def test_a_long_chunk_costs_what_its_merges_change():
    # One 400 KB "word" (no spaces): each merge used to rewrite the whole chunk (a 20 KB one took
    # 38-64 s).  Now a merge visits only its pair's positions: this takes seconds; the timeout
    # only guards against the old quadratic behaviour (hours), it measures nothing.
    code = ("import random; from nnxp.text import learn; r = random.Random(0); "
            "t = ''.join(r.choice('abcdefghij') for _ in range(400_000)); "
            "tok, res = learn(t, 1000, 'byte'); print(len(res.merges))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1000"


def test_learning_streams_the_corpus_instead_of_listing_its_chunks():
    # 1 MB of text: counting chunks used to build the list of all ~250,000 chunks first (about
    # 35 bytes per corpus byte).  Traced allocations while learning stay under 8 bytes per byte.
    import random

    rng = random.Random(0)
    words = ["".join(rng.choice("etaoinshrdlu") for _ in range(rng.randint(1, 9))) for _ in range(3000)]
    text = " ".join(rng.choice(words) for _ in range(200_000))[:1_000_000]
    tracemalloc.start()
    try:
        learn(text, 100, "byte")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * len(text), f"{peak / len(text):.1f} bytes per corpus byte"


@pytest.mark.parametrize("merges", [2.5, "3", True, -1])
def test_merges_must_be_a_whole_number(merges):
    with pytest.raises(ConfigError, match="merges must be"):
        learn("the cat the cat", merges, "byte")
    with pytest.raises(ConfigError, match="merges must be"):
        learn_merges({"ab": 2}, merges)
