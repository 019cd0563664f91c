"""hh.data.records, the one JSON-lines reader: lines end at "\\n" only (U+2028 and friends are text),
gzip by magic bytes, streamed, every bad input a DataError naming file and line, and the torn last
line of an append-only log (metrics.jsonl, samples.jsonl) dropped only where asked, so a resume
after a kill works."""

import gzip
import json
import logging

import pytest

from hh.data.errors import DataError
from hh.data.records import json_lines, jsonl_records, utf8_lines
from hh.rl.stage import SampleLog
from hh.serve.export import write_jsonl
from hh.train.metrics import MetricsWriter, read_metrics

# Every character str.splitlines() splits at besides "\n" and "\r", a NUL and an emoji.
AWKWARD = ["\u2028", "\u2029", "\x85", "\x1c", "\x1d", "\x1e", "\x0b", "\x0c", "\x00", "\U0001f600"]


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def rows(path, **kwargs):
    return [record for _, record in jsonl_records(path, **kwargs)]


@pytest.mark.parametrize("name", ["x.jsonl", "x.jsonl.gz"])
def test_every_awkward_character_survives_a_round_trip(tmp_path, name):
    written = [{"chosen": f"a{c}b", "rejected": c * 3} for c in AWKWARD]
    path = tmp_path / name
    write_jsonl(written, path)   # ensure_ascii=False: U+2028, U+2029, U+0085 are written raw
    raw = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
    assert "\u2028".encode() in raw and "\x85".encode() in raw
    assert rows(path) == written
    assert [n for n, _ in jsonl_records(path)] == list(range(1, len(AWKWARD) + 1))


def test_utf8_lines_split_at_newline_only(tmp_path):
    path = write(tmp_path / "x.txt", "a\u2028b\x85c\r\nd\x0ce".encode())
    assert list(utf8_lines(path)) == [(1, "a\u2028b\x85c\r\n"), (2, "d\x0ce")]


