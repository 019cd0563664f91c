"""Deterministic, resumable batching shared by every input pipeline (LM, PM, prompts), on grain.

Global batch k of a run is a pure function of (number of examples, seed, k): grain's index-based
global shuffle (`MapDataset.shuffle`, a permutation computed per index, so it needs no memory in
the number of examples) reseeded every epoch by `repeat`, cut into consecutive global batches.
Each process materialises only its rows of the global batch (`row_range`, from
hh.parallel.sharding.process_row_range), so the same code serves 1 or N hosts and no host reads
another's examples.

The iterator state saved with every checkpoint is the next batch index. The batches form a grain
MapDataset (random access by batch index), so a resume slices it at that index: the same batches
whatever the number of worker processes or prefetch threads, which grain's own multiprocess
iterator state (one position per worker) could not promise across a change of worker count.

Reading runs ahead of training: `read_threads` threads compute the next `prefetch` batches, or
with `workers` > 0 grain's worker processes do (the batch function must then be picklable).
"""

import os
import sys
import threading
import time
from typing import Callable

import grain
import numpy as np
from absl import flags


def _exit_with_parent(worker_index: int, worker_count: int):
    """A grain worker's init: exit when the trainer that started it is gone. A SIGKILLed trainer
    cannot stop its workers, which would otherwise live on, holding their memory, until the
    machine is recycled; the resumed run starts its own."""
    del worker_index, worker_count
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


class _ProcessRows(grain.MapDataset):
    """Global example stream -> this process's rows of each global batch, in order: element j is
    row start + j % n of global batch j // n (n = stop - start)."""

    def __init__(self, parent, global_batch_size: int, row_range):
        super().__init__(parent)
        self.global_batch_size, (self.start, self.stop) = global_batch_size, row_range

    def __len__(self):
        return sys.maxsize // self.global_batch_size * (self.stop - self.start)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        batch, row = divmod(int(index), self.stop - self.start)
        return self._parent[batch * self.global_batch_size + self.start + row]

    def __str__(self):
        return f"ProcessRows(rows {self.start}:{self.stop} of {self.global_batch_size})"


class BatchSampler:
    """Example indices of global batch k: epoch-shuffled, crossing epoch boundaries seamlessly."""

    def __init__(self, n_examples: int, global_batch_size: int, seed: int, shuffle: bool = True):
        if n_examples <= 0:
            raise ValueError("cannot sample batches from an empty dataset")
        self.n_examples, self.global_batch_size = n_examples, global_batch_size
        self.seed, self.shuffle = seed, shuffle
        order = grain.MapDataset.range(n_examples)
        if shuffle:
            order = order.shuffle(seed=seed)
        self.stream = order.repeat(None)   # reseeded each epoch: epoch e has its own permutation

    def epoch_order(self, epoch: int) -> np.ndarray:
        start = epoch * self.n_examples
        return np.array([self.stream[i] for i in range(start, start + self.n_examples)])

    def indices(self, batch_index: int) -> np.ndarray:
        first = batch_index * self.global_batch_size
        return np.array([self.stream[i] for i in range(first, first + self.global_batch_size)])

    def local_batches(self, row_range, make_batch: Callable) -> grain.MapDataset:
        """Batch k of this process = make_batch(its rows of global batch k's indices)."""
        start, stop = row_range
        rows = _ProcessRows(self.stream, self.global_batch_size, row_range)
        return rows.batch(stop - start, batch_fn=lambda idx: make_batch(np.asarray(idx, np.int64)))

    def epoch_of(self, batch_index: int) -> float:
        return batch_index * self.global_batch_size / self.n_examples


class Batches:
    """Infinite iterator of process-local batches: `make_batch(example indices) -> dict of arrays`.

    state() / restore() carry the position (and the seed, to catch a config change on resume).
    read_threads / prefetch / workers: how far and with what reading runs ahead (module doc).
    """

    def __init__(self, sampler: BatchSampler, make_batch: Callable, row_range=None, *,
                 read_threads: int = 1, prefetch: int = 2, workers: int = 0):
        self.sampler = sampler
        self.row_range = row_range or (0, sampler.global_batch_size)
        self.dataset = sampler.local_batches(self.row_range, make_batch)
        self.read_threads, self.prefetch, self.workers = read_threads, prefetch, workers
        self.next_batch = 0
        self._iterator = None

    def batch(self, batch_index: int) -> dict:
        """This process's part of global batch `batch_index` (random access, no prefetch)."""
        return self.dataset[batch_index]

    def _open(self):
        options = grain.ReadOptions(num_threads=max(self.read_threads, 1),
                                    prefetch_buffer_size=max(self.prefetch, 1))
        ds = self.dataset[self.next_batch:].to_iter_dataset(options)
        if self.workers > 0:
            # Grain's workers read absl flags; a library caller (a notebook, pytest) has parsed
            # none, and grain would refuse to start them.
            if not flags.FLAGS.is_parsed():
                flags.FLAGS.mark_as_parsed()
            ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.workers,
                                                             per_worker_buffer_size=max(self.prefetch, 1)),
                                worker_init_fn=_exit_with_parent)
        return iter(ds)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._iterator is None:
            self._iterator = self._open()
        batch = next(self._iterator)
        self.next_batch += 1
        return batch

    def close(self):
        """Stops the prefetch threads or worker processes (a new next() restarts them)."""
        if self._iterator is not None and hasattr(self._iterator, "close"):
            self._iterator.close()
        self._iterator = None

    @property
    def epoch(self) -> float:
        return self.sampler.epoch_of(self.next_batch)

    def state(self) -> dict:
        return {"next_batch": int(self.next_batch), "seed": int(self.sampler.seed)}

    def restore(self, state: dict):
        if state.get("seed", self.sampler.seed) != self.sampler.seed:
            raise ValueError(f"the checkpoint's data seed {state['seed']} differs from "
                             f"config.seed={self.sampler.seed}: refusing to resume with other batches")
        self.close()
        self.next_batch = int(state["next_batch"])


def reading_options(data_cfg) -> dict:
    """Batches' read_threads / prefetch / workers from config.data (defaults where absent)."""
    return {k: int(data_cfg.get(k, default)) for k, default in
            (("read_threads", 1), ("prefetch", 2), ("workers", 0))}


def sequential_batches(n_examples: int, batch_size: int, make_batch: Callable, row_range=None):
    """One pass in order (for eval); the last batch's missing rows get index -1 (padding)."""
    start, stop = row_range or (0, batch_size)
    for first in range(0, n_examples, batch_size):
        idx = np.arange(first, first + batch_size)
        idx[idx >= n_examples] = -1
        yield make_batch(idx[start:stop])
