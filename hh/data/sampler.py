"""Deterministic, resumable batching shared by every input pipeline (LM, PM, prompts).

Global batch k of a run is a pure function of (number of examples, seed, k): epoch e visits the
examples in the order of a permutation seeded by (seed, e). The whole iterator state is the next
batch index, saved with every checkpoint, so a resumed run sees exactly the batches the
interrupted one would have. Each process materialises only its rows of the global batch
(`row_range`, from hh.parallel.sharding.process_row_range), so the same code serves 1 or N hosts.

Why not grain: grain's MapDataset.shuffle/batch gives the same semantics; these 60 lines keep the
state to one integer and let the row range follow the mesh exactly, without another dependency.
"""

from typing import Callable

import numpy as np


class BatchSampler:
    """Indices of global batch k, epoch-shuffled, crossing epoch boundaries seamlessly."""

    def __init__(self, n_examples: int, global_batch_size: int, seed: int, shuffle: bool = True):
        if n_examples <= 0:
            raise ValueError("cannot sample batches from an empty dataset")
        self.n_examples, self.global_batch_size = n_examples, global_batch_size
        self.seed, self.shuffle = seed, shuffle

    def epoch_order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n_examples)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_examples)

    def indices(self, batch_index: int) -> np.ndarray:
        flat = np.arange(batch_index * self.global_batch_size,
                         (batch_index + 1) * self.global_batch_size)
        epochs, offsets = np.divmod(flat, self.n_examples)
        orders = {e: self.epoch_order(e) for e in np.unique(epochs)}
        return np.array([orders[e][o] for e, o in zip(epochs, offsets)])

    def epoch_of(self, batch_index: int) -> float:
        return batch_index * self.global_batch_size / self.n_examples


class Batches:
    """Infinite iterator of process-local batches: `make_batch(example indices) -> dict of arrays`.

    state() / restore() carry the position (and the seed, to catch a config change on resume).
    """

    def __init__(self, sampler: BatchSampler, make_batch: Callable, row_range=None):
        self.sampler, self.make_batch = sampler, make_batch
        self.row_range = row_range or (0, sampler.global_batch_size)
        self.next_batch = 0

    def batch(self, batch_index: int) -> dict:
        start, stop = self.row_range
        return self.make_batch(self.sampler.indices(batch_index)[start:stop])

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        batch = self.batch(self.next_batch)
        self.next_batch += 1
        return batch

    @property
    def epoch(self) -> float:
        return self.sampler.epoch_of(self.next_batch)

    def state(self) -> dict:
        return {"next_batch": int(self.next_batch), "seed": int(self.sampler.seed)}

    def restore(self, state: dict):
        if state.get("seed", self.sampler.seed) != self.sampler.seed:
            raise ValueError(f"the checkpoint's data seed {state['seed']} differs from "
                             f"config.seed={self.sampler.seed}: refusing to resume with other batches")
        self.next_batch = int(state["next_batch"])


def sequential_batches(n_examples: int, batch_size: int, make_batch: Callable, row_range=None):
    """One pass in order (for eval); the last batch's missing rows get index -1 (padding)."""
    start, stop = row_range or (0, batch_size)
    for first in range(0, n_examples, batch_size):
        idx = np.arange(first, first + batch_size)
        idx[idx >= n_examples] = -1
        yield make_batch(idx[start:stop])
