"""Packed LM batches: rows of `seq_len + 1` tokens (hh.data.packing), in memory or read by index
from ArrayRecord shards (hh.data.shards.ShardRows), fed through the shared deterministic grain
sampler (hh.data.sampler), so resumed runs see the same batches.
"""

import numpy as np

from hh.data.packing import lm_example
from hh.data.sampler import BatchSampler, Batches, sequential_batches


def _rows_maker(rows):
    if hasattr(rows, "take"):   # rows read by index (array_record shards)
        return lambda indices: lm_example(rows.take(indices))

    def make(indices):
        picked = {k: v[np.maximum(indices, 0)] for k, v in rows.items()}
        padding = indices < 0
        if padding.any():   # eval padding rows: segment 0 everywhere, so they count for nothing
            picked = {k: np.where(padding[:, None], 0, v) for k, v in picked.items()}
        return lm_example(picked)
    return make


def n_rows(rows) -> int:
    return len(rows) if hasattr(rows, "take") else len(rows["tokens"])


def lm_batches(rows, global_batch_size, seed, row_range=None, **reading) -> Batches:
    """Infinite, epoch-shuffled, resumable batches of packed rows (in-memory arrays or shard rows);
    reading: Batches' read_threads / prefetch / workers."""
    sampler = BatchSampler(n_rows(rows), global_batch_size, seed)
    return Batches(sampler, _rows_maker(rows), row_range, **reading)


def eval_batches(rows, batch_size, row_range=None):
    """One sequential pass over every row; the last batch is padded with empty (masked) rows."""
    return sequential_batches(n_rows(rows), batch_size, _rows_maker(rows), row_range)
