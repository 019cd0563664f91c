"""Reading a request body: strict UTF-8 JSON objects and typed fields, each error naming the field
(the interface's bad-input rules: empty or oversize messages, non-UTF-8 bytes, wrong types)."""

import json

from hh.data.dialogue import ASSISTANT, HUMAN
from hh.serve.store import StoreError

MAX_BODY_BYTES = 64 << 10


async def json_body(request) -> dict:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise StoreError(f"request body of {len(body)} bytes is over the {MAX_BODY_BYTES}-byte limit", 413)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StoreError(f"request body is not valid UTF-8 (byte {e.start}): send UTF-8 text", 400) from None
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as e:
        raise StoreError(f"request body is not JSON: {e.msg} at line {e.lineno} column {e.colno}", 400) from None
    if not isinstance(value, dict):
        raise StoreError("request body must be a JSON object", 400)
    try:   # a "\\ud800" escape is valid JSON but not Unicode text: SQLite and the tokenizer refuse it
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise StoreError("request body has an unpaired surrogate escape (\\ud800-\\udfff): send valid "
                         "Unicode text", 400) from None
    return value


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
        raise StoreError(f"field {field!r} must be one of {list(choices)}, not {value!r}", 422)
    return value


def integer(body: dict, field: str, choices: tuple) -> int:
    value = body.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
        raise StoreError(f"field {field!r} must be one of {list(choices)}, not {value!r}", 422)
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
