"""ArrayRecord shards written by `python -m hh.data.prepare`, and random access over them.

A shard directory holds `shard-NNNNN.array_record` files, a `shard-NNNNN.json` beside each
finished one (its counts and sha256: written last, so a shard without it is unfinished and is
rewritten by a restarted prepare), and `manifest.json` (the source, the tokenizer's identity, the
row width and every shard's entry), written when all shards are done.

Two kinds of record:
- "lm_rows": one packed LM row (hh.data.packing) of `width` = seq_len + 1 tokens: the tokens
  (uint16 when the vocabulary fits, else int32) followed by the segment ids (uint16). Positions
  are not stored: they restart at 0 with each segment, so they follow from the segment ids.
- "comparisons": one comparison as UTF-8 JSON (prompt, chosen, rejected[, weight]), tokenized at
  batch time like every other comparison source.

Reading checks each shard against the manifest before the first record (record count and byte
size: a truncated ArrayRecord file opens as an empty one), and a record that fails to read or
decode is a DataError naming the shard and the record index. `verify` recomputes the sha256s.
"""

import hashlib
import json
import os

import numpy as np
from etils import epath

from hh.data.errors import DataError

FORMAT = "hh-shards/1"
KINDS = ("lm_rows", "comparisons")
MANIFEST = "manifest.json"
SUFFIX = ".array_record"
# One record per chunk: a random read decodes only its own record (grain's advice for global shuffle).
WRITER_OPTIONS = "group_size:1,uncompressed"
READER_OPTIONS = "readahead_buffer_size:0"
SEGMENT_DTYPE = np.uint16


def shard_name(index: int) -> str:
    return f"shard-{index:05d}{SUFFIX}"


def tokenizer_identity(tokenizer) -> dict:
    """What a manifest records of the tokenizer the rows were made with (a run must match it)."""
    fingerprint = getattr(tokenizer, "fingerprint", lambda: "")()
    return {"type": type(tokenizer).__name__, "vocab_size": int(tokenizer.vocab_size),
            "fingerprint": fingerprint}


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest dtype that holds every id of the vocabulary."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.int32)


# ---- lm_rows records ----------------------------------------------------------------------------

def encode_row(tokens, segment_ids, dtype) -> bytes:
    if int(np.max(segment_ids, initial=0)) > np.iinfo(SEGMENT_DTYPE).max:
        raise ValueError("more than 65,535 segments in one row")
    return np.asarray(tokens, dtype).tobytes() + np.asarray(segment_ids, SEGMENT_DTYPE).tobytes()


def positions_of(segment_ids: np.ndarray) -> np.ndarray:
    """Position within its segment of every token of [rows, width] segment ids (0 on padding)."""
    width = segment_ids.shape[-1]
    starts = np.ones(segment_ids.shape, bool)
    starts[..., 1:] = segment_ids[..., 1:] != segment_ids[..., :-1]
    index = np.broadcast_to(np.arange(width), segment_ids.shape)
    positions = index - np.maximum.accumulate(np.where(starts, index, 0), axis=-1)
    return np.where(segment_ids == 0, 0, positions).astype(np.int32)


def decode_rows(records, width: int, dtype) -> dict:
    """Records of one kind "lm_rows" -> {"tokens", "segment_ids", "positions"} int32 [n, width]."""
    dtype = np.dtype(dtype)
    size = width * (dtype.itemsize + np.dtype(SEGMENT_DTYPE).itemsize)
    if any(len(r) != size for r in records):
        raise ValueError(f"a record's size differs from a row of width {width} ({size} bytes)")
    joined = b"".join(records)
    split = width * dtype.itemsize
    raw = np.frombuffer(joined, np.uint8).reshape(len(records), size)
    tokens = raw[:, :split].copy().view(dtype).astype(np.int32)
    segment_ids = raw[:, split:].copy().view(SEGMENT_DTYPE).astype(np.int32)
    return {"tokens": tokens, "segment_ids": segment_ids, "positions": positions_of(segment_ids)}


# ---- writing ------------------------------------------------------------------------------------

