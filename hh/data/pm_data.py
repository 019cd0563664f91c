"""Preference-model batches: (prompt, chosen, rejected) comparisons -> two token rows per pair.

Each side is [bos] + prompt + response + [eoc]: the PM score is read on the end-of-context token
(Askell et al. 2021 App. C.4; Bai et al. 2022 App. A.2). When a side exceeds `seq_len`, the
prompt is cut from the LEFT (the response and the latest turns always fit); only a response that
alone exceeds the budget is cut (from the right) and counted. Rows are right-padded with pad 0 in
segment 0. Examples come from any random-access source (a list, a TFDS data source).
"""

import collections

import numpy as np

from hh.data.sampler import BatchSampler, Batches, sequential_batches

SIDES = ("chosen", "rejected")


def as_text(value) -> str:
    """TFDS Text features come back as bytes; lists give str."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def encode_side(prompt_ids, response_ids, tokenizer, seq_len):
    """-> (token ids of [bos] + prompt tail + response + [eoc], flags). len <= seq_len."""
    budget = seq_len - 2
    flags = {}
    if len(response_ids) > budget:
        response_ids = response_ids[:budget]
        flags["response_truncated"] = True
    prompt_budget = budget - len(response_ids)
    if len(prompt_ids) > prompt_budget:
        prompt_ids = prompt_ids[len(prompt_ids) - prompt_budget:] if prompt_budget else []
        flags["prompt_truncated"] = True
    ids = [tokenizer.bos_id, *prompt_ids, *response_ids, tokenizer.eoc_id]
    return ids, 1 + len(prompt_ids), flags


def row_arrays(rows_ids, response_starts, seq_len, eoc_id):
    """Token id lists -> padded arrays: tokens, positions, segment_ids, eoc_index, response_mask,
    and next-token targets/loss_mask (the LM loss on the sequence, not predicting eoc)."""
    n = len(rows_ids)
    tokens = np.zeros((n, seq_len), np.int32)
    lengths = np.array([len(r) for r in rows_ids], np.int32)
    for i, ids in enumerate(rows_ids):
        tokens[i, :len(ids)] = ids
    index = np.arange(seq_len)[None, :]
    real = index < lengths[:, None]
    targets = np.concatenate([tokens[:, 1:], np.zeros((n, 1), np.int32)], axis=1)
    return {
        "tokens": tokens,
        "positions": np.where(real, index, 0).astype(np.int32),
        "segment_ids": real.astype(np.int32),
        "eoc_index": np.maximum(lengths - 1, 0),
        "response_mask": (real & (index >= np.asarray(response_starts)[:, None])).astype(np.float32),
        "targets": targets,
        "loss_mask": ((index < lengths[:, None] - 1) & (targets != eoc_id)).astype(np.float32),
    }


def encode_comparison(example, tokenizer, seq_len):
    """-> ({side: (ids, response_start)}, flags) for one comparison dict."""
    prompt_ids = tokenizer.encode(as_text(example["prompt"]))
    encoded, flags = {}, collections.Counter()
    for side in SIDES:
        ids, start, side_flags = encode_side(prompt_ids, tokenizer.encode(as_text(example[side])),
                                             tokenizer, seq_len)
        encoded[side] = (ids, start)
        flags.update(f"{side}_{k}" for k in side_flags)
    return encoded, flags


def _pair_maker(source, tokenizer, seq_len):
    def make(indices):
        batch, valid = {}, indices >= 0
        encoded = [encode_comparison(source[int(i)], tokenizer, seq_len)[0] if ok else None
                   for i, ok in zip(indices, valid)]
        for side in SIDES:
            ids = [e[side][0] if e else [] for e in encoded]
            starts = [e[side][1] if e else 0 for e in encoded]
            for key, value in row_arrays(ids, starts, seq_len, tokenizer.eoc_id).items():
                batch[f"{side}_{key}"] = value
        batch["pair_mask"] = valid.astype(np.float32)   # eval padding pairs count for nothing
        # per-pair loss weight (a source's examples may carry "weight"; default 1)
        batch["pair_weight"] = np.array([float(source[int(i)].get("weight", 1.0)) if ok else 0.0
                                         for i, ok in zip(indices, valid)], np.float32)
        return batch
    return make


def pm_batches(source, tokenizer, seq_len, global_batch_size, seed, row_range=None, **reading) -> Batches:
    """Infinite, shuffled, resumable batches of comparison pairs; reading: Batches' read_threads /
    prefetch / workers."""
    sampler = BatchSampler(len(source), global_batch_size, seed)
    return Batches(sampler, _pair_maker(source, tokenizer, seq_len), row_range, **reading)


def pm_eval_batches(source, tokenizer, seq_len, batch_size, row_range=None):
    """One sequential pass over every pair; padding pairs have pair_mask 0."""
    return sequential_batches(len(source), batch_size, _pair_maker(source, tokenizer, seq_len), row_range)


def truncation_report(source, tokenizer, seq_len) -> collections.Counter:
    """How many pairs lose prompt or response tokens at this context length (logged by stages)."""
    counts = collections.Counter()
    for i in range(len(source)):
        counts.update(encode_comparison(source[i], tokenizer, seq_len)[1])
    counts["pairs"] = len(source)
    return counts
