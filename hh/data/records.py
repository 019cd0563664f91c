"""Strict JSON-lines readers shared by every file format we read (PMP dumps, NLP eval sets, prompt
files): records with typed fields, one line at a time.

Every problem (empty file, non-UTF-8 bytes, malformed JSON, a missing or mistyped field) is a
DataError naming the file and line; nothing is skipped here, skipping is the callers' job.
"""

import json
from collections.abc import Iterator

from etils import epath

from hh.data.errors import DataError


def utf8_lines(path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line, streamed; raises on an empty file or non-UTF-8 bytes."""
    empty = True
    with epath.Path(path).open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            empty = False
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(path, f"non-UTF-8 bytes at byte {e.start} of the line: "
                                      f"{raw[e.start:e.start + 4]!r}", lineno) from None
            yield lineno, text
    if empty:
        raise DataError(path, "empty file")


def jsonl_records(path) -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-blank line; a file of only blank lines counts as empty."""
    seen = False
    for lineno, text in utf8_lines(path):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(path, f"malformed JSON: {e}", lineno) from None
        if not isinstance(record, dict):
            raise DataError(path, f"expected a JSON object, got {type(record).__name__}", lineno)
        seen = True
        yield lineno, record
    if not seen:
        raise DataError(path, "empty file (no JSON records)")


def field(record: dict, name: str, kind: type, path, line: int):
    """record[name], which must exist and be a `kind` (bool is not an int here)."""
    if name not in record:
        raise DataError(path, f"missing field {name!r}", line)
    value = record[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DataError(path, f"field {name!r} must be {kind.__name__}, got {value!r:.60}", line)
    return value