def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with epath.Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path, value):
    path = epath.Path(path)
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def write_shard(out_dir, index: int, records, counts: dict) -> dict:
    """Writes the records to shard `index` of `out_dir` atomically (a temporary name, renamed when
    closed), then its sidecar; `counts` (documents, tokens, ... filled in while the records are
    consumed) go into the sidecar. -> the shard's manifest entry."""
    from array_record.python.array_record_module import ArrayRecordWriter
    out_dir = epath.Path(out_dir)
    final = out_dir / shard_name(index)
    tmp = out_dir / f".{final.name}.tmp"
    writer = ArrayRecordWriter(os.fspath(tmp), WRITER_OPTIONS)
    n = 0
    try:
        for record in records:
            writer.write(record)
            n += 1
    finally:
        writer.close()
    tmp.replace(final)   # a shard left without its sidecar by a killed run is rewritten
    entry = {"file": final.name, "records": n, "bytes": final.stat().length,
             "sha256": sha256_file(final), **counts}
    write_json_atomic(sidecar(final), entry)
    return entry


def sidecar(shard_path) -> epath.Path:
    shard_path = epath.Path(shard_path)
    return shard_path.parent / (shard_path.name.removesuffix(SUFFIX) + ".json")


def finished_entry(out_dir, index: int):
    """The sidecar entry of a finished shard, or None (never written, or written without sidecar)."""
    path = sidecar(epath.Path(out_dir) / shard_name(index))
    return json.loads(path.read_text()) if path.exists() else None


# ---- the manifest -------------------------------------------------------------------------------

REQUIRED = {"format": str, "kind": str, "source": str, "shards": list}


def read_manifest(directory) -> dict:
    """The directory's manifest.json, checked; a problem is a DataError naming the file."""
    path = epath.Path(directory) / MANIFEST
    if not path.exists():
        raise DataError(path, "no manifest: not a directory written by `python -m hh.data.prepare` "
                              "(or prepare has not finished: rerun it, finished shards are kept)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON: {e.msg}", e.lineno) from None
    for name, kind in REQUIRED.items():
        if not isinstance(manifest.get(name), kind):
            raise DataError(path, f"field {name!r} must be {kind.__name__}, got {manifest.get(name)!r:.60}")
    if manifest["format"] != FORMAT:
        raise DataError(path, f"format {manifest['format']!r}: this hh reads {FORMAT!r}")
    if manifest["kind"] not in KINDS:
        raise DataError(path, f"kind {manifest['kind']!r}: use one of {KINDS}")
    if manifest["kind"] == "lm_rows":
        for name in ("width", "token_dtype", "tokenizer"):
            if name not in manifest:
                raise DataError(path, f"missing field {name!r} (an lm_rows manifest needs it)")
    return manifest


def verify(directory) -> list[str]:
    """Problems with the directory's shards (missing, resized, or a sha256 that differs from the
    manifest's); [] when every shard is intact. Reads every byte."""
    directory = epath.Path(directory)
    problems = []
    for entry in read_manifest(directory)["shards"]:
        path = directory / entry["file"]
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.stat().length != entry["bytes"]:
            problems.append(f"{path}: {path.stat().length} bytes, the manifest says {entry['bytes']}")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{path}: sha256 differs from the manifest's (corrupted or modified)")
    return problems


# ---- reading ------------------------------------------------------------------------------------

def _shard_files(pattern: str) -> list:
    path = epath.Path(pattern).expanduser()
    if path.is_dir():   # a shard directory stands for all its shards
        return sorted(path.glob(f"*{SUFFIX}"))
    from hh.data.text_sources import glob_files
    return [f for f in glob_files(pattern) if f.name.endswith(SUFFIX)]


