"""The project's one reader of JSON lines (and of UTF-8 lines generally): exports, PMP dumps, eval
sets, prompt files, metrics and sample logs all go through it, streamed, gzip read by magic bytes.

Lines end at "\\n" only: U+2028, U+2029, U+0085 and the other characters str.splitlines() also
splits at are ordinary text inside a JSON string. Every problem (empty file, corrupt gzip, non-UTF-8
bytes, malformed JSON, a missing or mistyped field) is a DataError naming the file and line.
"""

import contextlib
import gzip
import json
import math
import zlib
from collections.abc import Iterator

from absl import logging
from etils import epath

from hh.data.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
# A clone without `git lfs pull` holds these ~130-byte stubs where the data files should be.
LFS_POINTER = b"version https://git-lfs.github.com/spec/"
JSON_SPACE = " \t\r\n"   # what JSON itself counts as whitespace (str.strip() would take U+2028 too)
TORN_TAIL = ("error", "drop")
GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)   # a corrupt or cut-off gzip stream


def sniff(path, f) -> bytes:
    """The first bytes of an open binary file, which is rewound; a git-lfs pointer is an error."""
    head = f.read(len(LFS_POINTER))
    f.seek(0)
    if head == LFS_POINTER:
        raise DataError(path, "is a git-lfs pointer, not the data: run `git lfs pull` in the "
                              "clone or download the file itself")
    return head


@contextlib.contextmanager
def open_bytes(path):
    """The file's content as a binary stream, gunzipped on the fly when it starts with the gzip
    magic bytes (whatever its name)."""
    with epath.Path(path).open("rb") as f:
        if sniff(path, f)[:2] == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=f, mode="rb") as unzipped:
                yield unzipped
        else:
            yield f


def raw_lines(path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes with their "\\n" if any) of each line, streamed; binary line iteration
    splits at b"\\n" only. A corrupt or cut gzip stream is a DataError at the line it broke in."""
    with open_bytes(path) as f:
        lineno = 0
        while True:
            try:
                raw = f.readline()
            except GZIP_ERRORS as e:
                raise DataError(path, f"corrupt gzip data: {e}", lineno + 1) from None
            if not raw:
                return
            lineno += 1
            yield lineno, raw


def decode(path, lineno: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(path, f"invalid UTF-8: byte {raw[e.start:e.start + 1]!r} at byte column "
                              f"{e.start + 1} ({e.reason})", lineno) from None


def utf8_lines(path) -> Iterator[tuple[int, str]]:
    """(line number, text with its "\\n") of each line, streamed; an empty file is an error."""
    empty = True
    for lineno, raw in raw_lines(path):
        empty = False
        yield lineno, decode(path, lineno, raw)
    if empty:
        raise DataError(path, "empty file")


def parse(path, lineno: int, text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON at column {e.colno}: {e.msg}", lineno) from None


def json_lines(path, torn_tail: str = "error", allow_empty: bool = False) -> Iterator[tuple[int, object]]:
    """(line number, JSON value) per non-blank line, streamed.

    torn_tail="drop" is for append-only logs a kill can leave mid-write: an unparseable LAST line
    without its "\\n" is dropped with a warning naming the file. A bad line anywhere else, or a
    bad terminated last line, is still an error. allow_empty: a file without records yields
    nothing instead of raising (a log that has no rows yet).
    """
    if torn_tail not in TORN_TAIL:
        raise ValueError(f"torn_tail={torn_tail!r}: use one of {TORN_TAIL}")
    seen = False
    for lineno, raw in raw_lines(path):
        try:
            text = decode(path, lineno, raw)
            if not text.strip(JSON_SPACE):
                continue
            value = parse(path, lineno, text.rstrip("\r\n"))   # columns within this line
        except DataError as e:
            # Only the last line can lack its "\n", so this drops nothing but a torn tail.
            if torn_tail == "drop" and not raw.endswith(b"\n"):
                logging.warning("%s, line %d: dropped an unterminated last line (a write cut off "
                                "by a kill): %s", path, lineno, e.problem)
                break
            raise
        seen = True
        yield lineno, value
    if not seen and not allow_empty:
        raise DataError(path, "empty file: no records")


def jsonl_records(path, torn_tail: str = "error", allow_empty: bool = False) -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-blank line; a file of only blank lines counts as empty."""
    for lineno, record in json_lines(path, torn_tail, allow_empty):
        if not isinstance(record, dict):
            raise DataError(path, f"expected a JSON object, got {type(record).__name__}", lineno)
        yield lineno, record


def _present(record: dict, name: str, path, line: int):
    if name not in record:
        raise DataError(path, f"missing field {name!r} (fields present: {sorted(record)})", line)
    return record[name]


def field(record: dict, name: str, kind: type, path, line: int):
    """record[name], which must exist and be a `kind` (bool is not an int here)."""
    value = _present(record, name, path, line)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DataError(path, f"field {name!r} must be {kind.__name__}, got {value!r:.60}", line)
    return value


def number_field(record: dict, name: str, path, line: int) -> float:
    """record[name] as a float: a finite JSON number (not a string of one, not true/false)."""
    value = _present(record, name, path, line)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(path, f"field {name!r} must be a finite number, got {value!r:.60}", line)
    return float(value)
