"""The LM batch iterator: deterministic, resumable from its state, epoch-shuffled, and split
across processes by row range; the embedded corpus and byte tokenizer round-trip."""

import numpy as np
import pytest

from configs import lm as lm_config
from hh.data.byte_tokenizer import ByteTokenizer, padded_vocab_size
from hh.data.corpus import default_documents, split_documents
from hh.data.lm_data import eval_batches, lm_batches
from hh.data.sources import lm_rows


def _rows(n=10, width=5):
    tokens = np.arange(n * width, dtype=np.int32).reshape(n, width)
    return {"tokens": tokens, "segment_ids": np.ones_like(tokens), "positions": np.tile(np.arange(width), (n, 1))}


def test_batches_cover_each_epoch_once_and_reshuffle():
    it = lm_batches(_rows(10), global_batch_size=5, seed=3).sampler
    first_epoch = np.concatenate([it.indices(0), it.indices(1)])
    second_epoch = np.concatenate([it.indices(2), it.indices(3)])
    assert sorted(first_epoch) == list(range(10)) == sorted(second_epoch)
    assert list(first_epoch) != list(second_epoch)
    # a batch straddling the epoch boundary
    it3 = lm_batches(_rows(10), global_batch_size=4, seed=3).sampler
    straddle = it3.indices(2)   # rows 8, 9 of epoch 0 then rows 0, 1 of epoch 1
    assert list(straddle[:2]) == list(it3.epoch_order(0)[8:])
    assert list(straddle[2:]) == list(it3.epoch_order(1)[:2])


def test_resume_from_state_gives_the_same_batches():
    a = lm_batches(_rows(10), 4, seed=0)
    for _ in range(3):
        next(a)
    state = a.state()
    expected = [next(a)["inputs"] for _ in range(4)]
    b = lm_batches(_rows(10), 4, seed=0)
    b.restore(state)
    got = [next(b)["inputs"] for _ in range(4)]
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)
    with pytest.raises(ValueError, match="seed"):
        lm_batches(_rows(10), 4, seed=1).restore(state)


def test_process_row_ranges_partition_the_global_batch():
    full = lm_batches(_rows(10), 4, seed=0).batch(2)["inputs"]
    halves = [lm_batches(_rows(10), 4, seed=0, row_range=r).batch(2)["inputs"] for r in ((0, 2), (2, 4))]
    np.testing.assert_array_equal(np.concatenate(halves), full)


def test_eval_batches_visit_every_row_once_with_padding():
    rows = _rows(7)
    batches = list(eval_batches(rows, 3))
    assert len(batches) == 3
    seen = np.concatenate([b["inputs"][b["loss_mask"].any(1)] for b in batches])
    np.testing.assert_array_equal(seen, rows["tokens"][:, :-1])
    assert batches[-1]["loss_mask"][1:].sum() == 0   # the two padding rows count for nothing


def test_byte_tokenizer_round_trip():
    tok = ByteTokenizer()
    for text in ["plain", "  double  spaces\n\tand tabs", "unicode: é ß 中文 🤖",
                 "\n\nHuman: hi\n\nAssistant: hello", "def f(x):\n    return x\n"]:
        ids = tok.encode(text)
        assert min(ids) >= 4 and max(ids) < tok.vocab_size
        assert tok.decode(ids) == text
        assert tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id]) == text
    assert padded_vocab_size(tok.vocab_size) == 384
    assert padded_vocab_size(384) == 384


def test_default_corpus_split_is_stable_and_disjoint():
    docs = default_documents()
    assert len(docs) > 1000
    train, held_out = split_documents(docs, 0.05)
    assert 0.02 < len(held_out) / len(docs) < 0.08
    assert not set(train) & set(held_out)
    assert split_documents(list(reversed(docs)), 0.05)[1] == list(reversed(held_out))


def test_corpus_rows_have_the_configured_width():
    config = lm_config.get_config("smoke")
    train, held_out, _ = lm_rows(config.data)
    assert train["tokens"].shape[1] == config.data.seq_len + 1
    assert len(train["tokens"]) > 10 * len(held_out["tokens"]) > 0
    assert train["tokens"].max() < config.model.vocab_size


def test_worker_processes_and_prefetch_threads_give_the_same_batches_and_resume():
    """Grain's worker processes (and read threads) change how batches are made, never which: the
    iterator's state is the batch position, so a resume under another worker count sees the same."""
    plain = lm_batches(_rows(10), 4, seed=5)
    expected = [next(plain)["inputs"] for _ in range(6)]
    workers = lm_batches(_rows(10), 4, seed=5, workers=2, read_threads=2, prefetch=3)
    try:
        got = [next(workers)["inputs"] for _ in range(3)]
        state = workers.state()
    finally:
        workers.close()
    threads = lm_batches(_rows(10), 4, seed=5, read_threads=3)
    threads.restore(state)
    got += [next(threads)["inputs"] for _ in range(3)]
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)


def test_the_shuffle_is_grains_index_shuffle_reseeded_each_epoch():
    """The global order is grain's shuffle, reseeded per epoch: pinned here, since a grain release
    that moved it would change every run's data order (grain is pinned in setup.py for this)."""
    import grain
    sampler = lm_batches(_rows(10), 4, seed=3).sampler
    reference = grain.MapDataset.range(10).shuffle(seed=3).repeat(3)
    assert list(np.concatenate([sampler.indices(k) for k in range(7)])) == [reference[i] for i in range(28)]
