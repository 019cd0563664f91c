"""Sampling from a TransformerLM with a KV cache: PPO rollouts, best-of-k, evaluation samples.

`generate` runs one prefill forward over the left-padded prompts (writing the cache), then a
`lax.while_loop` that decodes one token per step until every row has ended (eos / a stop sequence)
or max_new_tokens. Fixed shapes, no host round-trips: one compile per input shape. docs/sampling.md.
"""

import dataclasses
from typing import Optional

import flax
import jax
import jax.numpy as jnp

from hh.models import kv_cache
from hh.models.transformer import TransformerConfig, TransformerLM, unembedding
from hh.parallel import sharding as shd

PROMPT_KEYS = ("tokens", "segment_ids", "positions")


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How to sample. Frozen and hashable: a static jit argument."""
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_k: int = 0                  # 0 = off
    top_p: float = 1.0              # 1.0 = off
    greedy: bool = False            # argmax (temperature ignored)
    eos_id: Optional[int] = None    # a row stops after sampling it
    stop_sequences: tuple = ()      # tuple of tuples of token ids, e.g. the "\n\nHuman:" marker's ids
    pad_id: int = 0                 # written after a row has finished
    banned_ids: tuple = ()          # never sampled (e.g. pad, the PM's EOC token; benchmarks ban EOS)

    def __post_init__(self):
        # Lists (e.g. from a ConfigDict) become tuples, so the config stays hashable for jit.
        stops = tuple(tuple(int(t) for t in seq) for seq in self.stop_sequences)
        object.__setattr__(self, "stop_sequences", stops)
        object.__setattr__(self, "banned_ids", tuple(int(t) for t in self.banned_ids))
        if self.max_new_tokens < 1 or self.top_k < 0 or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"need max_new_tokens >= 1, top_k >= 0, 0 < top_p <= 1: {self}")
        if not self.greedy and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (use greedy=True for argmax): {self}")
        if any(len(s) == 0 for s in self.stop_sequences):
            raise ValueError("empty stop sequence")


@flax.struct.dataclass
class Samples:
    """What `generate` returns; consumers strip `stop_lengths` trailing tokens for the response text."""
    tokens: jax.Array        # [batch, max_new_tokens] int32, pad_id after the row finished
    logprobs: jax.Array      # [batch, max_new_tokens] float32: log softmax(logits / T), full vocab; 0 after
    lengths: jax.Array       # [batch] int32: generated tokens, including a matched stop sequence / eos
    stop_lengths: jax.Array  # [batch] int32: trailing tokens of `lengths` that are the stop sequence / eos
    finished: jax.Array      # [batch] bool: ended by eos / stop sequence


# ----------------------------------------------------------------------------- one token


def filter_logits(logits, sampling: SamplingConfig):
    """logits [batch, vocab] -> float32 [batch, vocab], the distribution `sample_logits` draws from.

    Banned ids, tokens outside the top k and outside the top-p nucleus (the smallest set of most
    likely tokens whose probability reaches top_p; Holtzman et al. 2020) get -inf; the rest are
    divided by the temperature (not under greedy). Ties at a cut-off are kept.
    """
    logits = logits.astype(jnp.float32)
    if sampling.banned_ids:
        logits = logits.at[:, jnp.asarray(sampling.banned_ids)].set(-jnp.inf)
    if sampling.greedy:
        return logits
    logits = logits / sampling.temperature
    if sampling.top_k:
        kth = jax.lax.top_k(logits, sampling.top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if sampling.top_p < 1.0:
        ranked = jnp.sort(logits, axis=-1)[:, ::-1]
        probs = jax.nn.softmax(ranked, axis=-1)
        mass_above = jnp.cumsum(probs, axis=-1) - probs    # a token stays while the mass before it < p
        cutoff = jnp.min(jnp.where(mass_above < sampling.top_p, ranked, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < cutoff, -jnp.inf, logits)
    return logits


def sample_logits(logits, rng, sampling: SamplingConfig):
    """logits [batch, vocab] -> int32 tokens [batch]: argmax under greedy, else one categorical draw
    per row from `filter_logits`."""
    filtered = filter_logits(logits, sampling)
    if sampling.greedy:
        return jnp.argmax(filtered, axis=-1).astype(jnp.int32)
    return categorical(rng, filtered)


def categorical(rng, logits, block: int = 128):
    """One draw per row from softmax(logits) [batch, vocab] -> int32 [batch], by inverting the CDF.

    One uniform per row instead of jax.random.categorical's Gumbel noise over the whole vocabulary,
    a fraction of its cost per decode step (see docs/performance.md). Two
    levels, so no cumulative sum runs over the whole vocabulary: the block whose cumulative mass
    first reaches u, then the token within it. u lies in (0, total], and the drawn token is the
    first whose cumulative mass reaches u, so it has mass > 0: a -inf logit (a banned id, one cut by
    top-k or top-p) is never drawn, even at the float edges.
    """
    batch, vocab = logits.shape
    n_blocks = -(-vocab // block)
    logits = logits.astype(jnp.float32)
    if n_blocks * block != vocab:
        logits = jnp.pad(logits, ((0, 0), (0, n_blocks * block - vocab)), constant_values=-jnp.inf)
    mass = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True)).reshape(batch, n_blocks, block)
    block_cdf = jnp.cumsum(jnp.sum(mass, axis=-1), axis=-1)                       # [batch, n_blocks]
    u = (1.0 - jax.random.uniform(rng, (batch,), jnp.float32)) * block_cdf[:, -1]  # (0, total]
    chosen = jnp.minimum(jnp.sum(block_cdf < u[:, None], axis=-1), n_blocks - 1)
    before = jnp.where(chosen > 0, jnp.take_along_axis(block_cdf, jnp.maximum(chosen - 1, 0)[:, None], 1)[:, 0], 0.0)
    inner_cdf = jnp.cumsum(jnp.take_along_axis(mass, chosen[:, None, None], axis=1)[:, 0], axis=-1)
    target = jnp.minimum(u - before, inner_cdf[:, -1])                           # > 0: u > before
    within = jnp.minimum(jnp.sum(inner_cdf < target[:, None], axis=-1), block - 1)
    return (chosen * block + within).astype(jnp.int32)


def token_logprobs(logits, tokens, sampling: SamplingConfig):
    """log softmax(logits / T) [batch, vocab] over the FULL vocab (no top-k/top-p/bans) at `tokens`
    [batch] -> float32 [batch]. T is 1 under greedy. PPO's behaviour log-probabilities."""
    temperature = 1.0 if sampling.greedy else sampling.temperature
    logp = jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)
    return jnp.take_along_axis(logp, tokens[:, None], axis=-1)[:, 0]


