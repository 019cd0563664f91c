"""Prompt batches: left-truncated, left-padded, positions counting real tokens only."""

import numpy as np

from hh.data.byte_tokenizer import ByteTokenizer
from hh.data.prompt_data import encode_prompt, left_padded, prompt_batches

TOK = ByteTokenizer()


def test_encode_prompt_keeps_the_end():
    assert encode_prompt("abcdef", TOK, 4) == [TOK.bos_id, *TOK.encode("def")]
    assert encode_prompt("ab", TOK, 4) == [TOK.bos_id, *TOK.encode("ab")]


def test_left_padding_hand_example():
    out = left_padded([[1, 7, 8], [1, 9]], width=4)
    np.testing.assert_array_equal(out["tokens"], [[0, 1, 7, 8], [0, 0, 1, 9]])
    np.testing.assert_array_equal(out["segment_ids"], [[0, 1, 1, 1], [0, 0, 1, 1]])
    np.testing.assert_array_equal(out["positions"], [[0, 0, 1, 2], [0, 0, 0, 1]])
    np.testing.assert_array_equal(out["prompt_length"], [3, 2])


def test_prompt_batches_carry_the_kind_and_resume():
    source = [{"prompt": "\n\nHuman: q\n\nAssistant:", "kind": "harmless"},
              {"prompt": "\n\nHuman: r\n\nAssistant:", "kind": b"helpful"}]
    it = prompt_batches(source, TOK, 32, global_batch_size=2, seed=0)
    b = next(it)
    assert sorted(b["kind"].tolist()) == [0, 1]
    assert (b["tokens"][:, -1] == TOK.encode(":")[0]).all()   # prompts end in lockstep
    state = it.state()
    again = prompt_batches(source, TOK, 32, 2, seed=0)
    again.restore(state)
    np.testing.assert_array_equal(next(again)["tokens"], next(it)["tokens"])
