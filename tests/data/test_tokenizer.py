"""Tests for hh.data.tokenizer: exact round trips, special tokens, determinism, save/load, errors."""

import json
import pickle
import random
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hh.data.byte_tokenizer import ByteTokenizer
from hh.data.special_tokens import DIALOGUE_MARKERS
from hh.data.tokenizer import (META_FILE, MODEL_FILE, SentencePieceTokenizer, _training_sentences,
                               load_tokenizer, train_sentencepiece)

VOCAB = 400


def make_corpus(n: int = 200, seed: int = 0) -> list[str]:
    """Dialogue-like and code-like texts; ASCII only, so any other character exercises byte fallback."""
    rng = random.Random(seed)
    words = ("the a to of and is in it you that for what how can I help please thanks sure here "
             "there tell me about your day good bad question answer").split()

    def sentence(k):
        return " ".join(rng.choice(words) for _ in range(k))

    texts = []
    for i in range(n):
        turns = "".join(f"\n\nHuman: {sentence(6)}?\n\nAssistant: {sentence(10)}."
                        for _ in range(rng.randint(1, 3)))
        texts.append(turns)
        texts.append(f"def f{i}(x, y):\n    if x > {i * 7}:\n        return x + y\n"
                     f"    return  y  \n\n\nclass C{i}:\n\tpass\n")
    return texts


@pytest.fixture(scope="module")
def tok() -> SentencePieceTokenizer:
    return train_sentencepiece(make_corpus(), VOCAB)


ROUND_TRIPS = [
    "",
    "héllo wörld, naïve café — Ελληνικά, Русский",
    "中文文本和日本語のテキスト、한국어",
    "emoji 🙂🚀 and ZWJ families 👨‍👩‍👧‍👦 👩🏽‍💻 🏳️‍🌈 flags 🇫🇷",
    "def f(x):\n    if x:\n        return x   \n\treturn  None\t\n",
    "a\n\n\n\n\nb\n",
    "\n\nHuman: hi\n\nAssistant: hello",
    "\n\nHuman: what is 12345 + 678?\n\nAssistant: 13023.\n\nHuman: thanks\n\nAssistant:",
    "  leading and trailing spaces  ",
    " ",
    "\r\n windows \x00 nul \x7f del \u200b zwsp \ufeff bom",
    "a literal \u2581 lower one-eighth block, ▁▁ twice",
    "<eoc> <s> </s> <pad> <unk> are just text",
]


@pytest.mark.parametrize("text", ROUND_TRIPS)
def test_round_trip(tok, text):
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_round_trip_property(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.eoc_id not in ids and tok.pad_id not in ids


def test_batch_matches_single(tok):
    assert tok.encode_batch(ROUND_TRIPS) == [tok.encode(t) for t in ROUND_TRIPS]
    assert tok.decode_batch(tok.encode_batch(ROUND_TRIPS)) == ROUND_TRIPS


def test_unseen_characters_use_byte_fallback(tok):
    ids = tok.encode("Ж")  # Cyrillic never occurs in the corpus: its two UTF-8 bytes
    assert [tok.piece(i) for i in ids] == ["<0xD0>", "<0x96>"]
    assert tok.unk_id not in tok.encode("".join(ROUND_TRIPS))


def test_special_ids(tok):
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.eoc_id) == (0, 1, 2, 3)  # as ByteTokenizer
    assert tok.vocab_size == VOCAB
    assert len({tok.pad_id, tok.bos_id, tok.eos_id, tok.eoc_id, tok.unk_id}) == 5


def test_eoc_is_never_encoded_and_decode_drops_specials(tok):
    assert tok.eoc_id not in tok.encode("<eoc>" * 3)
    text = "\n\nHuman: hi\n\nAssistant: hello"
    ids = [tok.bos_id] + tok.encode(text) + [tok.eoc_id, tok.eos_id, tok.pad_id, tok.pad_id]
    assert tok.decode(ids) == text
    assert tok.decode(np.array([ids])) == text  # arrays of any shape, as ByteTokenizer


def test_interchangeable_with_byte_tokenizer(tok):
    for t in (ByteTokenizer(), tok):
        ids = t.encode("hello 🙂")
        assert isinstance(ids, list) and all(isinstance(i, int) for i in ids)
        assert t.decode([t.bos_id, *ids, t.eoc_id, t.eos_id, t.pad_id]) == "hello 🙂"
        assert t.pad_id == 0 and t.vocab_size > max(ids)