def stop_length(tail, sampling: SamplingConfig):
    """How many trailing generated tokens end the row: tail [batch, M] int32 holds each row's last M
    generated tokens, newest last, -1 where none was generated yet. -> int32 [batch]: the length of
    the longest stop sequence (or eos: 1) that the tail ends with, 0 if none."""
    stop = jnp.zeros(tail.shape[:1], jnp.int32)
    for seq in sampling.stop_sequences:
        ends_with = jnp.all(tail[:, tail.shape[1] - len(seq):] == jnp.asarray(seq, jnp.int32), axis=-1)
        stop = jnp.where(ends_with, jnp.maximum(stop, len(seq)), stop)
    if sampling.eos_id is not None:
        stop = jnp.where(tail[:, -1] == sampling.eos_id, jnp.maximum(stop, 1), stop)
    return stop


def next_token_logits(params, cfg: TransformerConfig, hidden):
    """The LM head on one position: final hidden [batch, d_model] -> float32 logits [batch, vocab]."""
    head = unembedding(params, cfg).astype(cfg.compute_dtype)
    return jnp.dot(hidden.astype(cfg.compute_dtype), head, preferred_element_type=jnp.float32)


# ----------------------------------------------------------------------------- the loop


@flax.struct.dataclass
class DecodeState:
    step: jax.Array          # [] int32: tokens emitted so far (the next column)
    cache: dict
    samples: Samples
    tail: jax.Array          # [batch, M] the last M generated tokens (stop matching), -1 = none


def emit(state: DecodeState, logits, rng, sampling: SamplingConfig) -> DecodeState:
    """Sample column `state.step` from logits [batch, vocab]; finished rows get pad_id and logprob 0."""
    s, t = state.samples, state.step
    step_rng = None if sampling.greedy else jax.random.fold_in(rng, t)   # greedy: rng may be None
    token = sample_logits(logits, step_rng, sampling)
    active = ~s.finished
    token = jnp.where(active, token, sampling.pad_id)
    logprob = jnp.where(active, token_logprobs(logits, token, sampling), 0.0)
    tail = jnp.concatenate([state.tail[:, 1:], token[:, None]], axis=1)
    stop = jnp.where(active, stop_length(tail, sampling), 0)
    samples = Samples(tokens=s.tokens.at[:, t].set(token), logprobs=s.logprobs.at[:, t].set(logprob),
                      lengths=s.lengths + active.astype(jnp.int32),
                      stop_lengths=jnp.where(stop > 0, stop, s.stop_lengths),
                      finished=s.finished | (stop > 0))
    return DecodeState(step=t + 1, cache=state.cache, samples=samples, tail=tail)


