"""Prompt-only batches for sampling (PPO rollouts, best-of-k, distillation).

Prompts are [bos] + prompt ids, cut from the LEFT to `max_prompt_len` and LEFT-padded, so every
row's last prompt token sits at the same index and generation appends in lockstep. Positions are
the exclusive cumsum of the mask (padding-invariant forward: docs/paper-notes.md §8.3); padding is
segment 0, never attended to.
"""

import numpy as np

from hh.data import synthetic
from hh.data.pm_data import as_text
from hh.data.sampler import BatchSampler, Batches

KINDS = {"helpful": 0, "harmless": 1}


def encode_prompt(prompt: str, tokenizer, max_prompt_len: int):
    """-> token ids, length <= max_prompt_len, keeping the end of the dialogue."""
    ids = tokenizer.encode(prompt)
    keep = max_prompt_len - 1
    return [tokenizer.bos_id, *(ids[len(ids) - keep:] if len(ids) > keep else ids)]


def left_padded(rows_ids, width):
    n = len(rows_ids)
    tokens = np.zeros((n, width), np.int32)
    lengths = np.array([len(r) for r in rows_ids], np.int32)
    for i, ids in enumerate(rows_ids):
        if ids:
            tokens[i, width - len(ids):] = ids
    real = np.arange(width)[None, :] >= (width - lengths)[:, None]
    positions = np.maximum(np.cumsum(real, axis=1) - 1, 0)
    return {"tokens": tokens, "segment_ids": real.astype(np.int32),
            "positions": positions.astype(np.int32), "prompt_length": lengths}


def prompt_kind(example) -> str:
    """Which labeler a prompt is for: its own "kind" (synthetic.rl_prompts), else its comparison
    tranche's (synthetic.SOURCE_LABELER: PPO also samples the prompts of PM comparisons), else
    "helpful"."""
    kind = as_text(example.get("kind", "")) or synthetic.SOURCE_LABELER.get(as_text(example.get("tranche", "")))
    return kind if kind in KINDS else "helpful"


def _prompt_maker(source, tokenizer, max_prompt_len):
    def make(indices):
        examples = [source[int(i)] for i in indices]
        batch = left_padded([encode_prompt(as_text(e["prompt"]), tokenizer, max_prompt_len)
                             for e in examples], max_prompt_len)
        batch["kind"] = np.array([KINDS[prompt_kind(e)] for e in examples], np.int32)
        return batch
    return make


def prompt_batches(source, tokenizer, max_prompt_len, global_batch_size, seed, row_range=None):
    """Infinite, shuffled, resumable batches of left-padded prompts."""
    sampler = BatchSampler(len(source), global_batch_size, seed)
    return Batches(sampler, _prompt_maker(source, tokenizer, max_prompt_len), row_range)
