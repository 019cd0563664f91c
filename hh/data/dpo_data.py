"""DPO batches: (prompt, chosen, rejected) comparisons -> one left-padded prompt and two
right-padded responses per pair, the layout of PPO's log-prob forward (hh.rl.logprobs).

The prompt is [bos] + prompt ids cut from the LEFT to `max_prompt_len` (hh.data.prompt_data); a
response is its ids + [eos] (the policy learns where to stop), cut from the right to
`max_response_len`. With a reference cache (per-example sequence log-probs of the frozen
reference, hh.dpo.stage), each batch carries them as `ref_chosen_logp` / `ref_rejected_logp`.
"""

import numpy as np

from hh.data.pm_data import as_text
from hh.data.prompt_data import encode_prompt, left_padded
from hh.data.sampler import BatchSampler, Batches, sequential_batches

SIDES = ("chosen", "rejected")


def encode_response(text: str, tokenizer, max_len: int) -> list[int]:
    ids = [*tokenizer.encode(text), tokenizer.eos_id]
    return ids[:max_len]


def right_padded(rows_ids, width):
    """-> (tokens int32 [n, width], mask float32 [n, width])."""
    tokens = np.zeros((len(rows_ids), width), np.int32)
    for i, ids in enumerate(rows_ids):
        tokens[i, :len(ids)] = ids
    lengths = np.array([len(r) for r in rows_ids], np.int32)
    return tokens, (np.arange(width)[None, :] < lengths[:, None]).astype(np.float32)


def _pair_maker(source, tokenizer, max_prompt_len, max_response_len, reference=None):
    def make(indices):
        valid = indices >= 0
        examples = [source[int(i)] if ok else None for i, ok in zip(indices, valid)]
        prompts = [encode_prompt(as_text(e["prompt"]), tokenizer, max_prompt_len) if e else []
                   for e in examples]
        padded = left_padded(prompts, max_prompt_len)
        batch = {"prompt_tokens": padded["tokens"], "prompt_segment_ids": padded["segment_ids"]}
        for side in SIDES:
            ids = [encode_response(as_text(e[side]), tokenizer, max_response_len) if e else []
                   for e in examples]
            batch[f"{side}_tokens"], batch[f"{side}_mask"] = right_padded(ids, max_response_len)
        batch["pair_mask"] = valid.astype(np.float32)   # eval padding pairs count for nothing
        batch["pair_weight"] = np.array([float(e.get("weight", 1.0)) if e else 0.0 for e in examples],
                                        np.float32)
        if reference is not None:
            for side in SIDES:
                batch[f"ref_{side}_logp"] = np.where(valid, reference[side][np.maximum(indices, 0)],
                                                     0.0).astype(np.float32)
        return batch
    return make


def dpo_batches(source, tokenizer, max_prompt_len, max_response_len, global_batch_size, seed,
                row_range=None, reference=None, **reading) -> Batches:
    """Infinite, shuffled, resumable batches of pairs; reference: {"chosen", "rejected"} float
    arrays over the source's examples (cached reference log-probs) or None."""
    sampler = BatchSampler(len(source), global_batch_size, seed)
    make = _pair_maker(source, tokenizer, max_prompt_len, max_response_len, reference)
    return Batches(sampler, make, row_range, **reading)


def dpo_eval_batches(source, tokenizer, max_prompt_len, max_response_len, batch_size, row_range=None):
    """One sequential pass over every pair; padding pairs have pair_mask 0."""
    make = _pair_maker(source, tokenizer, max_prompt_len, max_response_len)
    return sequential_batches(len(source), batch_size, make, row_range)


def pass_in_order(source, tokenizer, max_prompt_len, max_response_len, batch_size, row_range=None):
    """(indices, batch) over every example once, in order: what a reference cache is computed from."""
    make = _pair_maker(source, tokenizer, max_prompt_len, max_response_len)
    start, stop = row_range or (0, batch_size)
    for first in range(0, len(source), batch_size):
        idx = np.arange(first, first + batch_size)
        idx[idx >= len(source)] = -1
        yield idx, make(idx[start:stop])
