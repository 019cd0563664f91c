"""The teacher pass of context distillation (Askell et al. 2021 App. B.5): the initial LM reads
[bos] + HHH prompt + text once, and for every text token its top-k log-probs, their token ids and
the log of the remaining mass are stored in the workdir as shards with a manifest.

Storage per text token, k = 50: 50 float32 log-probs + 50 int32 ids + 1 float32 bucket
= 50·(4 + 4) + 4 = 404 bytes. Each shard is written to a temporary directory and renamed, so a
killed run keeps its finished shards and computes only the missing ones when it is rerun.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from hh.config import ConfigError
from hh.distill.objective import log_mass_outside
from hh.io import atomic_path, atomic_write_text

MANIFEST = "manifest.json"
ARRAYS = {"teacher_log_probs": np.float32, "teacher_indices": np.int32, "teacher_rest": np.float32}
NDIM = {"teacher_log_probs": 3, "teacher_indices": 3, "teacher_rest": 2}   # [b, l, k] and [b, l]


def top_k_with_rest(logits, k: int):
    """logits [..., vocab] -> (top log-probs [..., k'] largest first, their ids [..., k'] int32,
    log of the remaining mass [...]) with k' = min(k, vocab); the rest is -inf when k' = vocab."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    top, indices = jax.lax.top_k(log_probs, min(k, log_probs.shape[-1]))
    indices = indices.astype(jnp.int32)
    return top, indices, log_mass_outside(log_probs, indices)


def teacher_inputs(prompt_ids, rows, bos_id):
    """Student rows ([bos] + text[:-1]) -> the teacher's [bos] + prompt + text[:-1] (numpy).

    The teacher's prediction of text token j sits at position len(prompt) + j."""
    n, text_len = rows["inputs"].shape
    prefix = np.asarray([bos_id, *prompt_ids], np.int32)
    tokens = np.concatenate([np.broadcast_to(prefix, (n, len(prefix))), rows["inputs"][:, 1:]], axis=1)
    segment_ids = np.concatenate([np.ones((n, len(prefix)), np.int32), rows["segment_ids"][:, 1:]], axis=1)
    positions = np.broadcast_to(np.arange(tokens.shape[1], dtype=np.int32), tokens.shape).copy()
    return {"tokens": tokens, "positions": positions, "segment_ids": segment_ids}


def teacher_targets(params, batch, *, model, n_prompt: int, text_len: int, k: int):
    """The pure teacher step: params, teacher inputs [b, n_prompt + text_len] -> dict of stored arrays."""
    logits = model.apply({"params": params}, batch["tokens"], batch["positions"],
                         batch["segment_ids"])["logits"]
    top, indices, rest = top_k_with_rest(logits[:, n_prompt:n_prompt + text_len], k)
    return {"teacher_log_probs": top, "teacher_indices": indices, "teacher_rest": rest}


# --- Shards on disk ---------------------------------------------------------------------------------
def shard_name(i: int) -> str:
    return f"shard-{i:05d}"


def shard_bounds(n_rows: int, shard_rows: int):
    return [(s, min(s + shard_rows, n_rows)) for s in range(0, n_rows, shard_rows)]


def write_shard(directory: epath.Path, i: int, arrays: dict):
    """One shard: a directory of .npy files, written under a temporary name and renamed whole."""
    with atomic_path(directory / shard_name(i)) as tmp:
        tmp.mkdir(parents=True)
        for key, dtype in ARRAYS.items():
            with (tmp / f"{key}.npy").open("wb") as f:
                np.save(f, np.asarray(arrays[key], dtype))


def open_manifest(directory: epath.Path, expected: dict) -> dict:
    """Writes the manifest of a new target set, or checks an existing one describes the same
    teacher, prompt, rows and k (stored targets are reused only for exactly those)."""
    path = directory / MANIFEST
    if path.exists():
        found = json.loads(path.read_text())
        if found != expected:
            changed = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
            raise ConfigError(f"teacher targets in {directory} were computed for another {changed} "
                              f"(teacher, prompt, data or k changed): use a fresh workdir")
        return found
    if jax.process_index() == 0:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(expected, indent=1))
    return expected


def missing_shards(directory: epath.Path, n_rows: int, shard_rows: int) -> list[int]:
    return [i for i in range(len(shard_bounds(n_rows, shard_rows)))
            if not (directory / shard_name(i)).exists()]


def compute_shards(directory, indices, shard_rows: int, teacher_rows, batch_size: int, step):
    """Runs the teacher `step` (numpy rows of one global batch -> targets) over the rows of the
    shards `indices` and writes them. teacher_rows: the full teacher inputs (numpy); the last
    batch of a shard is padded with repeated rows, dropped before writing."""
    bounds = shard_bounds(len(teacher_rows["tokens"]), shard_rows)
    for i in indices:
        start, stop = bounds[i]
        parts = []
        for first in range(start, stop, batch_size):
            rows = np.minimum(np.arange(first, first + batch_size), stop - 1)
            out = step({k: v[rows] for k, v in teacher_rows.items()})
            out = multihost_utils.process_allgather(out, tiled=True)
            parts.append({k: np.asarray(v)[:min(batch_size, stop - first)] for k, v in out.items()})
        if jax.process_index() == 0:
            write_shard(directory, i, {k: np.concatenate([p[k] for p in parts]) for k in ARRAYS})
        print(f"teacher targets: wrote {directory / shard_name(i)} (rows {start}:{stop})", flush=True)


class StoredTargets:
    """Random access to the stored teacher targets by row, memory-mapped shard by shard."""

    def __init__(self, directory):
        directory = epath.Path(directory)
        self.manifest = json.loads((directory / MANIFEST).read_text())
        missing = missing_shards(directory, self.manifest["rows"], self.manifest["shard_rows"])
        if missing:
            raise FileNotFoundError(f"{directory}: teacher shards {missing} are missing")
        n = len(shard_bounds(self.manifest["rows"], self.manifest["shard_rows"]))
        self.shards = [{k: np.load(directory / shard_name(i) / f"{k}.npy", mmap_mode="r") for k in ARRAYS}
                       for i in range(n)]

    def __len__(self):
        return self.manifest["rows"]

    def gather(self, rows) -> dict:
        """rows: int array of row ids -> {key: [len(rows), ...]} (numpy)."""
        shard, offset = np.divmod(np.asarray(rows), self.manifest["shard_rows"])
        return {k: np.stack([self.shards[s][k][o] for s, o in zip(shard, offset)]) for k in ARRAYS}
