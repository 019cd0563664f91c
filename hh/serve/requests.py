"""Reading a request body: strict UTF-8 JSON objects and typed fields, each error naming the field
(the interface's bad-input rules: empty or oversize messages, non-UTF-8 bytes, wrong types). The body
is capped while it streams in, and numbers and nesting are bounded, so no body can cost the server
more than MAX_BODY_BYTES or crash the parser (a 500)."""

import json
import re

from hh.data.dialogue import ASSISTANT, HUMAN
from hh.serve.store import StoreError

MAX_BODY_BYTES = 64 << 10
MAX_DEPTH = 32         # the API's bodies are flat objects; json.loads recurses once per level
_STRUCTURE = re.compile(r'\\.|["\[\]{}]')     # an escape (skipped whole), a quote or a bracket


async def body_bytes(request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refused (413) from its Content-Length before any of it is read, and counted
    while it streams (a chunked body has no Content-Length): reading stops at the first chunk past
    `limit`, so a huge body is never held in memory."""
    declared = request.headers.get("content-length")
    if declared is not None:
        declared = declared.strip()
        if not declared.isdigit():
            raise StoreError(f"Content-Length {declared[:40]!r} is not a byte count", 400)
        if len(declared) > 18 or int(declared) > limit:
            raise StoreError(f"request body of {declared} bytes is over the {limit}-byte limit", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise StoreError(f"request body is over the {limit}-byte limit (stopped reading at {size} "
                             f"bytes)", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def nested_deeper_than(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether brackets nest more than `limit` deep in JSON `text`, outside strings. Linear (one
    regex pass over escapes, quotes and brackets), unlike a recursive parse."""
    if text.count("[") + text.count("{") <= limit:
        return False                            # cannot nest deeper than the brackets it has
    depth, in_string = 0, False
    for match in _STRUCTURE.finditer(text):
        c = match.group()
        if c == '"':
            in_string = not in_string
        elif in_string or len(c) == 2:          # a bracket in a string, or an escape
            continue
        elif c in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def parse_json(text: str):
    """json.loads with every failure a 400 that says what to change: malformed JSON, a number
    past Python's int-string limit (a ValueError, not a JSONDecodeError), nesting past MAX_DEPTH."""
    if nested_deeper_than(text):
        raise StoreError(f"request body is nested more than {MAX_DEPTH} levels deep: send a flat JSON object", 400)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise StoreError(f"request body is not JSON: {e.msg} at line {e.lineno} column {e.colno}", 400) from None
    except ValueError as e:    # "Exceeds the limit (4300 digits) for integer string conversion"
        raise StoreError(f"request body has a number with too many digits ({str(e).split(';')[0]}): "
                         f"send numbers of a few digits", 400) from None
    except RecursionError:     # only if the recursion limit is under MAX_DEPTH
        raise StoreError("request body is nested too deeply: send a flat JSON object", 400) from None


async def json_body(request) -> dict:
    body = await body_bytes(request)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StoreError(f"request body is not valid UTF-8 (byte {e.start}): send UTF-8 text", 400) from None
    value = parse_json(text) if text.strip() else {}
    if not isinstance(value, dict):
        raise StoreError("request body must be a JSON object", 400)
    try:   # a "\\ud800" escape is valid JSON but not Unicode text: SQLite and the tokenizer refuse it
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise StoreError("request body has an unpaired surrogate escape (\\ud800-\\udfff): send valid "
                         "Unicode text", 400) from None
    return value


def shown(value, chars: int = 60) -> str:
    """A value as an error message quotes it: its repr, cut (a field may hold 64 KiB of anything)."""
    text = repr(value)
    return text if len(text) <= chars else text[:chars] + "..."


def string(body: dict, field: str, max_chars: int = 256) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise StoreError(f"field {field!r} must be a non-empty string", 422)
    if len(value) > max_chars:
        raise StoreError(f"field {field!r} is longer than {max_chars} characters", 422)
    return value


def one_of(body: dict, field: str, choices: tuple) -> str:
    value = body.get(field)
    if value not in choices:
        raise StoreError(f"field {field!r} must be one of {list(choices)}, not {shown(value)}", 422)
    return value


def integer(body: dict, field: str, choices: tuple) -> int:
    value = body.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
        raise StoreError(f"field {field!r} must be one of {list(choices)}, not {shown(value)}", 422)
    return value


def message(body: dict, field: str, max_chars: int, optional: bool = False):
    """A labeler-written text (a message or an edit): stripped, non-empty, at most max_chars, and
    free of the dialogue's turn markers and control characters (they would corrupt the transcript)."""
    value = body.get(field)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise StoreError(f"field {field!r} must be a string", 422)
    value = value.strip()
    if not value:
        raise StoreError(f"field {field!r} is empty: write something first", 422)
    if len(value) > max_chars:
        raise StoreError(f"field {field!r} has {len(value)} characters; the limit is {max_chars}", 413)
    if HUMAN in value or ASSISTANT in value:
        raise StoreError(f"field {field!r} contains a turn marker ('Human:' / 'Assistant:' after a blank "
                         f"line); write the text of one turn only", 422)
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise StoreError(f"field {field!r} contains control characters", 422)
    return value
