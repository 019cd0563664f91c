"""HFTokenizer: an imported tokenizer.json behind hh's tokenizer interface, against transformers."""

import pytest

import hf_fixtures as fx
from hh.data.hf_tokenizer import PAD_PIECE, HFTokenizer, is_hf_tokenizer_dir
from hh.data.special_tokens import DIALOGUE_MARKERS, EOC_PIECE
from hh.data.tokenizer import load_tokenizer

transformers = fx.transformers


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tok")
    fx.make_bpe_tokenizer(directory)
    return directory


def test_adds_pad_eoc_and_markers_where_missing(tok_dir):
    tok = HFTokenizer.from_directory(tok_dir)
    eot = tok.piece(tok.eos_id)
    assert eot == "<|endoftext|>" and tok.bos_id == tok.eos_id
    assert tok.pad_id != tok.eos_id and tok.piece(tok.pad_id) == PAD_PIECE
    assert tok.piece(tok.eoc_id) == EOC_PIECE
    assert len(tok.new_token_ids) == 4 and min(tok.new_token_ids) == tok.original_vocab_size
    assert tok.vocab_size == tok.original_vocab_size + 4
    for marker in DIALOGUE_MARKERS:
        assert len(tok.encode(marker)) == 1


@pytest.mark.parametrize("name", list(fx.SAMPLE_TEXTS))
def test_ids_match_the_reference_tokenizer_and_round_trip(tok_dir, tmp_path, name):
    text = fx.SAMPLE_TEXTS[name]
    tok = HFTokenizer.from_directory(tok_dir)
    # Before our additions: identical to transformers on the original files.
    original = transformers.AutoTokenizer.from_pretrained(tok_dir)
    plain = HFTokenizer.from_directory(tok_dir)
    if name != "dialogue":   # markers are single tokens only after the addition
        assert plain.encode(text) == original.encode(text, add_special_tokens=False)
    # After saving with the additions: transformers reads the same vocabulary and gives our ids.
    tok.save(tmp_path)
    reference = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert tok.encode(text) == reference.encode(text, add_special_tokens=False)
    assert tok.decode(tok.encode(text)) == text
    assert reference.pad_token_id == tok.pad_id and reference.eos_token_id == tok.eos_id


def test_special_tokens_are_dropped_by_decode(tok_dir):
    tok = HFTokenizer.from_directory(tok_dir)
    ids = [tok.bos_id, *tok.encode("hello"), tok.eoc_id, tok.pad_id, tok.pad_id]
    assert tok.decode(ids) == "hello"


def test_saved_copy_reloads_with_the_same_ids(tok_dir, tmp_path):
    tok = HFTokenizer.from_directory(tok_dir)
    tok.save(tmp_path)
    again = load_tokenizer(str(tmp_path))
    assert isinstance(again, HFTokenizer) and again.fingerprint() == tok.fingerprint()
    assert (again.pad_id, again.eoc_id, again.vocab_size, again.original_vocab_size) == (
        tok.pad_id, tok.eoc_id, tok.vocab_size, tok.original_vocab_size)
    assert again.new_token_ids == ()   # nothing left to add


def test_pickles_for_worker_processes(tok_dir):
    import pickle
    tok = HFTokenizer.from_directory(tok_dir)
    copy = pickle.loads(pickle.dumps(tok))
    text = fx.SAMPLE_TEXTS["dialogue"]
    assert copy.encode(text) == tok.encode(text) and copy.eoc_id == tok.eoc_id


def test_hh_metadata_file_is_not_mistaken_for_a_hf_tokenizer(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"type": "sentencepiece", "fingerprint": "x"}')
    assert not is_hf_tokenizer_dir(tmp_path)


def test_no_eos_fails_clearly(tmp_path):
    fx.make_bpe_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(ValueError, match="names no eos token"):
        HFTokenizer.from_directory(tmp_path)