def test_a_bad_line_in_the_middle_names_file_and_line(tmp_path):
    path = write(tmp_path / "x.jsonl", b'{"a": 1}\n\n{"a": 2}\n{"a": \n{"a": 4}\n')
    with pytest.raises(DataError, match=r"x\.jsonl, line 4: malformed JSON at column 7: Expecting value"):
        rows(path)
    with pytest.raises(DataError, match=r"x\.jsonl, line 4: malformed JSON"):
        rows(path, torn_tail="drop")   # the option forgives the last line only
    path = write(tmp_path / "y.jsonl", b'{"a": 1}\n[1]\n')
    with pytest.raises(DataError, match=r"y\.jsonl, line 2: expected a JSON object, got list"):
        rows(path)
    path = write(tmp_path / "z.jsonl", b'{"a": 1}\n{"a": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"z\.jsonl, line 2: invalid UTF-8: byte b'\\xe9' at byte column 11"):
        rows(path)


def test_a_torn_last_line_is_dropped_only_with_the_option(tmp_path, caplog):
    path = write(tmp_path / "log.jsonl", b'{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    with pytest.raises(DataError, match=r"log\.jsonl, line 3: malformed JSON"):
        rows(path)
    with caplog.at_level(logging.WARNING):
        assert rows(path, torn_tail="drop") == [{"step": 1}, {"step": 2}]
    assert "log.jsonl, line 3: dropped an unterminated last line" in caplog.text
    # cut inside a multi-byte character: torn too
    write(path, b'{"step": 1}\n{"step": 2, "s": "\xe2\x80')
    assert rows(path, torn_tail="drop") == [{"step": 1}]
    # a bad last line WITH its newline was written whole: still an error
    write(path, b'{"step": 1}\n{"step": 2, "lo\n')
    with pytest.raises(DataError, match=r"log\.jsonl, line 2: malformed JSON"):
        rows(path, torn_tail="drop")
    with pytest.raises(ValueError, match="torn_tail='skip'"):
        rows(path, torn_tail="skip")


def test_gzip_is_read_by_its_magic_bytes_not_its_name(tmp_path):
    data = b'{"a": "\xe2\x80\xa8"}\n{"a": 2}\n'
    assert rows(write(tmp_path / "named_plain.jsonl", gzip.compress(data))) == [{"a": "\u2028"}, {"a": 2}]
    assert rows(write(tmp_path / "named_gz.jsonl.gz", data)) == [{"a": "\u2028"}, {"a": 2}]
    cut = write(tmp_path / "cut.jsonl", gzip.compress(data * 2000)[:-30])
    with pytest.raises(DataError, match=r"cut\.jsonl, line \d+: corrupt gzip data"):
        rows(cut)
    lfs = write(tmp_path / "lfs.jsonl", b"version https://git-lfs.github.com/spec/v1\noid sha256:00\n")
    with pytest.raises(DataError, match=r"lfs\.jsonl: is a git-lfs pointer"):
        rows(lfs)


@pytest.mark.parametrize("data", [b"", b"\n \r\n\t\n"])
@pytest.mark.parametrize("zipped", [False, True])
def test_an_empty_file_is_an_error_unless_allowed(tmp_path, data, zipped):
    path = write(tmp_path / "e.jsonl", gzip.compress(data) if zipped else data)
    with pytest.raises(DataError, match=r"e\.jsonl: empty file: no records"):
        rows(path)
    assert rows(path, allow_empty=True) == []


def test_crlf_endings_and_a_missing_final_newline(tmp_path):
    path = write(tmp_path / "x.jsonl", b'{"a": 1}\r\n{"a": "\\r"}\r\n{"a": 3}')
    assert list(jsonl_records(path)) == [(1, {"a": 1}), (2, {"a": "\r"}), (3, {"a": 3})]
    assert rows(path, torn_tail="drop") == [{"a": 1}, {"a": "\r"}, {"a": 3}]   # parses: kept


@pytest.mark.parametrize("zipped", [False, True])
def test_lines_are_streamed_not_read_whole(tmp_path, zipped):
    """The first record comes out before a bad byte further on is read: nothing is read ahead."""
    data = b'{"a": 1}\n' + b'{"a": "\xff"}\n' * 1000
    path = write(tmp_path / "x.jsonl", gzip.compress(data) if zipped else data)
    records = json_lines(path)
    assert next(records) == (1, {"a": 1})
    with pytest.raises(DataError, match="line 2: invalid UTF-8"):
        next(records)


# --- the append-only logs: a kill mid-write, then a resume ------------------------------------

def test_metrics_resume_after_a_torn_last_line(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps({"step": s, "train/loss": 1.0 / s}) + "\n" for s in range(1, 6))
                   + '{"step": 6, "train/lo')
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 5]
    writer = MetricsWriter(tmp_path, resume_step=3)
    writer.write(4, {"loss": 0.5})
    writer.close()
    assert [(r["step"], r["train/loss"]) for r in read_metrics(tmp_path)] == [
        (1, 1.0), (2, 0.5), (3, 1.0 / 3), (4, 0.5)]
    assert log.read_text().endswith("\n") and not (tmp_path / "metrics.jsonl.tmp").exists()


def test_metrics_resume_names_a_bad_line_that_is_not_the_tail(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": \n{"step": 3}\n')
    with pytest.raises(DataError, match=r"metrics\.jsonl, line 2: malformed JSON"):
        MetricsWriter(tmp_path, resume_step=3)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"loss": 2}\n')
    with pytest.raises(DataError, match=r"metrics\.jsonl, line 2: missing field 'step'"):
        MetricsWriter(tmp_path, resume_step=3)


def test_ppo_samples_resume_after_a_torn_last_line(tmp_path):
    log = tmp_path / "samples.jsonl"
    row = lambda s: json.dumps({"step": s, "prompt": "p\u2028q", "response": "r\x85", "reward": 0.5})  # noqa: E731
    log.write_text("".join(row(s) + "\n" for s in (2, 4, 6)) + row(8)[:-9])
    SampleLog(tmp_path, tokenizer=None, every=2, n=1).start(4)
    assert log.read_text() == row(2) + "\n" + row(4) + "\n"
