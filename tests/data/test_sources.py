"""Run data: documents per source, the run's tokenizer (trained, saved, reloaded), packed rows."""

import numpy as np
import pytest

from configs import common
from hh.data import sources
from hh.data.byte_tokenizer import ByteTokenizer
from real_data import HH_RLHF as REAL


def _data(**overrides):
    cfg = common.data(seq_len=64)
    cfg.synthetic_documents, cfg.eval_documents, cfg.tokenizer_vocab_size = 2000, 100, 384
    cfg.update(overrides)
    return cfg


def test_synthetic_eval_documents_are_never_training_documents():
    train, held_out = sources.lm_documents(_data())
    assert len(train) == 2000 and len(held_out) == 100 == len(set(held_out))
    assert any(doc.startswith("\n\nHuman:") for doc in held_out) and any(not doc.startswith("\n") for doc in held_out)
    assert not set(held_out) & set(train)


def test_default_corpus_is_still_available():
    train, held_out = sources.lm_documents(_data(source="default_corpus"))
    assert len(train) > 1000 and held_out


def test_unknown_source_names_the_field():
    with pytest.raises(ValueError, match="config.data.source='web'"):
        sources.lm_documents(_data(source="web"))


def test_sentencepiece_is_trained_once_saved_and_reloaded(tmp_path):
    cfg = _data()
    train, _ = sources.lm_documents(cfg)
    first = sources.run_tokenizer(cfg, train, tmp_path)
    assert (tmp_path / sources.TOKENIZER_DIR / "tokenizer.model").exists()
    again = sources.run_tokenizer(cfg, ["unrelated text"], tmp_path)   # reloads, does not retrain
    assert again.fingerprint() == first.fingerprint()
    assert first.vocab_size <= common.model_vocab(cfg)
    ids = first.encode(train[0])
    assert first.decode(ids) == train[0] and len(ids) < 0.7 * len(train[0])   # BPE compresses


def test_bytes_and_vocab_check():
    assert isinstance(sources.run_tokenizer(_data(tokenizer="bytes"), []), ByteTokenizer)
    with pytest.raises(ValueError, match="config.model.vocab_size=256"):
        sources.check_vocab(ByteTokenizer(), 256)


def test_lm_rows_pack_to_the_configured_width():
    train, held_out, tok = sources.lm_rows(_data(tokenizer="bytes"))
    assert train["tokens"].shape[1] == 65 and held_out["tokens"].shape[1] == 65
    assert train["tokens"].max() < tok.vocab_size


def test_synthetic_comparison_mix_feeds_pm_batches():
    from hh.data.pm_data import pm_batches
    cfg = _data(synthetic_comparisons=50, eval_comparisons=20)
    mix = sources.comparisons(["synthetic-helpful", "synthetic-harmless"], "train", cfg)
    assert len(mix) == 100
    assert {mix[i]["tranche"] for i in range(100)} == {"synthetic-helpful", "synthetic-harmless"}
    assert len(sources.comparisons(["synthetic-pmp"], "test", cfg)) == 20
    batch = next(pm_batches(mix, ByteTokenizer(), 128, global_batch_size=4, seed=0))
    assert batch["chosen_tokens"].shape == (4, 128)
    with pytest.raises(ValueError, match="unknown comparison source 'helpful'"):
        sources.comparison_source("helpful", "train", cfg)


@pytest.mark.skipif(not REAL.exists(), reason="the real data folder is present in CI, absent on user machines")
def test_real_harmless_base_feeds_pm_batches(tmp_path):
    from hh.data.pm_data import pm_eval_batches
    cfg = _data(tfds_data_dir=str(tmp_path), manual_dir=str(REAL))
    source = sources.comparison_source("hh_rlhf/harmless-base", "test", cfg)
    assert len(source) == 2312
    first = next(pm_eval_batches(source, ByteTokenizer(), 512, batch_size=8))
    assert (first["chosen_tokens"][np.arange(8), first["chosen_eoc_index"]] == ByteTokenizer.eoc_id).all()
    assert first["pair_mask"].sum() == 8
