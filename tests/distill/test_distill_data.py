"""Distillation text: half generic, half dialogues, held-out texts disjoint from training, fixed
by the seed; rows are [bos] + text[:-1] -> text + eos, cut at text_len, masked on padding."""

import numpy as np

from configs import distill as distill_config
from hh.data.byte_tokenizer import ByteTokenizer
from hh.distill import data as distill_data


def test_the_mixture_is_half_dialogues_and_the_eval_texts_are_held_out():
    data_cfg = distill_config.get_config("smoke").data
    train, held_out = distill_data.distillation_texts(data_cfg)
    assert len(train) == data_cfg.distill_texts
    assert data_cfg.eval_texts // 2 <= len(held_out) <= data_cfg.eval_texts
    assert not set(train) & set(held_out)
    dialogues = [t for t in train if t.startswith("\n\nHuman:")]
    # the generic documents are themselves 70% dialogues (hh.data.synthetic.pretraining_documents)
    assert 0.5 * len(train) <= len(dialogues) <= 0.95 * len(train)
    assert sum("\n\nAssistant:" in t for t in held_out) >= data_cfg.eval_texts // 2
    again = distill_data.distillation_texts(data_cfg)
    assert again == (train, held_out)
    data_cfg.seed = 1
    assert distill_data.distillation_texts(data_cfg)[0] != train


def test_text_rows_shift_by_one_and_mask_padding():
    tok = ByteTokenizer()
    rows = distill_data.text_rows(["ab", "abcdefgh"], tok, text_len=5)
    a, b = tok.encode("a")[0], tok.encode("b")[0]
    np.testing.assert_array_equal(rows["inputs"][0], [tok.bos_id, a, b, 0, 0])
    np.testing.assert_array_equal(rows["targets"][0], [a, b, tok.eos_id, 0, 0])
    np.testing.assert_array_equal(rows["loss_mask"][0], [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(rows["targets"][1], tok.encode("abcde"))   # cut, no eos
    np.testing.assert_array_equal(rows["inputs"][1], [tok.bos_id, *tok.encode("abcd")])
    assert rows["loss_mask"][1].sum() == 5 and rows["segment_ids"][0].tolist() == [1, 1, 1, 0, 0]
    assert distill_data.rows_fingerprint(rows) != distill_data.rows_fingerprint(
        distill_data.text_rows(["ab", "abcdxfgh"], tok, text_len=5))
