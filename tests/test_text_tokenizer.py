"""Tokenizer: lossless byte mode on arbitrary Unicode, tokenizer.json files that Hugging Face
tokenizers loads and encodes to the same ids."""

from __future__ import annotations

import json
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnxp.errors import ConfigError, DataError
from nnxp.text import Tokenizer, learn
from nnxp.text.corpus import default_corpus
from nnxp.text import tokenizer as tokenizer_module
from nnxp.text.tokenizer import BYTE_TO_CHAR, chunks_of, lower

TRAIN = default_corpus()[:40_000] + "\nNaïve café — Ünïcödé ΣΟΦΙΑ 東京 😀 ½ \t\r\n"


@pytest.fixture(scope="module")
def byte_tokenizer() -> Tokenizer:
    return learn(TRAIN, 300, "byte")[0]


@pytest.fixture(scope="module")
def word_tokenizer() -> Tokenizer:
    return learn(TRAIN, 300, "word")[0]


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_byte_mode_round_trips_any_text(byte_tokenizer, text):
    ids = byte_tokenizer.encode(text)
    assert byte_tokenizer.decode(ids) == text
    assert "".join(chunks_of(text)) == "".join(byte_tokenizer.symbols[i] for i in ids)


def test_byte_mode_compresses_and_shows_tokens_as_text(byte_tokenizer):
    text = "the function returns the value of the object"
    ids = byte_tokenizer.encode(text)
    assert len(ids) < len(text.encode()) / 2
    assert "".join(byte_tokenizer.token_text(i) for i in ids) == text
    assert byte_tokenizer.token_text(byte_tokenizer.token_id(" the")) == " the"


def test_word_mode_keeps_lower_cased_letters_only(word_tokenizer):
    ids = word_tokenizer.encode("The Function, returns 42 values!")
    assert word_tokenizer.decode(ids) == "thefunctionreturnsvalues"
    assert word_tokenizer.token_id("THE") == word_tokenizer.token_id("the")
    with pytest.raises(ConfigError, match="unknown token 'qqqzz'"):
        word_tokenizer.token_id("qqqzz")


@pytest.fixture(scope="module")
def files(tmp_path_factory, byte_tokenizer, word_tokenizer):
    tokenizers = pytest.importorskip("tokenizers")
    out = {}
    for name, tok in (("byte", byte_tokenizer), ("word", word_tokenizer)):
        path = tok.save(tmp_path_factory.mktemp(name) / "tokenizer.json")
        out[name] = (tok, path, tokenizers.Tokenizer.from_file(str(path)))
    return out


def _assigned(text: str) -> str:
    # Characters unassigned in this Python's Unicode tables may be letters in the (newer)
    # tables of tokenizers' regex engine; the word mode's letter test would then differ.
    return "".join(c for c in text if unicodedata.category(c) != "Cn")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60))
def test_tokenizers_gives_the_same_ids(files, text):
    for mode, (tok, _, hf) in files.items():
        sample = _assigned(text) if mode == "word" else text
        assert tok.encode(sample) == hf.encode(sample).ids, mode
    tok, _, hf = files["byte"]
    assert hf.decode(tok.encode(text)) == text


def test_tokenizers_gives_the_same_ids_on_real_text(files):
    text = default_corpus()[40_000:80_000]
    for tok, _, hf in files.values():
        assert tok.encode(text) == hf.encode(text).ids


def test_save_and_load_round_trip(files):
    for tok, path, _ in files.values():
        again = Tokenizer.load(path)
        assert (again.mode, again.symbols, again.merges) == (tok.mode, tok.symbols, tok.merges)
        assert again.encode(TRAIN[:3000]) == tok.encode(TRAIN[:3000])


