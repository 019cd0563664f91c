"""Checked reading of the raw hh-rlhf files (gzip or plain, JSON lines or one JSON array); JSON
lines go through hh.data.records, the project's one reader of them.

Plain Python, no TFDS: the builders call these, and tests reach every bad-input case through them.
Every failure is a DataError naming the file, the line and the problem.
"""

import hashlib
import itertools
import json

from hh.data import records
from hh.data.errors import DataError


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path, expected: str | None) -> str:
    """The file's sha256; a DataError naming both hashes if `expected` is given and differs."""
    actual = sha256_file(path)
    if expected is not None and actual != expected.lower():
        raise DataError(path, f"sha256 mismatch: expected {expected}, actual {actual} "
                              "(a truncated download, a git-lfs pointer or a different release)")
    return actual


def read_text(path) -> str:
    """The whole file's text, gunzipped if it is gzip (by its magic bytes, not its name): for a
    JSON array, which is parsed whole; JSON lines are streamed by hh.data.records instead."""
    with records.open_bytes(path) as f:
        try:
            raw = f.read()
        except records.GZIP_ERRORS as e:
            raise DataError(path, f"corrupt gzip data: {e}") from None
    if not raw.strip():
        raise DataError(path, f"empty file: no records in {len(raw.splitlines())} lines")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        bad = raw[e.start:e.start + 1]
        raise DataError(path, f"invalid UTF-8: byte {bad!r} at byte column {column} ({e.reason})",
                        line) from None


def first_byte(path) -> bytes:
    """The first non-whitespace byte of the (gunzipped) content, b"" for a blank file."""
    with records.open_bytes(path) as f:
        try:
            while block := f.read(1 << 16):
                if stripped := block.lstrip():
                    return stripped[:1]
        except records.GZIP_ERRORS as e:
            raise DataError(path, f"corrupt gzip data: {e}") from None
    return b""


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def iter_json_array(path, text: str):
    """(line_number, object) for each element of a top-level JSON array, parsed one at a time.

    The line is where the element starts, so an error in element 30,000 of a 100 MB array still
    points somewhere useful.
    """
    decoder = json.JSONDecoder()
    line, counted = 1, 0   # newlines are counted once, up to `counted`
    pos = _skip_space(text, 0) + 1   # past "["
    for n_records in itertools.count():
        pos = _skip_space(text, pos)
        line, counted = line + text.count("\n", counted, pos), pos
        if pos < len(text) and text[pos] == "]":
            if n_records == 0:
                raise DataError(path, "empty file: no records (the JSON array is empty)", line)
            break
        try:
            record, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DataError(path, f"malformed JSON in the array: {e.msg} at column {e.colno}",
                            e.lineno) from None
        yield line, record
        pos = _skip_space(text, end)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "]":
            line += text.count("\n", counted, pos)
            raise DataError(path, "malformed JSON in the array: expected ',' or ']' after an "
                                  "element", line)
    if _skip_space(text, pos + 1) != len(text):
        raise DataError(path, "malformed JSON: text after the closing ']'", line)


def iter_json_records(path):
    """(line_number, object) from a JSON-lines file (streamed) or a file holding one JSON array."""
    if first_byte(path) == b"[":
        return iter_json_array(path, read_text(path))
    return records.json_lines(path)


def require(path, line: int, record, key: str, types, type_name: str):
    """record[key], checked to be a JSON object field of one of `types`."""
    if not isinstance(record, dict):
        raise DataError(path, f"expected a JSON object, got {type(record).__name__}", line)
    if key not in record:
        raise DataError(path, f"missing field {key!r} (fields present: {sorted(record)})", line)
    value = record[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise DataError(path, f"field {key!r} should be {type_name}, got {type(value).__name__}",
                        line)
    return value
