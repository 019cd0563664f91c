"""red_team_attempts: one JSON array or JSON lines, the misspelled key, nulls, the TFDS builder and
bad input (file, line and problem in every message)."""

import gzip
import json
import math

import pytest
import tensorflow_datasets as tfds

from hh.data.errors import DataError
from hh.data.tfds import files
from hh.data.tfds.red_team_attempts import FILE, RedTeamAttempts, read_red_team


def attempt(i, **changes):
    record = {
        "transcript": f"\n\nHuman: attack {i}\n\nAssistant: no.",
        "min_harmlessness_score_transcript": 0.5 - i,
        "num_params": "52B",
        "model_type": "context distillation",
        "rating": float(i % 5),
        "task_description": f"task {i}",
        "task_descripton_harmlessness_score": 1.25,   # sic, as in the release
        "red_team_member_id": 3 + i,
        "is_upworker": i % 2 == 0,
        "tags": None,
    }
    record.update(changes)
    return {k: v for k, v in record.items() if v is not ...}   # `...` drops a key


RECORDS = [
    attempt(1),
    attempt(2, task_descripton_harmlessness_score=..., task_description_harmlessness_score=-0.5,
            tags=["Violence", "Theft"], red_team_member_id="a1b2", num_params=52000000000),
    attempt(3, task_descripton_harmlessness_score=..., rating=None, tags=...),
]


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def array_bytes(records, indent=None) -> bytes:
    return json.dumps(records, indent=indent, ensure_ascii=False).encode()


def lines_bytes(records) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def check_examples(got):
    assert [n for n, _, _ in got] == [1, 2, 3]
    (_, _, a), (_, _, b), (_, _, c) = got
    assert a["task_description_harmlessness_score"] == 1.25 and a["tags"] == []
    assert a["red_team_member_id"] == "4" and a["is_upworker"] is False
    assert b["task_description_harmlessness_score"] == -0.5 and b["tags"] == ["Violence", "Theft"]
    assert b["red_team_member_id"] == "a1b2" and b["num_params"] == "52000000000"
    assert math.isnan(c["task_description_harmlessness_score"]) and math.isnan(c["rating"])
    assert c["tags"] == []
    assert c["min_harmlessness_score_transcript"] == -2.5
    assert c["model_type"] == "context distillation"


@pytest.mark.parametrize("form", ["array", "indented array", "json lines"])
def test_reads_array_and_json_lines_alike(tmp_path, form):
    data = {"array": array_bytes(RECORDS), "indented array": array_bytes(RECORDS, indent=2),
            "json lines": lines_bytes(RECORDS)}[form]
    check_examples(list(read_red_team(write(tmp_path / "rt.jsonl.gz", data))))


def test_line_numbers_point_at_each_array_element(tmp_path):
    text = "[\n" + ",\n".join(json.dumps(r) for r in RECORDS) + "\n]\n"
    got = list(read_red_team(write(tmp_path / "rt.json", text.encode())))
    assert [line for _, line, _ in got] == [2, 3, 4]


def test_builder_from_manual_dir(tmp_path):
    write(tmp_path / "manual" / FILE, array_bytes(RECORDS))
    builder = RedTeamAttempts(data_dir=str(tmp_path / "data"), file_format="array_record",
                              checksums={})
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual")))
    source = builder.as_data_source(split="train")
    got = sorted((source[i] for i in range(len(source))), key=lambda e: int(e["record"]))
    assert len(got) == 3 and not builder.info.metadata["sha256_verified"]
    assert [e["transcript"].decode() for e in got] == [r["transcript"] for r in RECORDS]
    assert list(got[1]["tags"]) == [b"Violence", b"Theft"] and len(got[0]["tags"]) == 0
    assert math.isnan(got[2]["task_description_harmlessness_score"])
    assert bool(got[0]["is_upworker"]) is False
    assert got[1]["red_team_member_id"] == b"a1b2"


def test_builder_checks_the_pinned_checksum(tmp_path):
    path = write(tmp_path / "manual" / FILE, array_bytes(RECORDS))
    builder = RedTeamAttempts(data_dir=str(tmp_path / "data"), file_format="array_record")
    with pytest.raises(DataError) as e:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual")))
    message = str(e.value)
    assert str(path) in message and "sha256 mismatch" in message
    assert "4c7b0069991460f0064f279fd400b51f3f0095697d14d7793c49b0925f80814f" in message
    assert files.sha256_file(path) in message


def test_builder_names_a_missing_file(tmp_path):
    (tmp_path / "manual/harmless-base").mkdir(parents=True)
    (tmp_path / "manual/harmless-base/test.jsonl.gz").write_bytes(b"x")
    builder = RedTeamAttempts(data_dir=str(tmp_path / "data"), file_format="array_record")
    with pytest.raises(DataError, match="red_team_attempts.jsonl.gz: file not found in manual_dir"):
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual")))


# --- bad input ---------------------------------------------------------------------------------

def error_from(path):
    with pytest.raises(DataError) as e:
        list(read_red_team(path))
    return str(e.value)


def test_missing_field_in_an_indented_array_names_its_line(tmp_path):
    records = RECORDS[:1] + [attempt(2, transcript=...)]
    path = write(tmp_path / "rt.jsonl.gz", ("[\n" + ",\n".join(json.dumps(r) for r in records)
                                            + "\n]").encode())
    message = error_from(path)
    assert str(path) in message and "line 3:" in message and "missing field 'transcript'" in message


def test_wrong_types(tmp_path):
    path = write(tmp_path / "a.jsonl.gz", lines_bytes([attempt(1, is_upworker="yes")]))
    assert "line 1: field 'is_upworker' should be true or false, got str" in error_from(path)
    path = write(tmp_path / "b.jsonl.gz", lines_bytes([attempt(1), attempt(2, tags=["a", 3])]))
    assert "line 2: field 'tags' should hold strings" in error_from(path)
    path = write(tmp_path / "c.jsonl.gz", lines_bytes([attempt(1, rating="high")]))
    assert "line 1: field 'rating' should be a number or null, got str" in error_from(path)


def test_malformed_json(tmp_path):
    path = write(tmp_path / "a.jsonl.gz", array_bytes(RECORDS, indent=1)[:-40])   # cut short
    message = error_from(path)
    assert str(path) in message and "malformed JSON in the array" in message and "line " in message
    path = write(tmp_path / "b.jsonl.gz", b"[" + json.dumps(RECORDS[0]).encode() + b"\n 7 7]")
    assert f"{path}, line 2: malformed JSON in the array: expected ','" in error_from(path)
    path = write(tmp_path / "c.jsonl.gz", lines_bytes(RECORDS[:2]) + b"{\"transcript\": \n")
    assert f"{path}, line 3: malformed JSON" in error_from(path)


def test_non_utf8_and_empty(tmp_path):
    data = array_bytes(RECORDS, indent=2).replace("task 2".encode(), b"task \xff")
    path = write(tmp_path / "a.jsonl.gz", data)
    line = data[:data.index(b"\xff")].count(b"\n") + 1
    assert f"{path}, line {line}: invalid UTF-8" in error_from(path)
    path = write(tmp_path / "b.jsonl.gz", b"")
    assert f"{path}: empty file: no records" in error_from(path)
    path = write(tmp_path / "c.jsonl.gz", b" [\n ]\n")
    assert f"{path}, line 2: empty file: no records (the JSON array is empty)" in error_from(path)