def test_loading_something_else_is_one_clear_error(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text(json.dumps({"model": {"type": "WordPiece", "vocab": {}}}))
    with pytest.raises(DataError, match=f"^{re.escape(str(bad))}: model.type: 'WordPiece', not 'BPE'; "):
        Tokenizer.load(bad)
    with pytest.raises(DataError, match="not found"):
        Tokenizer.load(tmp_path / "missing.json")


# -- lower case as tokenizers' Lowercase (no final sigma) -----------------------------------------

CASE_EDGES = ["σοφός", "ΣΟΦΟΣ", "Σοφός σοφός.", "ὈΔΥΣΣΕΎΣ", "İstanbul", "İ", "ß", "STRASSE straße", "ǅemal ǄEMAL",
              "ᾼ", "ΌΣΟΣ Σ", "Ω"]


def test_lower_case_is_tokenizers_lowercase_on_every_cased_character():
    normalizers = pytest.importorskip("tokenizers.normalizers")
    hf = normalizers.Lowercase()
    cased = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) in ("Lu", "Ll", "Lt")]
    for text in [*CASE_EDGES, " ".join(cased), "".join(cased)]:
        assert lower(text) == hf.normalize_str(text), text


def test_greek_final_sigma_encodes_as_in_tokenizers(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    corpus = " ".join(CASE_EDGES * 2)
    tok = learn(corpus, 30, "word", allow_fewer=True)[0]
    hf = tokenizers.Tokenizer.from_file(str(tok.save(tmp_path / "tokenizer.json")))
    for text in CASE_EDGES:
        assert tok.encode(text) == hf.encode(text).ids, text
    assert tok.decode(tok.encode("σοφός")) == "σοφός"  # the final sigma is kept, not made 'σ'


# -- decode takes whole numbers in range only --------------------------------------------------

@pytest.mark.parametrize("ids", [[-1], [1.7], [True], [10**9], ["3"]])
def test_decode_refuses_ids_that_are_not_token_ids(byte_tokenizer, ids):
    with pytest.raises(ConfigError, match="token id"):
        byte_tokenizer.decode(ids)


def test_decode_takes_numpy_integers(byte_tokenizer):
    np = pytest.importorskip("numpy")
    ids = byte_tokenizer.encode("hello")
    assert byte_tokenizer.decode(np.asarray(ids)) == "hello"


# -- the encoder's cache is bounded ------------------------------------------------------------

def test_the_encoder_cache_is_bounded_and_changes_no_ids(monkeypatch, byte_tokenizer):
    monkeypatch.setattr(tokenizer_module, "CACHE_SIZE", 50)
    small = Tokenizer(byte_tokenizer.symbols, byte_tokenizer.merges, "byte")
    text = " ".join(f"w{i}x{i * 7}" for i in range(400))
    assert small.encode(text) == byte_tokenizer.encode(text)
    assert small._piece_ids.cache_info().currsize <= 50


# -- the GPT-4 (cl100k) pre-tokenizer ----------------------------------------------------------

@pytest.fixture(scope="module")
def gpt4(tmp_path_factory):
    pytest.importorskip("regex")
    tokenizers = pytest.importorskip("tokenizers")
    tok = learn(TRAIN, 300, "byte", pre_tokenizer="gpt4")[0]
    path = tok.save(tmp_path_factory.mktemp("gpt4") / "tokenizer.json")
    return tok, path, tokenizers.Tokenizer.from_file(str(path))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60) | st.text(alphabet="ab1 \t\n\r.,'ΣσςİDON'T", max_size=40))
def test_gpt4_pre_tokenizer_gives_tokenizers_ids_and_round_trips(gpt4, text):
    tok, _, hf = gpt4
    sample = _assigned(text)  # \p{L}/\p{N} of unassigned code points depend on the engine's Unicode
    assert tok.encode(sample) == hf.encode(sample).ids
    assert tok.decode(tok.encode(text)) == text


def test_gpt4_pre_tokenizer_learns_bpe_trainer_merges_and_loads_back(gpt4):
    from bpe_reference import tokenizers_byte_merges

    from nnxp.text.tokenizer import GPT4_CHUNK_PATTERN

    tok, path, _ = gpt4
    assert tokenizers_byte_merges(TRAIN, 300, GPT4_CHUNK_PATTERN) == tok.merges
    again = Tokenizer.load(path)
    assert again.pre_tokenizer == "gpt4" and again.encode(TRAIN[:2000]) == tok.encode(TRAIN[:2000])
    assert chunks_of("I'M 12345 x!!\n\nyo", "gpt4") != chunks_of("I'M 12345 x!!\n\nyo")