def test_dialogue_markers_are_single_tokens(tok):
    for marker in DIALOGUE_MARKERS:
        assert len(tok.encode(marker)) == 1
    ids = tok.encode("\n\nHuman: hi\n\nAssistant: hello")
    assert ids[0] == tok.encode("\n\nHuman:")[0]
    assert tok.encode("\n\nAssistant:")[0] in ids


def test_indentation_pieces(tok):
    # allow_whitespace_only_pieces: runs of spaces are vocabulary entries, so indentation is cheap.
    assert len(tok.encode("    ")) == 1
    assert len(tok.encode("        ")) <= 2


def test_decoding_a_slice_keeps_its_leading_space(tok):
    # add_dummy_prefix=False: a response decoded on its own is the response, space included.
    assert tok.decode(tok.encode(" hello there")) == " hello there"


def test_training_is_deterministic(tok):
    again = train_sentencepiece(make_corpus(), VOCAB)
    assert again.model_bytes == tok.model_bytes
    assert again.fingerprint() == tok.fingerprint()
    other = train_sentencepiece(make_corpus(seed=1), VOCAB)
    assert other.fingerprint() != tok.fingerprint()


def test_training_sentences_cut_at_line_ends():
    text = "ab\n" * 5 + "x" * 23 + "\n\nHuman: hi"
    chunks = list(_training_sentences([text, "", "short"], max_chars=10))
    assert "".join(chunks) == text + "short"
    assert all(0 < len(c) <= 10 for c in chunks)
    assert chunks[:2] == ["ab\nab\nab\n", "ab\nab\n"]  # whole lines while they fit


def test_long_documents_are_chunked_not_dropped():
    # One document of 40k characters and a 32k-character line, both longer than the
    # max_sentence_length (16 KiB) that sentencepiece is given: they must be cut, not skipped.
    document = "\n".join(make_corpus(150)) + "\n" + "the day is good " * 2000
    assert len(document) > 70_000
    tok = train_sentencepiece([document], VOCAB)
    assert tok.decode(tok.encode(document)) == document
    assert len(tok.encode(document)) < len(document.encode()) / 2  # it learned merges


def test_save_load_round_trip(tok, tmp_path):
    tok.save(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == [META_FILE, MODEL_FILE]
    loaded = SentencePieceTokenizer.load(tmp_path / "tok")
    assert loaded.fingerprint() == tok.fingerprint()
    assert loaded.encode_batch(ROUND_TRIPS) == tok.encode_batch(ROUND_TRIPS)
    meta = json.loads((tmp_path / "tok" / META_FILE).read_text())
    assert meta["fingerprint"] == tok.fingerprint()
    assert (meta["vocab_size"], meta["pad_id"], meta["eoc_id"]) == (VOCAB, 0, tok.eoc_id)
    tok.save(tmp_path / "tok")  # overwriting is fine
    assert pickle.loads(pickle.dumps(tok)).encode("hi there") == tok.encode("hi there")


def test_load_detects_mismatched_model(tok, tmp_path):
    tok.save(tmp_path)
    other = train_sentencepiece(make_corpus(seed=1), VOCAB)
    (tmp_path / MODEL_FILE).write_bytes(other.model_bytes)
    with pytest.raises(ValueError, match="fingerprint"):
        SentencePieceTokenizer.load(tmp_path)


def test_load_tokenizer(tok, tmp_path):
    assert isinstance(load_tokenizer("bytes"), ByteTokenizer)
    tok.save(tmp_path)
    assert load_tokenizer(str(tmp_path)).fingerprint() == tok.fingerprint()
    for bad in ("sentencepiece", str(tmp_path / "missing"), ""):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            load_tokenizer(bad)


def test_vocab_too_large_gives_the_maximum():
    corpus = make_corpus(20)
    with pytest.raises(ValueError, match=r"too large for this corpus.*maximum of (\d+)") as info:
        train_sentencepiece(corpus, 5000)
    maximum = int(re.search(r"maximum of (\d+)", str(info.value)).group(1))
    assert 300 < maximum < 5000
    assert train_sentencepiece(corpus, maximum).vocab_size == maximum


def test_vocab_too_small_and_empty_corpus():
    with pytest.raises(ValueError, match=r"too small.*at least \d+"):
        train_sentencepiece(make_corpus(20), 100)
    with pytest.raises(ValueError, match="no training text"):
        train_sentencepiece(["", ""], VOCAB)
