"""Deterministic, resumable batches of packed LM rows.

Batch k of a run is a pure function of (rows, seed, k): epoch e visits the rows in the order of a
permutation seeded by (seed, e). The iterator's whole state is the next batch index, saved with
every checkpoint, so a resumed run sees exactly the batches the interrupted one would have.
Each process materialises only its own rows of the global batch (`row_range`).
"""

import numpy as np

from hh.data.packing import lm_example


class LMBatches:
    """Infinite iterator of process-local LM batches (dicts of numpy arrays)."""

    def __init__(self, rows, global_batch_size, seed, row_range=None):
        self.rows = rows
        self.n_rows = len(rows["tokens"])
        if self.n_rows == 0:
            raise ValueError("no training rows: the corpus is empty")
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.row_range = row_range or (0, global_batch_size)
        self.next_batch = 0

    def _epoch_order(self, epoch):
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_rows)

    def row_indices(self, batch_index):
        """Indices (into rows) of the global batch `batch_index`, across epoch boundaries."""
        flat = np.arange(batch_index * self.global_batch_size,
                         (batch_index + 1) * self.global_batch_size)
        epochs, offsets = np.divmod(flat, self.n_rows)
        orders = {e: self._epoch_order(e) for e in np.unique(epochs)}
        return np.array([orders[e][o] for e, o in zip(epochs, offsets)])

    def batch(self, batch_index):
        start, stop = self.row_range
        picked = self.row_indices(batch_index)[start:stop]
        return lm_example({k: v[picked] for k, v in self.rows.items()})

    def __iter__(self):
        return self

    def __next__(self):
        batch = self.batch(self.next_batch)
        self.next_batch += 1
        return batch

    def state(self):
        return {"next_batch": int(self.next_batch), "seed": int(self.seed)}

    def restore(self, state):
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"checkpointed data seed {state['seed']} != config seed {self.seed}")
        self.next_batch = int(state["next_batch"])


def eval_batches(rows, batch_size, row_range=None):
    """One sequential pass over every row; the last batch is padded with empty (masked) rows."""
    n = len(rows["tokens"])
    start, stop = row_range or (0, batch_size)
    for first in range(0, n, batch_size):
        picked = {k: v[first:first + batch_size] for k, v in rows.items()}
        short = batch_size - len(picked["tokens"])
        if short:
            picked = {k: np.concatenate([v, np.zeros((short, v.shape[1]), v.dtype)])
                      for k, v in picked.items()}
        yield lm_example({k: v[start:stop] for k, v in picked.items()})


def corpus_rows(data_cfg):
    """(train rows, eval rows) of the configured corpus, packed to `data_cfg.seq_len`."""
    from hh.data.byte_tokenizer import ByteTokenizer
    from hh.data.corpus import default_documents, split_documents
    from hh.data.packing import pack_documents

    if data_cfg.source != "default_corpus" or data_cfg.tokenizer != "bytes":
        raise ValueError(f"config.data.source={data_cfg.source!r} with tokenizer "
                         f"{data_cfg.tokenizer!r}: only the embedded 'default_corpus' with 'bytes' "
                         f"exists until the data issue lands")
    tok = ByteTokenizer()
    train_docs, eval_docs = split_documents(default_documents(), data_cfg.eval_fraction)

    def pack(docs):
        return pack_documents([tok.encode(d) for d in docs], data_cfg.seq_len,
                              tok.bos_id, tok.eos_id, tok.pad_id)
    return pack(train_docs), pack(eval_docs)
