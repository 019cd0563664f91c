"""Packing documents into LM rows: a hand-worked example, and the loss mask at boundaries."""

import numpy as np

from hh.data.packing import lm_example, pack_documents

BOS, EOS, PAD = 1, 2, 0


def test_pack_hand_example():
    # stream: [1 10 11 2] [1 20 2] [1 30 31 32 2] = 12 tokens, rows of width 5
    rows = pack_documents([[10, 11], [20], [30, 31, 32]], row_length=4, bos_id=BOS, eos_id=EOS,
                          pad_id=PAD)
    np.testing.assert_array_equal(rows["tokens"], [[1, 10, 11, 2, 1],
                                                   [20, 2, 1, 30, 31],
                                                   [32, 2, 0, 0, 0]])
    np.testing.assert_array_equal(rows["segment_ids"], [[1, 1, 1, 1, 2],
                                                        [1, 1, 2, 2, 2],
                                                        [1, 1, 0, 0, 0]])
    np.testing.assert_array_equal(rows["positions"], [[0, 1, 2, 3, 0],
                                                      [0, 1, 0, 1, 2],
                                                      [0, 1, 0, 0, 0]])


def test_loss_mask_never_crosses_documents_or_padding():
    rows = pack_documents([[10, 11], [20], [30, 31, 32]], 4, BOS, EOS, PAD)
    ex = lm_example(rows)
    np.testing.assert_array_equal(ex["inputs"], rows["tokens"][:, :-1])
    np.testing.assert_array_equal(ex["targets"], rows["tokens"][:, 1:])
    # row 0: 1->10, 10->11, 11->2 are in-document; 2->1 crosses into the next document
    np.testing.assert_array_equal(ex["loss_mask"], [[1, 1, 1, 0],
                                                    [1, 0, 1, 1],
                                                    [1, 0, 0, 0]])


def test_empty_and_exact_fit():
    rows = pack_documents([[5, 6, 7]], 4, BOS, EOS, PAD)   # exactly 5 tokens: one full row
    assert rows["tokens"].shape == (1, 5)
    assert (rows["segment_ids"] == 1).all()
    assert pack_documents([], 4, BOS, EOS, PAD)["tokens"].shape == (0, 5)
