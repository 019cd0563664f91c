"""Sources named in a config by a prefix: `files:GLOB`, `tfds:NAME[/CONFIG][:VERSION]` and
`array_record:GLOB` (shards written by `python -m hh.data.prepare`, hh.data.shards).

Text for LM pretraining is streamed document by document, so `prepare` never holds a corpus:
- files:GLOB  .jsonl / .jsonl.gz: one document per line, the string field `field` ("text" by
              default); .txt / .txt.gz: documents separated by blank lines. gzip is detected by
              its magic bytes, whatever the name. Files are read in name order.
- tfds:NAME   a TFDS dataset's `split` (any TFDS split spec, "train[:90%]"), built under data_dir
              (local or gs://) in the array_record format, from manual_dir where its builder
              needs one; the string (or bytes) feature `field`.

A bad line or record is a DataError naming the file (or dataset) and the line (or index).
"""

import dataclasses
import os
import re
from collections.abc import Iterator

from etils import epath

from hh.config import ConfigError
from hh.data.errors import DataError
from hh.data.records import field as json_field
from hh.data.records import jsonl_records, utf8_lines

PREFIXES = ("files:", "tfds:", "array_record:")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz")
TEXT_SUFFIXES = (".txt", ".txt.gz")
_TFDS = re.compile(r"^(?P<name>[\w-]+)(?:/(?P<config>[\w.-]+))?(?::(?P<version>\d+\.\d+\.\d+))?$")


def prefix_of(spec: str):
    """"files" | "tfds" | "array_record" for a prefixed spec, else None (a built-in name)."""
    for prefix in PREFIXES:
        if spec.startswith(prefix):
            return prefix[:-1]
    return None


def glob_files(pattern: str) -> list:
    """Files matching a glob (`**` recurses; gs:// works), sorted; none is a ConfigError."""
    pattern = os.path.expanduser(pattern)
    wild = [pattern.find(c) for c in "*?[" if c in pattern]
    if not wild:
        path = epath.Path(pattern)
        found = [path] if path.is_file() else []
    else:
        cut = pattern.rfind("/", 0, min(wild))   # the folder part before the first wildcard
        root = epath.Path(pattern[:cut] or "/") if cut >= 0 else epath.Path(".")
        found = sorted(p for p in root.glob(pattern[cut + 1:]) if p.is_file())
    if not found:
        raise ConfigError(f"{pattern!r} matches no file")
    return found


def file_documents(path, field: str = "text") -> Iterator[str]:
    """The documents of one text file (module doc), streamed."""
    name = epath.Path(path).name
    if name.endswith(JSONL_SUFFIXES):
        for line, record in jsonl_records(path):
            yield json_field(record, field, str, path, line)
    elif name.endswith(TEXT_SUFFIXES):
        paragraph = []
        for _, text in utf8_lines(path):
            if text.strip():
                paragraph.append(text)
            elif paragraph:
                yield "".join(paragraph).rstrip("\n")
                paragraph = []
        if paragraph:
            yield "".join(paragraph).rstrip("\n")
    else:
        raise DataError(path, f"unknown text file type: name it *{', *'.join(JSONL_SUFFIXES + TEXT_SUFFIXES)}")


def parse_tfds(spec: str) -> str:
    """The TFDS name of "tfds:NAME[/CONFIG][:VERSION]" (as tfds.builder takes it), checked."""
    name = spec.removeprefix("tfds:")
    if not _TFDS.match(name):
        raise ConfigError(f"{spec!r}: use tfds:NAME[/CONFIG][:VERSION], e.g. tfds:hh_rlhf/harmless-base:1.0.0")
    return name


def tfds_source(spec: str, split: str, data_dir, manual_dir=None):
    """Random access to a TFDS split (built as array_record under data_dir when it is not yet)."""
    from hh.data.tfds import prepare
    name = parse_tfds(spec)
    try:
        builder = prepare(name, epath.Path(data_dir).expanduser(), manual_dir or None)
        return builder.as_data_source(split=split)
    except DataError:
        raise
    except Exception as e:   # noqa: BLE001 -- TFDS raises many kinds; name the source and split
        raise DataError(f"tfds:{name}", f"split {split!r} under data_dir={data_dir}: "
                                        f"{type(e).__name__}: {e}") from None


