"""hh_rlhf TFDS builder and its raw-file readers: the real harmless-base/test file, generated
fixtures for the other tranches, missing splits, the keep policy, and every bad-input case."""

import collections
import gzip
import json
from pathlib import Path

import pytest
import tensorflow_datasets as tfds

from hh.data.errors import DataError
from hh.data.tfds import files
from hh.data.tfds.hh_rlhf import HhRlhf, read_comparisons, split_comparison
from real_data import HH_RLHF

REAL_TEST = HH_RLHF / "harmless-base/test.jsonl.gz"
needs_real = pytest.mark.skipif(not HH_RLHF.is_dir(), reason=f"{HH_RLHF} is absent")

# Measured on the released harmless-base/test (docs/paper-notes.md §3).
REAL_TURNS = {1: 662, 2: 584, 3: 590, 4: 354, 5: 69, 6: 20, 7: 16, 8: 7, 9: 5, 10: 1, 11: 2,
              12: 1, 18: 1}
REAL_PROMPTS_DIFFER_LINES = {1255, 1689, 1951, 1953, 2037}
REAL_EMPTY_CHOSEN_LINES = {87, 517, 926, 1104}


def write_gz(path: Path, lines) -> Path:
    """A gzip file of `lines` (str or bytes), each followed by a newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join((l if isinstance(l, bytes) else l.encode()) + b"\n" for l in lines)
    path.write_bytes(gzip.compress(data))
    return path


def pair_line(i: int, turns: int = 1) -> str:
    prompt = "".join(f"\n\nHuman: question {i}.{t}\n\nAssistant: answer {t}"
                     for t in range(turns - 1))
    prompt += f"\n\nHuman: question {i}\n\nAssistant:"
    return json.dumps({"chosen": prompt + f" good {i}", "rejected": prompt + f" bad {i} ✓"})


def build(manual_dir, data_dir, tranche="harmless-base", **kwargs):
    builder = HhRlhf(config=tranche, data_dir=str(data_dir), file_format="array_record", **kwargs)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


def examples(builder, split):
    source = builder.as_data_source(split=split)
    return [source[i] for i in range(len(source))]


@needs_real
def test_real_harmless_base_test_builds_with_the_published_statistics(tmp_path):
    builder = build(HH_RLHF, tmp_path)
    assert builder.info.splits["test"].num_examples == 2312
    report = builder.info.metadata["splits"]["test"]
    assert report["sha256_verified"] and report["sha256"] == files.sha256_file(REAL_TEST)
    assert report["pairs_read"] == report["pairs_kept"] == 2312 and report["skipped"] == {}
    assert report["flagged"] == {"prompts_differ": 5, "empty_chosen": 4}
    assert set(builder.info.metadata["missing_splits"]) == {"train"}

    got = examples(builder, "test")
    assert collections.Counter(int(e["num_turns"]) for e in got) == REAL_TURNS
    assert {int(e["source_line"]) for e in got if e["prompts_differ"]} == REAL_PROMPTS_DIFFER_LINES
    assert {int(e["source_line"]) for e in got if e["empty_chosen"]} == REAL_EMPTY_CHOSEN_LINES
    assert not any(e["identical"] or e["empty_rejected"] for e in got)
    assert {e["tranche"] for e in got} == {b"harmless-base"}
    # Byte-exact: prompt + response gives back each source transcript.
    raw = {line: (c, r) for line, c, r in read_comparisons(REAL_TEST)}
    for e in got:
        chosen, rejected = raw[int(e["source_line"])]
        assert (e["prompt"] + e["chosen"]).decode() == chosen
        assert (e["rejected_prompt"] + e["rejected"]).decode() == rejected

    with pytest.raises(DataError, match=r"train\.jsonl\.gz: split 'train' .* was not built"):
        builder.as_data_source(split="train")
    reread = tfds.builder("hh_rlhf/harmless-base", data_dir=str(tmp_path))   # from the files
    assert len(reread.as_data_source(split="test")) == 2312


@needs_real
def test_real_file_with_skip_policy_counts_every_skip(tmp_path):
    policy = {"on_prompt_mismatch": "skip", "on_empty_response": "skip"}
    builder = build(HH_RLHF, tmp_path, keep_policy=policy)
    assert builder.info.splits["test"].num_examples == 2312 - 9
    assert builder.info.metadata["splits"]["test"]["skipped"] == {"prompts_differ": 5,
                                                                   "empty_chosen": 4}
    # Reusing the prepared data with another policy would silently ignore it: refused.
    with pytest.raises(ValueError, match="was built with keep_policy"):
        HhRlhf(config="harmless-base", data_dir=str(tmp_path), keep_policy={})
    HhRlhf(config="harmless-base", data_dir=str(tmp_path))   # no policy asked: reuse is fine


@pytest.mark.parametrize("tranche", ["helpful-base", "helpful-online", "helpful-rejection-sampled"])
def test_generated_tranches_build_both_splits(tmp_path, tranche):
    manual = tmp_path / "manual"
    write_gz(manual / tranche / "train.jsonl.gz", [pair_line(i, 1 + i % 3) for i in range(7)])
    test_path = write_gz(manual / tranche / "test.jsonl.gz", [pair_line(i) for i in range(3)])
    # Fixtures are not the released files, so no hash is pinned; the actual one is recorded.
    builder = build(manual, tmp_path / "data", tranche, checksums={})
    assert builder.info.splits["train"].num_examples == 7
    assert builder.info.splits["test"].num_examples == 3
    meta = builder.info.metadata
    assert meta["missing_splits"] == {} and not meta["splits"]["test"]["sha256_verified"]
    assert meta["splits"]["test"]["sha256"] == files.sha256_file(test_path)
    train = sorted(examples(builder, "train"), key=lambda e: int(e["source_line"]))
    assert [int(e["source_line"]) for e in train] == list(range(1, 8))
    assert [int(e["num_turns"]) for e in train] == [1 + i % 3 for i in range(7)]
    assert train[0]["chosen"] == b" good 0" and train[0]["rejected"] == " bad 0 ✓".encode()
    assert {e["tranche"] for e in train} == {tranche.encode()}


def test_without_manual_dir_downloads_from_github(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"   # stands in for the network
    for split, n in (("train", 3), ("test", 2)):
        write_gz(mirror / f"helpful-online/{split}.jsonl.gz", [pair_line(i) for i in range(n)])
    requested = []

    def fake_download(self, urls):
        requested.extend(urls.values())
        return {k: mirror / url.split("/raw/master/")[1] for k, url in urls.items()}

    monkeypatch.setattr(tfds.download.DownloadManager, "download", fake_download)
    builder = HhRlhf(config="helpful-online", data_dir=str(tmp_path / "data"),
                     file_format="array_record", checksums={})
    builder.download_and_prepare()
    assert sorted(requested) == [
        "https://github.com/anthropics/hh-rlhf/raw/master/helpful-online/test.jsonl.gz",
        "https://github.com/anthropics/hh-rlhf/raw/master/helpful-online/train.jsonl.gz"]
    assert builder.info.splits["train"].num_examples == 3
    assert builder.info.splits["test"].num_examples == 2


def test_only_test_split_present_builds_test_and_names_the_missing_train(tmp_path):
    manual = tmp_path / "manual"
    write_gz(manual / "harmless-base/test.jsonl.gz", [pair_line(i) for i in range(4)])
    builder = build(manual, tmp_path / "data", checksums={})
    assert list(builder.info.splits) == ["test"]
    missing = builder.info.metadata["missing_splits"]
    assert missing == {"train": str((manual / "harmless-base/train.jsonl.gz").resolve())}
    for request in ("train", "train[:10%]", "test+train"):
        with pytest.raises(DataError, match="harmless-base/train.jsonl.gz: split 'train'"):
            builder.as_data_source(split=request)


def test_tranche_absent_from_manual_dir_is_a_clear_error(tmp_path):
    write_gz(tmp_path / "manual/helpful-base/test.jsonl.gz", [pair_line(0)])
    with pytest.raises(DataError, match="harmless-base: no train or test .jsonl.gz file"):
        build(tmp_path / "manual", tmp_path / "data")


def test_pinned_checksum_mismatch_names_file_and_both_hashes(tmp_path):
    path = write_gz(tmp_path / "manual/helpful-base/test.jsonl.gz", [pair_line(0)])
    actual = files.sha256_file(path)
    with pytest.raises(DataError) as e:
        build(tmp_path / "manual", tmp_path / "data", "helpful-base")
    message = str(e.value)
    assert "helpful-base/test.jsonl.gz" in message and "sha256 mismatch" in message
    assert "8be3fc1a13b27901631696f2be6f184c799f1baeaf145f53ac5db24960adc37b" in message
    assert actual in message


def test_bad_line_aborts_the_build_with_file_and_line(tmp_path):
    write_gz(tmp_path / "manual/harmless-base/test.jsonl.gz", [pair_line(0), "{oops"])
    with pytest.raises(DataError, match=r"test\.jsonl\.gz, line 2: malformed JSON"):
        build(tmp_path / "manual", tmp_path / "data", checksums={})


# --- bad input, read without TFDS -------------------------------------------------------------

def read_all(path):
    return list(read_comparisons(path))


def assert_names(error, path, line, problem):
    message = str(error.value)
    assert str(path) in message and problem in message, message
    if line is not None:
        assert f"line {line}:" in message, message


def test_malformed_json_line(tmp_path):
    path = write_gz(tmp_path / "x.jsonl.gz", [pair_line(0), pair_line(1), '{"chosen": "a",'])
    with pytest.raises(DataError) as e:
        read_all(path)
    assert_names(e, path, 3, "malformed JSON")


def test_missing_field(tmp_path):
    path = write_gz(tmp_path / "x.jsonl.gz", [pair_line(0), json.dumps({"chosen": "\n\nHuman: a"})])
    with pytest.raises(DataError) as e:
        read_all(path)
    assert_names(e, path, 2, "missing field 'rejected'")


def test_wrong_field_type_and_non_object(tmp_path):
    path = write_gz(tmp_path / "x.jsonl.gz", [json.dumps({"chosen": 3, "rejected": "r"})])
    with pytest.raises(DataError) as e:
        read_all(path)
    assert_names(e, path, 1, "field 'chosen' should be a string, got int")
    path = write_gz(tmp_path / "y.jsonl.gz", [pair_line(0), "[1, 2]"])
    with pytest.raises(DataError) as e:
        read_all(path)
    assert_names(e, path, 2, "expected a JSON object, got list")


def test_non_utf8_bytes(tmp_path):
    bad = b'{"chosen": "\n\nHuman: caf\xe9", "rejected": "r"}'.replace(b"\n", b"\\n")
    path = write_gz(tmp_path / "x.jsonl.gz", [pair_line(0), pair_line(1), bad])
    with pytest.raises(DataError) as e:
        read_all(path)
    assert_names(e, path, 3, "invalid UTF-8: byte b'\\xe9' at byte column 27")


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file(tmp_path, content):
    for path in (tmp_path / "x.jsonl.gz", tmp_path / "x.jsonl"):
        path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
        with pytest.raises(DataError) as e:
            read_all(path)
        assert_names(e, path, None, "empty file: no records")


def test_checksum_mismatch(tmp_path):
    path = write_gz(tmp_path / "x.jsonl.gz", [pair_line(0)])
    with pytest.raises(DataError) as e:
        files.verify_sha256(path, "0" * 64)
    actual = files.sha256_file(path)
    assert_names(e, path, None, f"sha256 mismatch: expected {'0' * 64}, actual {actual}")
    assert files.verify_sha256(path, files.sha256_file(path).upper()) == files.sha256_file(path)


def test_corrupt_gzip_and_lfs_pointer(tmp_path):
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(pair_line(i).encode() for i in range(50)))[:-20])
    with pytest.raises(DataError) as e:
        read_all(path)
    assert_names(e, path, None, "corrupt gzip data")
    path.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:8be3\nsize 875191\n")
    with pytest.raises(DataError) as e:
        read_all(path)
    assert_names(e, path, None, "is a git-lfs pointer")


def test_transcript_without_assistant_turn(tmp_path):
    with pytest.raises(DataError) as e:
        split_comparison(tmp_path / "x.jsonl.gz", 7, "\n\nHuman: hi",
                         "\n\nHuman: hi\n\nAssistant: x")
    assert_names(e, tmp_path / "x.jsonl.gz", 7, "no '\\n\\nAssistant:' turn")


def test_plain_jsonl_and_blank_lines_are_read(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(pair_line(0) + "\n\n" + pair_line(1) + "\n")
    assert [line for line, _, _ in read_all(path)] == [1, 3]


# --- local tranches: the user's own exported comparisons (hh.serve.export) ----------------------

def prepare_local(manual_dir, data_dir, tranche="local"):
    from hh.data.tfds import prepare

    return prepare(f"hh_rlhf/{tranche}", data_dir, manual_dir)


def test_local_tranche_reads_gz_and_plain_jsonl_without_a_pinned_hash(tmp_path):
    manual = tmp_path / "manual"
    train = write_gz(manual / "local/train.jsonl.gz", [pair_line(i, 2) for i in range(5)])
    test = manual / "local/test.jsonl"
    test.write_text("\n".join(pair_line(i) for i in range(2)) + "\n")
    builder = prepare_local(manual, tmp_path / "data")
    assert builder.info.splits["train"].num_examples == 5
    assert builder.info.splits["test"].num_examples == 2
    reports = builder.info.metadata["splits"]
    for split, path in (("train", train), ("test", test)):
        assert reports[split]["sha256"] == files.sha256_file(path)
        assert not reports[split]["sha256_verified"]
    assert {e["tranche"] for e in examples(builder, "test")} == {b"local"}


def test_local_tranche_needs_a_manual_dir_and_one_file_per_split(tmp_path):
    with pytest.raises(DataError, match="a local tranche is read from manual_dir"):
        HhRlhf(config="local", data_dir=str(tmp_path / "data"),
               file_format="array_record").download_and_prepare()
    write_gz(tmp_path / "manual/local-harmless/train.jsonl.gz", [pair_line(0)])
    (tmp_path / "manual/local-harmless/train.jsonl").write_text(pair_line(1) + "\n")
    with pytest.raises(DataError, match="both train.jsonl.gz and train.jsonl exist"):
        prepare_local(tmp_path / "manual", tmp_path / "data", "local-harmless")


def test_local_tranche_is_rebuilt_when_its_files_change_and_reused_when_not(tmp_path):
    manual, data = tmp_path / "manual", tmp_path / "data"
    write_gz(manual / "local/train.jsonl.gz", [pair_line(i) for i in range(3)])
    builder = prepare_local(manual, data)
    info_file = Path(builder.data_dir) / "dataset_info.json"
    stamp = info_file.stat().st_mtime_ns
    assert not builder.sources_changed(manual)
    assert prepare_local(manual, data).info.splits["train"].num_examples == 3
    assert info_file.stat().st_mtime_ns == stamp   # unchanged files: the build is reused

    write_gz(manual / "local/train.jsonl.gz", [pair_line(i) for i in range(4)])   # a new export
    assert builder.sources_changed(manual)
    builder = prepare_local(manual, data)
    assert builder.info.splits["train"].num_examples == 4
    with pytest.raises(DataError, match="split 'test' .* prepare again: a local tranche is rebuilt"):
        builder.as_data_source(split="test")

    write_gz(manual / "local/test.jsonl.gz", [pair_line(9)])   # a split appears
    builder = prepare_local(manual, data)
    assert {s: builder.info.splits[s].num_examples for s in builder.info.splits} == {"train": 4, "test": 1}
    assert len(builder.as_data_source(split="test")) == 1

    (manual / "local/test.jsonl.gz").unlink()   # ... and goes again
    builder = prepare_local(manual, data)
    assert list(builder.info.splits) == ["train"] and "test" in builder.info.metadata["missing_splits"]


def test_released_tranches_are_never_rebuilt_by_a_hash_check(tmp_path):
    manual = tmp_path / "manual"
    write_gz(manual / "harmless-base/test.jsonl.gz", [pair_line(i) for i in range(2)])
    builder = build(manual, tmp_path / "data", checksums={})
    write_gz(manual / "harmless-base/test.jsonl.gz", [pair_line(i) for i in range(3)])
    assert not builder.sources_changed(manual)   # pinned releases: a fresh data_dir, as before