def generate(params, model_cfg: TransformerConfig, prompts: dict, rng, sampling: SamplingConfig,
             samples_per_prompt: int = 1) -> Samples:
    """Sample up to max_new_tokens per prompt with the KV cache.

    samples_per_prompt = k > 1: each prompt is prefilled ONCE and its cache copied to k rows, so
    the result has batch·k rows (rows i·k … i·k + k − 1 answer prompt i), the same samples as
    generating from the prompts repeated k times, for 1/k of the prefill (best-of-k).

    prompts: {"tokens", "segment_ids", "positions"} [batch, prompt_len], LEFT-padded as
    hh.data.prompt_data.left_padded makes them (every row non-empty: its last slot is a real token).
    Generated token t sits at cache slot prompt_len + t with position (the row's last prompt position
    + 1 + t), so left padding never changes the result. rng: a key (step t draws with
    fold_in(rng, t)); None is allowed under greedy. Pure and jittable with model_cfg and sampling
    static (`jit_generate`); params may be sharded.
    """
    tokens, segment_ids, positions = (jnp.asarray(prompts[k], jnp.int32) for k in PROMPT_KEYS)
    batch, prompt_len = tokens.shape
    n_new = sampling.max_new_tokens
    if model_cfg.position == "learned" and prompt_len + n_new > model_cfg.max_len:
        # positions past the learned table would be silently clamped or filled by the lookup
        raise ValueError(f"prompt length {prompt_len} + max_new_tokens {n_new} exceeds the learned "
                         f"position table (max_len {model_cfg.max_len})")
    model = TransformerLM(model_cfg)
    cache = kv_cache.init_cache(model_cfg, batch, prompt_len + n_new)
    out = model.apply({"params": params}, tokens, positions, segment_ids, cache=cache, cache_index=0,
                      compute_logits=False)
    first_position = positions[:, -1] + 1
    last_hidden = out["final_hidden"][:, -1]
    cache = out["cache"]
    if samples_per_prompt > 1:
        k = samples_per_prompt
        cache = kv_cache.repeat_cache(cache, k, model_cfg.scan_layers)
        first_position, last_hidden = jnp.repeat(first_position, k, 0), jnp.repeat(last_hidden, k, 0)
        batch = batch * k
    tail_len = max([len(s) for s in sampling.stop_sequences] + [1])
    empty = Samples(tokens=jnp.full((batch, n_new), sampling.pad_id, jnp.int32),
                    logprobs=jnp.zeros((batch, n_new), jnp.float32), lengths=jnp.zeros(batch, jnp.int32),
                    stop_lengths=jnp.zeros(batch, jnp.int32), finished=jnp.zeros(batch, bool))
    state = DecodeState(step=jnp.zeros((), jnp.int32), cache=cache, samples=empty,
                        tail=jnp.full((batch, tail_len), -1, jnp.int32))
    state = emit(state, next_token_logits(params, model_cfg, last_hidden), rng, sampling)

    def not_done(state):
        return (state.step < n_new) & ~jnp.all(state.samples.finished)

    def decode_step(state):
        t = state.step   # feed the token of column t - 1, sample column t
        last = jax.lax.dynamic_slice_in_dim(state.samples.tokens, t - 1, 1, axis=1)
        out = model.apply({"params": params}, last, (first_position + t - 1)[:, None],
                          jnp.ones_like(last), cache=state.cache, cache_index=prompt_len + t - 1,
                          compute_logits=False)
        state = state.replace(cache=out["cache"])
        return emit(state, next_token_logits(params, model_cfg, out["final_hidden"][:, 0]), rng, sampling)

    return jax.lax.while_loop(not_done, decode_step, state).samples


def jit_generate(model_cfg: TransformerConfig, sampling: SamplingConfig, mesh=None, rules=None):
    """-> fn(params, prompts, rng) -> Samples: `generate` jitted once per input shape and sharding.

    With a mesh and logical rules, the prompts are placed batch-sharded (over "data" and "fsdp" in
    configs/common.py's rules) and the call traces under the rules, so the cache and activations
    shard like the model's activations; params keep the sharding they arrive with. On several hosts
    pass global arrays (hh.parallel.sharding.make_global_batch): host numpy is placed as one process's.
    `fn.jitted` is the underlying jax.jit function (e.g. for `_cache_size()`).
    """
    def run(params, prompts, rng):
        return generate(params, model_cfg, prompts, rng, sampling)

    jitted = jax.jit(run)

    def fn(params, prompts, rng):
        prompts = {k: prompts[k] for k in PROMPT_KEYS}
        if mesh is None:
            return jitted(params, prompts, rng)
        prompts = jax.device_put(prompts, shd.batch_sharding(mesh, rules))
        with shd.sharding_context(mesh, rules):
            return jitted(params, prompts, rng)

    fn.jitted = jitted
    return fn
