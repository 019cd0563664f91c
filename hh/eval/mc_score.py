"""Batched, jitted log-likelihood and greedy decoding for the few-shot NLP evaluations (hh.eval.mc).

A request is (context, continuation): the model reads [bos] + context + continuation and we sum the
log-probs of the continuation's tokens (and check whether each is the argmax). Rows are left-padded
into a few fixed widths (powers of two up to the model's length), so each width compiles once.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from hh.data.prompt_data import encode_prompt, left_padded
from hh.models.sampling import SamplingConfig, jit_generate
from hh.parallel import sharding as shd
from hh.train import runtime
from hh.train.losses import token_log_probs

MIN_WIDTH = 16
BATCH_KEYS = ("tokens", "positions", "segment_ids", "targets", "mask")


def request_ids(tokenizer, context: str, continuation: str, max_len: int):
    """-> (inputs, targets, n_continuation) for [bos] + context + continuation.

    Context and continuation are tokenised separately, so the scored tokens are exactly the
    continuation's. When inputs would exceed max_len, the oldest context tokens are cut (bos kept);
    a continuation longer than max_len cannot be scored whole and is refused."""
    ctx, cont = tokenizer.encode(context), tokenizer.encode(continuation)
    if not cont:
        raise ValueError(f"continuation {continuation!r} has no tokens")
    if len(cont) > max_len:
        raise ValueError(f"continuation of {len(cont)} tokens exceeds the model's length {max_len}: "
                         f"{continuation[:60]!r}")
    keep = max_len - len(cont)
    seq = [tokenizer.bos_id, *(ctx[max(0, len(ctx) - keep):] if keep else []), *cont]
    return seq[:-1], seq[1:], len(cont)


def bucket_width(length: int, max_len: int) -> int:
    """The padded width of a row: the next power of two >= length (at least MIN_WIDTH), <= max_len."""
    return min(max_len, max(MIN_WIDTH, 1 << (length - 1).bit_length()))


def padded_batch(rows, width: int) -> dict:
    """[(inputs, targets, n_cont)] -> left-padded numpy arrays [len(rows), width]; `mask` marks the
    continuation's target positions (the last n_cont of each row)."""
    inputs = left_padded([r[0] for r in rows], width)
    n_cont = np.array([r[2] for r in rows])
    return {"tokens": inputs["tokens"], "positions": inputs["positions"],
            "segment_ids": inputs["segment_ids"],
            "targets": left_padded([r[1] for r in rows], width)["tokens"],
            "mask": (np.arange(width)[None, :] >= width - n_cont[:, None]).astype(np.int32)}


def width_groups(lengths, batch_size: int, max_len: int):
    """Yields (row indices, width): rows of one bucket width, at most batch_size at a time."""
    widths = np.array([bucket_width(n, max_len) for n in lengths])
    for width in sorted(set(widths.tolist())):
        members = np.flatnonzero(widths == width)
        for start in range(0, len(members), batch_size):
            yield members[start:start + batch_size], width


def continuation_scores(params, batch, *, model):
    """The pure scoring step -> {"sum", "count", "greedy"} [batch]: Σ log p over the continuation,
    its token count, and whether every continuation token is the argmax (greedy decoding's choice)."""
    logits = model.apply({"params": params}, batch["tokens"], batch["positions"],
                         batch["segment_ids"])["logits"]
    mask = batch["mask"].astype(jnp.float32)
    logp = token_log_probs(logits, batch["targets"])
    hit = (jnp.argmax(logits, axis=-1) == batch["targets"]).astype(jnp.float32)
    return {"sum": jnp.sum(logp * mask, axis=1), "count": jnp.sum(mask, axis=1),
            "greedy": jnp.all((hit >= 1.0) | (mask == 0.0), axis=1)}


class Scorer:
    """Scores requests with a loaded LM (hh.trained.LoadedLM or anything with its fields:
    model, params, tokenizer, seq_len, batch_size, mesh, rules)."""

    def __init__(self, lm):
        self.lm = lm
        self.batch_sharding = shd.batch_sharding(lm.mesh, lm.rules)
        params_sh = jax.tree.map(lambda a: a.sharding, lm.params)
        self.step = runtime.compile_step(
            functools.partial(continuation_scores, model=lm.model), lm.mesh, lm.rules,
            (params_sh, {k: self.batch_sharding for k in BATCH_KEYS}), runtime.replicated(lm.mesh))
        self._generators = {}

    def loglikelihoods(self, pairs) -> dict:
        """[(context, continuation)] -> {"sum", "count", "greedy"} numpy arrays in request order."""
        lm = self.lm
        rows = [request_ids(lm.tokenizer, c, x, lm.seq_len) for c, x in pairs]
        pad_row = ([lm.tokenizer.bos_id], [lm.tokenizer.pad_id], 0)   # scores nothing: mask all 0
        out = {"sum": np.zeros(len(rows)), "count": np.zeros(len(rows), np.int64),
               "greedy": np.zeros(len(rows), bool)}
        for idx, width in width_groups([len(r[0]) for r in rows], lm.batch_size, lm.seq_len):
            # every batch has exactly batch_size rows: one shape per width, so one compile per width
            local = padded_batch([rows[i] for i in idx] + [pad_row] * (lm.batch_size - len(idx)), width)
            batch = shd.make_global_batch(local, self.batch_sharding, lm.batch_size)
            result = jax.device_get(self.step(lm.params, batch))
            for key in out:
                out[key][idx] = np.asarray(result[key])[:len(idx)]
        return out

    def sampling_config(self, max_new_tokens: int) -> SamplingConfig:
        """Greedy, stopping at eos or a newline; special and out-of-tokenizer ids are never emitted."""
        tok = self.lm.tokenizer
        special = {tok.pad_id, tok.bos_id, getattr(tok, "eoc_id", tok.pad_id)}
        unused = range(tok.vocab_size, self.lm.model.cfg.vocab_size)   # the model's rounded-up vocab
        return SamplingConfig(max_new_tokens=max_new_tokens, greedy=True, eos_id=tok.eos_id,
                              stop_sequences=(tuple(tok.encode("\n")),), pad_id=tok.pad_id,
                              banned_ids=tuple(sorted(special | set(unused))))

    def greedy_answers(self, prompts, max_new_tokens: int) -> list:
        """Greedy completions of each prompt (KV-cached), cut at the first newline."""
        lm = self.lm
        if max_new_tokens >= lm.seq_len:
            raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room in {lm.seq_len} positions")
        if max_new_tokens not in self._generators:
            self._generators[max_new_tokens] = jit_generate(
                lm.model.cfg, self.sampling_config(max_new_tokens), lm.mesh, lm.rules)
        generate = self._generators[max_new_tokens]
        budget = lm.seq_len - max_new_tokens
        rows = [encode_prompt(p, lm.tokenizer, budget) for p in prompts]
        answers = [""] * len(rows)
        for idx, width in width_groups([len(r) for r in rows], lm.batch_size, budget):
            chunk = [rows[i] for i in idx] + [[lm.tokenizer.bos_id]] * (lm.batch_size - len(idx))
            samples = jax.device_get(generate(lm.params, left_padded(chunk, width), None))
            for j, i in enumerate(idx):
                n = int(samples.lengths[j]) - int(samples.stop_lengths[j])
                answers[i] = lm.tokenizer.decode(np.asarray(samples.tokens[j, :n])).split("\n")[0].strip()
        return answers