# -- tokenizer.json is checked field by field --------------------------------------------------

def _broken(spec: dict, where: str) -> dict:
    spec = json.loads(json.dumps(spec))
    model = spec["model"]
    vocab = model["vocab"]
    if where == "id out of range":
        vocab[next(iter(vocab))] = len(vocab) + 5
    elif where == "id twice":
        a, b = list(vocab)[:2]
        vocab[b] = vocab[a]
    elif where == "id not a number":
        vocab[next(iter(vocab))] = "7"
    elif where == "merge part unknown":
        model["merges"][3] = "Ġthe zzzq"
    elif where == "merge result unknown":
        a, b = model["merges"][2].split(" ")
        i = vocab.pop(a + b)
        vocab[BYTE_TO_CHAR[0] * 9] = i
    elif where == "merge not a pair":
        model["merges"][1] = "abc"
    elif where == "byte missing":
        i = vocab.pop(BYTE_TO_CHAR[0])
        vocab[BYTE_TO_CHAR[1] * 7] = i
    elif where == "not a byte character":
        vocab["ω"] = vocab.pop(BYTE_TO_CHAR[0])  # byte 0 takes part in no merge
    elif where == "pre-tokenizer":
        spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\w+"
    elif where == "top level":
        return [spec]
    return spec


@pytest.mark.parametrize("where, field", [
    ("id out of range", r"model\.vocab\[.*\]: id \d+ is out of range"),
    ("id twice", r"model\.vocab\[.*\]: id \d+ is also the id of"),
    ("id not a number", r"model\.vocab\[.*\]: id '7' is not a whole number"),
    ("merge part unknown", r"model\.merges\[3\]: .*'zzzq' is not in model\.vocab"),
    ("merge result unknown", r"model\.merges\[2\]: .* is not in model\.vocab"),
    ("merge not a pair", r"model\.merges\[1\]: 'abc' is not a pair"),
    ("byte missing", r"model\.vocab: 1 of the 256 byte characters are missing \(byte 0"),
    ("not a byte character", r"model\.vocab\[.*\]: 'ω' is not a byte character"),
    ("pre-tokenizer", r"pre_tokenizer: not a byte-level pre-tokenizer nnxp writes"),
    ("top level", r"\(top level\): a JSON list, not an object"),
])
def test_a_bad_tokenizer_json_gets_one_line_naming_the_file_and_field(tmp_path, byte_tokenizer, where, field):
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(_broken(byte_tokenizer.to_json(), where), ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError) as info:
        Tokenizer.load(path)
    message = str(info.value)
    assert re.match(f"{re.escape(str(path))}: {field}", message), message
    assert "\n" not in message and "; " in message  # one line, with the fix after the problem


# -- a long piece is encoded as a short one would be, without quadratic work --------------------

@settings(max_examples=40, deadline=None)
@given(st.text(alphabet="the cat\n", min_size=65, max_size=400))
def test_long_pieces_encode_as_the_plain_loop_does(byte_tokenizer, text):
    parts = list("".join(chunks_of(text.replace(" ", "").replace("\n", ""))))
    if len(parts) < 2:
        return
    plain = Tokenizer(byte_tokenizer.symbols, byte_tokenizer.merges, "byte")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tokenizer_module, "LONG_PIECE", 10**9)
        expected = plain._bpe("".join(parts))
    assert byte_tokenizer._bpe_long(parts) == [byte_tokenizer.symbols[i] for i in expected]


def test_encoding_a_long_chunk_round_trips(byte_tokenizer):
    text = "thecatsatonthemat" * 6_000  # one 102 KB chunk
    ids = byte_tokenizer.encode(text)
    assert byte_tokenizer.decode(ids) == text and len(ids) < len(text)