def text_of(value, where, index: int, field: str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if not isinstance(value, str):
        raise DataError(where, f"feature {field!r} must be text, got {type(value).__name__}", index)
    return value


@dataclasses.dataclass(frozen=True)
class Unit:
    """One independent piece of a text source (a file, or a range of a TFDS split): what one
    `prepare` worker turns into one shard."""
    label: str
    spec: str
    path: str = ""
    split: str = ""
    start: int = 0
    stop: int = 0


def units(spec: str, *, split="train", data_dir="~/tensorflow_datasets", manual_dir="",
          tfds_unit_size=100_000) -> list[Unit]:
    """The units of a text source, in order."""
    kind = prefix_of(spec)
    if kind == "files":
        return [Unit(str(p), spec, path=str(p)) for p in glob_files(spec.removeprefix("files:"))]
    if kind == "tfds":
        n = len(tfds_source(spec, split, data_dir, manual_dir))
        return [Unit(f"{spec}:{split}[{a}:{min(a + tfds_unit_size, n)}]", spec, split=split, start=a,
                     stop=min(a + tfds_unit_size, n)) for a in range(0, n, tfds_unit_size)]
    raise ConfigError(f"text source {spec!r}: use files:GLOB or tfds:NAME[/CONFIG][:VERSION]")


def unit_documents(unit: Unit, field="text", data_dir="~/tensorflow_datasets", manual_dir="") -> Iterator[str]:
    """The documents of one unit, streamed."""
    if unit.path:
        yield from file_documents(unit.path, field)
        return
    source = tfds_source(unit.spec, unit.split, data_dir, manual_dir)
    for i in range(unit.start, unit.stop):
        example = source[i]
        if field not in example:
            raise DataError(unit.spec, f"record has no feature {field!r} (features: {sorted(example)})", i)
        yield text_of(example[field], unit.spec, i, field)


def documents(spec: str, field="text", split="train", data_dir="~/tensorflow_datasets", manual_dir=""):
    """Every document of a text source, streamed, in order."""
    for unit in units(spec, split=split, data_dir=data_dir, manual_dir=manual_dir):
        yield from unit_documents(unit, field, data_dir, manual_dir)


# ---- comparisons --------------------------------------------------------------------------------

PAIR_FIELDS = ("prompt", "chosen", "rejected")


def comparison_row(record: dict, where, index: int, fields=PAIR_FIELDS) -> dict:
    """A comparison dict from a record in either layout: hh's own (`prompt` plus the other
    `fields`: an RL prompt source needs only the prompt) or hh-rlhf's (chosen and rejected whole
    transcripts, split at the last Assistant turn, hh.data.dialogue). A "weight" must be a
    number; other fields are kept (bytes decoded)."""
    from hh.data import dialogue
    from hh.data.records import number_field
    row = {k: v.decode("utf-8") if isinstance(v, bytes) else v for k, v in record.items()}
    if "prompt" in row:
        for name in fields:
            json_field(row, name, str, where, index)
    else:
        for name in ("chosen", "rejected"):
            json_field(row, name, str, where, index)
        try:
            split = dialogue.split_pair(row["chosen"], row["rejected"])
        except ValueError as e:
            raise DataError(where, str(e), index) from None
        row.update(prompt=split.prompt, chosen=split.chosen, rejected=split.rejected)
    if "weight" in row:
        row["weight"] = number_field(row, "weight", where, index)
    return row


def unit_comparisons(unit: Unit, data_dir="~/tensorflow_datasets", manual_dir="",
                     fields=PAIR_FIELDS) -> Iterator[dict]:
    """The comparisons of one unit: JSON lines (either layout) or a TFDS split's examples."""
    if unit.path:
        for line, record in jsonl_records(unit.path):
            yield comparison_row(record, unit.path, line, fields)
        return
    source = tfds_source(unit.spec, unit.split, data_dir, manual_dir)
    for i in range(unit.start, unit.stop):
        yield comparison_row(dict(source[i]), unit.spec, i, fields)


def comparison_rows(spec: str, split="train", data_dir="~/tensorflow_datasets", manual_dir="",
                    fields=PAIR_FIELDS) -> list[dict]:
    """Every comparison of a files: or tfds: source, in memory (the stages' random access)."""
    return [row for unit in units(spec, split=split, data_dir=data_dir, manual_dir=manual_dir)
            for row in unit_comparisons(unit, data_dir, manual_dir, fields)]
