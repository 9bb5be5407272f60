"""BPE merges: the seed's output on a corpus worked by hand, an independent full-recount
reference, and Hugging Face tokenizers' BpeTrainer (same merges from the same words)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnxp.errors import ConfigError, DataError
from nnxp.text import learn, learn_merges
from nnxp.text.tokenizer import words_of


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


def naive_bpe(word_counts: dict[str, int], merges: int) -> list[tuple[str, str]]:
    """Reference: recount every pair before every merge; ties by (rank of left, rank of right)."""
    symbols = sorted({c for w in word_counts for c in w})
    words = {w: list(w) for w in word_counts}
    out = []
    for _ in range(merges):
        counts = Counter()
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
    return out


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(alphabet="abcab", min_size=1, max_size=7), st.integers(1, 5),
                       min_size=1, max_size=12),
       st.integers(0, 15))
def test_incremental_counts_agree_with_a_full_recount(word_counts, merges):
    result = learn_merges(word_counts, merges, allow_fewer=True)
    assert result.merges == naive_bpe(word_counts, merges)
    # The final symbol counts are the corpus frequencies of the final segmentation.
    lengths = sum(n * len(w) for w, n in word_counts.items())
    assert sum(len(result.symbols[s]) * c for s, c in enumerate(result.counts)) == lengths


def _tokenizers_merges(hf) -> list[tuple[str, str]]:
    import json

    merges = json.loads(hf.to_str())["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


def test_byte_mode_learns_the_same_merges_as_tokenizers_bpe_trainer():
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import Regex, models, pre_tokenizers, trainers

    from nnxp.text.corpus import default_corpus
    from nnxp.text.tokenizer import BYTE_CHUNK_PATTERN

    text = default_corpus()[:60_000]
    mine, _ = learn(text, 300, "byte")
    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(BYTE_CHUNK_PATTERN), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=256 + 300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    hf.train_from_iterator([text], trainer)
    assert _tokenizers_merges(hf) == mine.merges


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
