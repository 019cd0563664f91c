"""hh.data.inspect: histograms, token lengths, rendering, the CLI on a fixture and the real file."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from hh.data import inspect
from hh.data.byte_tokenizer import ByteTokenizer
from hh.data.tfds import prepare
from hh.data.tfds.red_team_attempts import FILE as RED_TEAM_FILE
from real_data import HH_RLHF


def write_pairs(path: Path, n: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        prompt = f"\n\nHuman: question {i} é\n\nAssistant:"
        chosen = " " if i == 0 else f" answer {i}"   # one empty chosen response, flagged
        lines.append(json.dumps({"chosen": prompt + chosen, "rejected": prompt + " no"}))
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    return path


def test_text_histogram_counts_every_value():
    lines = inspect.text_histogram([0, 1, 1, 5, 9, 9, 9], bins=5, width=10)
    counts = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert len(lines) == 5 and sum(counts) == 7 and counts == [3, 0, 1, 0, 3]
    assert lines[0].count("#") == 10
    assert inspect.text_histogram([]) == ["  (no values)"]


def test_token_lengths_with_the_byte_tokenizer():
    examples = [{"prompt": "héllo".encode(), "chosen": " ok"}, {"prompt": b"", "chosen": "🙂"}]
    got = inspect.token_lengths(examples, ByteTokenizer(), ("prompt", "chosen"))
    np.testing.assert_array_equal(got["prompt"], [6, 0])
    np.testing.assert_array_equal(got["chosen"], [3, 4])


def test_render_pair_shows_prompt_responses_and_flags():
    example = {"prompt": b"\n\nHuman: hi\n\nAssistant:",
               "rejected_prompt": b"\n\nHuman: ho\n\nAssistant:", "chosen": b" ",
               "rejected": b" no", "num_turns": 1, "source_line": 12, "prompts_differ": True,
               "empty_chosen": True}
    text = inspect.render_pair(example, 1)
    assert "source line 12" in text and "flags: prompts_differ, empty_chosen" in text
    assert "\n\nHuman: hi\n\nAssistant:" in text and "[chosen]  ' '" in text
    assert "[rejected]' no'" in text and "ho" in text


def test_cli_on_a_fixture_with_a_missing_split(tmp_path, capsys):
    write_pairs(tmp_path / "manual/harmless-base/test.jsonl.gz", 5)
    builder = prepare("hh_rlhf/harmless-base", tmp_path / "data", tmp_path / "manual",
                              checksums={})
    text = inspect.report(builder)
    assert "split 'train' not built" in text and "train.jsonl.gz" in text
    assert "[test]: 5 pairs" in text
    assert "flagged (kept unless skipped): {'empty_chosen': 1}" in text
    assert "skipped by reason: none" in text and "human turns per prompt: 1: 5" in text
    assert "prompt length in tokens (bytes; n=5;" in text and text.count("--- example") == 3
    # The CLI reuses the prepared dataset (the fixture would fail the pinned checksum otherwise).
    inspect.main(["--dataset", "hh_rlhf/harmless-base", "--data_dir", str(tmp_path / "data"),
                  "--split", "test"])
    assert "[test]: 5 pairs" in capsys.readouterr().out


def test_cli_keep_policy_flags_report_skips(tmp_path, capsys, monkeypatch):
    write_pairs(tmp_path / "manual/harmless-base/test.jsonl.gz", 5)
    monkeypatch.setattr("hh.data.tfds.hh_rlhf.SHA256", {})   # the fixture is not the release
    inspect.main(["--dataset", "hh_rlhf/harmless-base", "--data_dir", str(tmp_path / "data"),
                  "--manual_dir", str(tmp_path / "manual"), "--on_empty_response", "skip"])
    out = capsys.readouterr().out
    assert "[test]: 4 pairs" in out and "skipped by reason: {'empty_chosen': 1}" in out


def test_report_for_red_team(tmp_path):
    record = {"transcript": "\n\nHuman: x\n\nAssistant: y",
              "min_harmlessness_score_transcript": 1.0, "num_params": "13B", "model_type": "rlhf",
              "rating": 2.0, "task_description": "t", "red_team_member_id": 1,
              "is_upworker": True, "tags": None}
    path = tmp_path / "manual" / RED_TEAM_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(json.dumps([record] * 4).encode()))
    builder = prepare("red_team_attempts", tmp_path / "data", tmp_path / "manual",
                              checksums={})
    text = inspect.report(builder)
    assert "[train]: 4 attempts" in text and "transcript length in tokens" in text
    assert "rating 2.0, 13B rlhf" in text


@pytest.mark.skipif(not HH_RLHF.is_dir(), reason=f"{HH_RLHF} is absent")
def test_cli_on_the_real_harmless_base_test_file(tmp_path, capsys):
    inspect.main(["--dataset", "hh_rlhf/harmless-base", "--manual_dir", str(HH_RLHF),
                  "--data_dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "[test]: 2,312 pairs" in out and "(sha256 verified)" in out
    assert "flagged (kept unless skipped): {'empty_chosen': 4, 'prompts_differ': 5}" in out
    assert "human turns per prompt: 1: 662, 2: 584, 3: 590, 4: 354" in out
    assert "split 'train' not built" in out and out.count("--- example") == 3
