"""PM batches: EOC at the end of each side, left-truncated prompts, masks, padding pairs; a FILE.jsonl
source whose rows lack a side or carry a non-numeric weight fails naming file, line and field."""

import json

import numpy as np
import pytest

from configs import pm as pm_config
from hh.data import pm_sources, sources
from hh.data.byte_tokenizer import ByteTokenizer
from hh.data.errors import DataError
from hh.data.pm_data import encode_side, pm_batches, pm_eval_batches, truncation_report

TOK = ByteTokenizer()
BOS, EOC = TOK.bos_id, TOK.eoc_id


def _ids(text):
    return TOK.encode(text)


def test_encode_side_fits_and_cuts_the_prompt_from_the_left():
    ids, start, flags = encode_side(_ids("abcdef"), _ids("XY"), TOK, seq_len=6)
    # budget 6: bos + 2 prompt tokens + 2 response tokens + eoc; the prompt keeps its END
    assert ids == [BOS, *_ids("ef"), *_ids("XY"), EOC] and start == 3
    assert flags == {"prompt_truncated": True}
    ids, start, flags = encode_side(_ids("ab"), _ids("XY"), TOK, seq_len=10)
    assert ids == [BOS, *_ids("ab"), *_ids("XY"), EOC] and start == 3 and flags == {}


def test_a_response_longer_than_the_context_is_cut_and_flagged():
    ids, start, flags = encode_side(_ids("prompt"), _ids("RESPONSE"), TOK, seq_len=5)
    assert ids == [BOS, *_ids("RES"), EOC] and start == 1
    assert flags == {"response_truncated": True, "prompt_truncated": True}


def test_batch_arrays_hand_example():
    source = [{"prompt": b"\n\nHuman: hi\n\nAssistant:", "chosen": b" yes", "rejected": " no"}]
    batches = pm_batches(source, TOK, seq_len=40, global_batch_size=2, seed=0)
    b = next(batches)
    n_prompt = len(_ids("\n\nHuman: hi\n\nAssistant:"))
    chosen_len = 1 + n_prompt + 4 + 1
    rejected_len = 1 + n_prompt + 3 + 1
    np.testing.assert_array_equal(b["chosen_eoc_index"], [chosen_len - 1] * 2)
    np.testing.assert_array_equal(b["rejected_eoc_index"], [rejected_len - 1] * 2)
    assert b["chosen_tokens"][0, chosen_len - 1] == EOC and b["chosen_tokens"][0, chosen_len] == 0
    assert b["chosen_segment_ids"][0].sum() == chosen_len
    np.testing.assert_array_equal(b["chosen_positions"][0, :chosen_len], np.arange(chosen_len))
    # response mask covers " yes" and eoc
    assert b["chosen_response_mask"][0].sum() == 5
    assert b["chosen_response_mask"][0, 1 + n_prompt] == 1 and b["chosen_response_mask"][0, n_prompt] == 0
    # LM targets: next tokens, never predicting eoc, nothing past the end
    np.testing.assert_array_equal(b["chosen_targets"][0, :chosen_len - 1], b["chosen_tokens"][0, 1:chosen_len])
    assert b["chosen_loss_mask"][0].sum() == chosen_len - 2
    np.testing.assert_array_equal(b["pair_mask"], [1, 1])


def test_eval_batches_pad_with_masked_pairs_and_resume_is_exact():
    source = [{"prompt": f"p{i}", "chosen": "c", "rejected": "r"} for i in range(5)]
    evals = list(pm_eval_batches(source, TOK, 16, batch_size=4))
    np.testing.assert_array_equal(evals[1]["pair_mask"], [1, 0, 0, 0])
    assert evals[1]["chosen_segment_ids"][1:].sum() == 0
    a = pm_batches(source, TOK, 16, 2, seed=1)
    next(a)
    state = a.state()
    expected = next(a)["chosen_tokens"]
    b = pm_batches(source, TOK, 16, 2, seed=1)
    b.restore(state)
    np.testing.assert_array_equal(next(b)["chosen_tokens"], expected)


def test_truncation_report_counts_flags():
    source = [{"prompt": "x" * 50, "chosen": "c", "rejected": "r"},
              {"prompt": "x", "chosen": "c", "rejected": "r" * 50}]
    report = truncation_report(source, TOK, seq_len=20)
    assert report["pairs"] == 2
    assert report["chosen_prompt_truncated"] == 1 and report["rejected_prompt_truncated"] == 2
    assert report["rejected_response_truncated"] == 1 and report["chosen_response_truncated"] == 0


# --- a FILE.jsonl source: bad rows named by file, line and field ------------------------------

def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


GOOD_ROW = {"prompt": "\n\nHuman: hi\n\nAssistant:", "chosen": " yes", "rejected": " no"}


def file_pm_config(path):
    config = pm_config.get_config("smoke")
    config.data.helpful_sources, config.data.harmless_sources = [path], []
    config.data.helpful_fraction, config.data.train_pairs = 1.0, 2
    config.data.eval_sources = [path]
    return config


@pytest.mark.parametrize("missing", ["chosen", "rejected", "prompt"])
def test_a_pm_file_source_missing_a_side_names_file_line_and_field(tmp_path, missing):
    bad = {k: v for k, v in GOOD_ROW.items() if k != missing}
    config = file_pm_config(write_rows(tmp_path / "pairs.jsonl", [GOOD_ROW, bad]))
    pattern = rf"pairs\.jsonl, line 2: missing field '{missing}'"
    with pytest.raises(DataError, match=pattern):
        next(pm_batches(pm_sources.train_source(config.data, config.train), TOK, 40, 2, seed=0))
    with pytest.raises(DataError, match=pattern):
        pm_sources.eval_source(config.data)


def test_a_non_numeric_weight_names_file_line_and_field(tmp_path):
    for n, weight in enumerate(["abc", True, None]):
        path = write_rows(tmp_path / f"w{n}.jsonl", [GOOD_ROW, {**GOOD_ROW, "weight": weight}])
        with pytest.raises(DataError, match=rf"w{n}\.jsonl, line 2: field 'weight' must be a finite number"):
            source = sources.comparison_source(path, "train", file_pm_config(path).data)
            next(pm_eval_batches(source, TOK, 40, 2))
    path = write_rows(tmp_path / "ok.jsonl", [GOOD_ROW, {**GOOD_ROW, "weight": 2}])
    source = sources.comparison_source(path, "train", file_pm_config(path).data)
    assert [row.get("weight") for row in source] == [None, 2.0]


def test_a_prompt_file_still_serves_rl_prompts_without_responses(tmp_path):
    path = write_rows(tmp_path / "prompts.jsonl", [{"prompt": "\n\nHuman: a\u2028b\n\nAssistant:"}])
    rows = pm_sources.spec_source(path, "train", file_pm_config(path).data)
    assert len(rows) == 1 and rows[0]["prompt"] == "\n\nHuman: a\u2028b\n\nAssistant:"
