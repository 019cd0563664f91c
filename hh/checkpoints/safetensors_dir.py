"""A Hugging Face checkpoint directory's tensors, memory-mapped: one `model.safetensors` or shards
listed in `model.safetensors.index.json`. Reads return only the requested slice, so a sharded load
touches just each device's part of each tensor; writes split tensors into shards with an index.
"""

import json
import os

import numpy as np
from etils import epath
from safetensors import safe_open
from safetensors.numpy import save_file

from hh.io import atomic_path, atomic_write_text

SINGLE_FILE, INDEX_FILE = "model.safetensors", "model.safetensors.index.json"


class CheckpointFormatError(ValueError):
    """The directory is not a readable Hugging Face checkpoint; the message names file and field."""


class SafetensorsDir:
    """name -> tensor, lazily: `shape(name)`, `dtype(name)`, `read(name, index)`."""

    def __init__(self, directory):
        self.directory = epath.Path(directory)
        self._file_of = _tensor_files(self.directory)
        self._handles = {}
        self._meta = {}

    def names(self) -> list[str]:
        return sorted(self._file_of)

    def __contains__(self, name: str) -> bool:
        return name in self._file_of

    def _slice(self, name):
        if name not in self._file_of:
            raise CheckpointFormatError(
                f"{self.directory}: tensor {name!r} is missing (the checkpoint has "
                f"{len(self._file_of)} tensors, e.g. {self.names()[:3]})")
        file = self._file_of[name]
        if file not in self._handles:
            self._handles[file] = safe_open(os.fspath(self.directory / file), framework="np")
        return self._handles[file].get_slice(name)

    def shape(self, name: str) -> tuple:
        if name not in self._meta:
            s = self._slice(name)
            self._meta[name] = (tuple(s.get_shape()), s.get_dtype())
        return self._meta[name][0]

    def read(self, name: str, index: tuple = ()) -> np.ndarray:
        """The tensor's `index` (a tuple of slices, one per leading axis) as a numpy array."""
        sl = self._slice(name)
        if not index:
            index = tuple(slice(None) for _ in self.shape(name))
        return np.asarray(sl[tuple(index)])


def _tensor_files(directory: epath.Path) -> dict:
    index_path, single = directory / INDEX_FILE, directory / SINGLE_FILE
    if index_path.exists():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise CheckpointFormatError(f"{index_path}: not a safetensors index ({e!r}); expected "
                                        f"a JSON object with a 'weight_map'") from None
        missing = sorted({f for f in weight_map.values() if not (directory / f).exists()})
        if missing:
            raise CheckpointFormatError(f"{index_path} lists shard files that are missing: {missing}")
        return dict(weight_map)
    if single.exists():
        with safe_open(os.fspath(single), framework="np") as f:
            return {name: SINGLE_FILE for name in f.keys()}
    found = sorted(p.name for p in directory.iterdir()) if directory.exists() else "no such directory"
    raise CheckpointFormatError(
        f"{directory}: no {SINGLE_FILE} or {INDEX_FILE} (found: {found}). PyTorch .bin checkpoints "
        f"are not read (no torch at runtime): convert them to safetensors first.")


def write_safetensors_dir(directory, tensors: dict, max_shard_bytes: int = 5 * 2**30,
                          metadata: dict | None = None) -> list[str]:
    """Writes `tensors` (name -> numpy array) as one file or as shards plus an index.

    Each file is written under a temporary name and renamed, so a killed export leaves no
    truncated file behind under a final name. Returns the file names written.
    """
    directory = epath.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shards, current, size = [], {}, 0
    for name in sorted(tensors):
        nbytes = tensors[name].nbytes
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name], size = np.ascontiguousarray(tensors[name]), size + nbytes
    shards.append(current)
    meta = {"format": "pt", **(metadata or {})}
    if len(shards) == 1:
        _atomic_save(shards[0], directory / SINGLE_FILE, meta)
        return [SINGLE_FILE]
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for shard, file in zip(shards, names):
        _atomic_save(shard, directory / file, meta)
        weight_map.update({name: file for name in shard})
    total = sum(t.nbytes for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    atomic_write_text(directory / INDEX_FILE, json.dumps(index, indent=2) + "\n")
    return names + [INDEX_FILE]


def _atomic_save(tensors, path: epath.Path, metadata):
    with atomic_path(path) as tmp:
        save_file(tensors, os.fspath(tmp), metadata=metadata)