class Shards:
    """Random access to the records of the shards `pattern` names (a glob of .array_record files
    or a shard directory), in name order, with the manifest they share.

    Readers open lazily in each process (so the object pickles into grain's worker processes).
    """

    def __init__(self, pattern: str):
        files = _shard_files(pattern)
        if not files:
            raise DataError(pattern, "no .array_record shards match")
        directories = sorted({f.parent for f in files}, key=str)
        manifests = [read_manifest(d) for d in directories]
        first = manifests[0]
        for directory, other in zip(directories[1:], manifests[1:]):
            for key in ("kind", "width", "token_dtype", "tokenizer"):
                if other.get(key) != first.get(key):
                    raise DataError(directory / MANIFEST, f"{key} {other.get(key)!r} differs from "
                                    f"{directories[0] / MANIFEST}'s {first.get(key)!r}")
        entries = {d / e["file"]: e for d, m in zip(directories, manifests) for e in m["shards"]}
        unlisted = [f for f in files if f not in entries]
        if unlisted:
            raise DataError(unlisted[0], f"not listed in {unlisted[0].parent / MANIFEST}: a stray "
                                         f"file, or a shard of an unfinished prepare")
        self.manifest, self.files = first, [os.fspath(f) for f in files]
        self.entries = [entries[f] for f in files]
        self.offsets = np.cumsum([0] + [e["records"] for e in self.entries])
        self._readers = None

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    def __len__(self):
        return int(self.offsets[-1])

    def __getstate__(self):
        return {**self.__dict__, "_readers": None}

    def _reader(self, shard: int):
        if self._readers is None:
            self._readers = {}
        if shard not in self._readers:
            from array_record.python.array_record_module import ArrayRecordReader
            path, entry = self.files[shard], self.entries[shard]
            size = os.path.getsize(path) if "://" not in path else epath.Path(path).stat().length
            if size != entry["bytes"]:
                raise DataError(path, f"{size} bytes, the manifest says {entry['bytes']}: truncated "
                                      f"or rewritten (rerun prepare, or `--verify`)")
            try:
                reader = ArrayRecordReader(path, READER_OPTIONS)
            except Exception as e:   # noqa: BLE001 -- riegeli raises RuntimeError/ValueError/OSError
                raise DataError(path, f"cannot open as ArrayRecord: {e}") from None
            if reader.num_records() != entry["records"]:
                raise DataError(path, f"{reader.num_records()} records, the manifest says "
                                      f"{entry['records']}")
            self._readers[shard] = reader
        return self._readers[shard]

    def locate(self, index: int) -> tuple[int, int]:
        """(shard, record within it) of global record `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} of {len(self)}")
        shard = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return shard, int(index - self.offsets[shard])

    def record(self, index: int) -> bytes:
        shard, local = self.locate(index)
        try:
            return self._reader(shard).read([local])[0]
        except DataError:
            raise
        except Exception as e:   # noqa: BLE001 -- riegeli's corruption errors are RuntimeErrors
            raise DataError(self.files[shard], f"record {local}: {e}") from None

    def __getitem__(self, index: int):
        record = self.record(int(index))
        if self.kind == "comparisons":
            return self._comparison(int(index), record)
        return record

    def _comparison(self, index: int, record: bytes) -> dict:
        try:
            value = json.loads(record)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            shard, local = self.locate(index)
            raise DataError(self.files[shard], f"record {local}: not a JSON comparison ({e})") from None
        return value

    def take_rows(self, indices) -> dict:
        """Packed rows `indices` (kind lm_rows) -> int32 arrays [n, width]; index -1 is an empty
        row (segment 0: eval padding)."""
        width, dtype = self.manifest["width"], self.manifest["token_dtype"]
        indices = np.asarray(indices)
        empty = encode_row(np.zeros(width), np.zeros(width), dtype)
        records = [self.record(int(i)) if i >= 0 else empty for i in indices]
        for i, record in zip(indices, records):
            if len(record) != len(empty):
                shard, local = self.locate(int(i))
                raise DataError(self.files[shard], f"record {local}: {len(record)} bytes, a row of "
                                                   f"width {width} has {len(empty)}")
        return decode_rows(records, width, dtype)


class ShardRows:
    """Rows [start, stop) of packed-row shards: `take(indices)` -> int32 arrays (index -1: an
    empty padding row), `len()`; pickles without its open files (grain workers)."""

    def __init__(self, source: Shards, start: int = 0, stop: int | None = None):
        self.source, self.start = source, start
        self.stop = len(source) if stop is None else stop

    def __len__(self):
        return self.stop - self.start

    def take(self, indices) -> dict:
        indices = np.asarray(indices)
        return self.source.take_rows(np.where(indices >= 0, indices + self.start, -1))
