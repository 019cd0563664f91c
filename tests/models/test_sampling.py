"""KV-cache decoding and hh.models.sampling against independent references.

References: the full (uncached) forward pass over the whole sequence, which tests/models/test_transformer.py
checks against float64 NumPy; NumPy re-derivations of temperature / top-k / top-p; and a hand-set
model whose greedy continuation is a known successor map (for eos and stop sequences).
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.common import SHARDING_RULES
from hh.data.prompt_data import left_padded
from hh.models import kv_cache, sampling as smp
from hh.models.transformer import TransformerConfig, TransformerLM
from hh.parallel import sharding as shd

# init_std 0.2: peaked, architecture-sensitive logits (see tests/models/test_transformer.py).
BASE = TransformerConfig(vocab_size=128, d_model=32, n_layers=2, n_heads=4, d_head=8, d_ff=64,
                         max_len=64, init_std=0.2)
ATOL = 1e-5   # float32; measured max |diff| of cached vs full logits ~2e-6

# Several variant fields per config keep the compile count (the CPU time of this file) low; between
# them every field the cache touches is covered.
VARIANTS = {
    "default": {},
    "gqa_parallel_tied_blockwise": dict(n_kv_heads=2, parallel_residual=True, tie_embeddings=True,
                                        attention="blockwise", attention_block=4),  # cache: dense
    "scan_remat_mqa_rotary_quarter_llama3": dict(
        scan_layers=True, remat="full", n_kv_heads=1, rotary_fraction=0.25, rotary_scaling="llama3",
        rotary_scaling_factor=8.0, rotary_original_max_len=16),
    "learned_positions_rmsnorm_swiglu_bias": dict(position="learned", norm="rmsnorm",
                                                  activation="swiglu", use_bias=True),
}

PROMPTS = [[5, 17, 3], [9], [40, 41, 42, 43, 44, 45, 46], [12, 88, 7, 7, 60]]  # different lengths
WIDTH = 8


@functools.lru_cache(maxsize=None)
def make_params(cfg, seed=0):
    params = jax.jit(TransformerLM(cfg).init)(jax.random.key(seed), jnp.zeros((1, 4), jnp.int32))["params"]
    return nn.meta.unbox(params)


@functools.lru_cache(maxsize=None)
def jit_generate(cfg, sampling):
    """One jitted generate per (model, sampling) for the whole file: compiles are the cost here."""
    return smp.jit_generate(cfg, sampling)


def continued(prompts, generated):
    """tokens, positions, segment ids [batch, width + n] of prompt + generated, with the positions
    and segment ids that decoding uses (continuing each row's prompt)."""
    n = generated.shape[1]
    tokens = np.concatenate([prompts["tokens"], generated], axis=1)
    segments = np.concatenate([prompts["segment_ids"], np.ones_like(generated)], axis=1)
    positions = np.concatenate([prompts["positions"], prompts["positions"][:, -1:] + 1 + np.arange(n)], 1)
    return tokens, positions, segments


def full_forward_logits(params, cfg, prompts, generated):
    """Logits [batch, width + n, vocab] of one uncached forward over prompt + generated tokens."""
    tokens, positions, segments = continued(prompts, generated)
    fn = jax.jit(lambda p: TransformerLM(cfg).apply({"params": p}, tokens, positions, segments)["logits"])
    return np.asarray(fn(params))


def cached_and_full_logits(params, cfg, prompts, continuation):
    """Prefill the prompt, then feed `continuation` [batch, n] one token at a time through the cache
    -> (cached logits [batch, n + 1, vocab], the full forward's logits at the same positions)."""
    batch, width = prompts["tokens"].shape
    n = continuation.shape[1]
    model = TransformerLM(cfg)

    def run(params):
        cache = kv_cache.init_cache(cfg, batch, width + n)
        out = model.apply({"params": params}, prompts["tokens"], prompts["positions"],
                          prompts["segment_ids"], cache=cache, cache_index=0)

        def step(cache, xs):
            token, t = xs
            position = prompts["positions"][:, -1:] + 1 + t
            out = model.apply({"params": params}, token[:, None], position, jnp.ones_like(token[:, None]),
                              cache=cache, cache_index=width + t)
            return out["cache"], out["logits"][:, 0]

        _, steps = jax.lax.scan(step, out["cache"], (continuation.T, jnp.arange(n)))
        cached = jnp.concatenate([out["logits"][:, -1:], jnp.moveaxis(steps, 0, 1)], axis=1)
        full = model.apply({"params": params}, *continued(prompts, continuation))["logits"]
        return cached, full[:, width - 1:]

    return jax.tree_util.tree_map(np.asarray, jax.jit(run)(params))


# ---------------------------------------------------------------- the cache vs the full forward


@pytest.mark.parametrize("name", list(VARIANTS))
def test_cached_decoding_matches_full_forward(name):
    cfg = dataclasses.replace(BASE, **VARIANTS[name])
    prompts = left_padded(PROMPTS, WIDTH)
    continuation = np.random.default_rng(1).integers(1, cfg.vocab_size, (len(PROMPTS), 4)).astype(np.int32)
    got, want = cached_and_full_logits(make_params(cfg), cfg, prompts, continuation)
    assert np.abs(want).max() > 1.0
    np.testing.assert_allclose(got, want, rtol=ATOL, atol=ATOL)


@pytest.mark.parametrize("scan", [False, True])
def test_cache_layout(scan):
    cfg = dataclasses.replace(BASE, scan_layers=scan, n_kv_heads=2)
    cache = kv_cache.init_cache(cfg, 3, 10)
    k = cache["layers"]["k"] if scan else cache["layers"]["layer_1"]["k"]
    assert k.shape == ((2,) if scan else ()) + (3, 2, 10, 8) and k.dtype == jnp.float32
    axes = jax.tree_util.tree_leaves(kv_cache.cache_logical_axes(cfg), is_leaf=lambda x: isinstance(x, tuple))
    assert [len(a) for a in axes] == [x.ndim for x in jax.tree_util.tree_leaves(cache)]
    params = jax.eval_shape(TransformerLM(cfg).init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32))
    params = nn.meta.unbox(params["params"])
    out = jax.eval_shape(lambda p: TransformerLM(cfg).apply(
        {"params": p}, jnp.ones((3, 4), jnp.int32), cache=cache, cache_index=2), params)
    assert jax.tree_util.tree_structure(out["cache"]) == jax.tree_util.tree_structure(cache)
    assert jax.tree_util.tree_map(lambda x: x.shape, out["cache"]) == jax.tree_util.tree_map(
        lambda x: x.shape, cache)


# ---------------------------------------------------------------- generate

# Two sampling setups shared by several tests (each jitted generate is one compile, the cost here).
GQA = dataclasses.replace(BASE, n_kv_heads=2, scan_layers=True)
BANNED = tuple(range(0, 128, 2))   # even ids: half the vocabulary
SAMPLED = smp.SamplingConfig(max_new_tokens=10, temperature=0.7, top_k=20, eos_id=3, banned_ids=BANNED)
GREEDY = smp.SamplingConfig(max_new_tokens=10, greedy=True)
BATCH8 = PROMPTS * 2   # batch 8: divisible by data x fsdp of the sharded test


@functools.lru_cache(maxsize=None)
def greedy_samples(width):
    return jit_generate(GQA, GREEDY)(make_params(GQA), left_padded(BATCH8, width), None)


def test_logprobs_match_full_forward_and_bans_hold():
    params = make_params(GQA)
    prompts = left_padded(PROMPTS, WIDTH)
    out = jit_generate(GQA, SAMPLED)(params, prompts, jax.random.key(3))
    tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    logits = full_forward_logits(params, GQA, prompts, tokens)[:, WIDTH - 1:-1].astype(np.float64)
    # logprobs: temperature-scaled log-softmax over the FULL vocabulary (bans and top-k ignored)
    logp = logits / 0.7 - np.log(np.exp(logits / 0.7).sum(-1, keepdims=True))
    want = np.take_along_axis(logp, tokens[..., None], -1)[..., 0]
    live = np.arange(10)[None] < lengths[:, None]
    assert live.sum() > 20
    np.testing.assert_allclose(np.asarray(out.logprobs)[live], want[live], atol=ATOL)
    assert np.all(np.asarray(out.logprobs)[~live] == 0) and np.all(tokens[~live] == SAMPLED.pad_id)
    # every sampled token is allowed and lies in its step's top 20 of the allowed logits
    assert not np.isin(tokens[live], BANNED).any()
    allowed = logits.copy()
    allowed[..., list(BANNED)] = -np.inf
    kth = np.sort(allowed, axis=-1)[..., -20]
    assert np.all(np.take_along_axis(allowed, tokens[..., None], -1)[..., 0][live] >= kth[live] - ATOL)
    # ... while without the bans, banned ids would have been sampled: they hold much of the mass
    assert np.exp(logp)[..., list(BANNED)].sum(-1)[live].mean() > 0.3


def test_fixed_key_is_deterministic_and_compiles_once():
    params = make_params(GQA)
    prompts = left_padded(PROMPTS, WIDTH)
    generate = jit_generate(GQA, SAMPLED)
    a = generate(params, prompts, jax.random.key(7))
    compiled = generate.jitted._cache_size()
    b = generate(params, prompts, jax.random.key(7))
    c = generate(params, left_padded([[1, 2], [3], [4, 5, 6], [7]], WIDTH), jax.random.key(8))
    assert generate.jitted._cache_size() == compiled      # same shapes: no new compile
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.logprobs, b.logprobs)
    d = generate(params, prompts, jax.random.key(8))
    assert np.any(np.asarray(a.tokens) != np.asarray(d.tokens)) and c.tokens.shape == a.tokens.shape


def test_padding_invariance_greedy():
    """The same prompts left-padded to width 8 and 13: identical greedy continuations and logprobs."""
    narrow, wide = greedy_samples(WIDTH), greedy_samples(WIDTH + 5)
    np.testing.assert_array_equal(narrow.tokens, wide.tokens)
    np.testing.assert_allclose(narrow.logprobs, wide.logprobs, atol=ATOL)
    assert np.all(np.asarray(narrow.logprobs) < 0)


# ---------------------------------------------------------------- eos and stop sequences

# A hand-set model whose greedy next token is SUCCESSOR[token]: blocks output zero (their out /
# down projections are zero), the embedding is the identity, and the LM head is the permutation.
SUCCESSOR = np.arange(16)
for cycle in ([1, 2, 3, 4, 5, 13, 14], [6, 7, 8], [10, 11, 12]):
    SUCCESSOR[cycle] = np.roll(cycle, -1)


def successor_model():
    cfg = TransformerConfig(vocab_size=16, d_model=16, n_layers=1, n_heads=2, d_head=8, d_ff=32, max_len=32)
    params = make_params(cfg)

    def hand_set(path, leaf):
        names = [k.key for k in path]
        if names[-2:] == ["embed", "embedding"]:
            return jnp.eye(16)
        if names[-2:] == ["lm_head", "kernel"]:
            return jnp.eye(16)[SUCCESSOR]   # row d has its 1 at column SUCCESSOR[d]
        if names[-2] in ("out", "down"):
            return jnp.zeros_like(leaf)
        return leaf

    return cfg, jax.tree_util.tree_map_with_path(hand_set, params)


def test_eos_and_stop_sequences_end_rows():
    cfg, params = successor_model()
    sampling = smp.SamplingConfig(max_new_tokens=6, greedy=True, eos_id=8, pad_id=0,
                                  stop_sequences=((4, 5), (12, 10, 11)))
    prompts = left_padded([[9, 1], [6], [3, 10], [2, 2, 4], [9]], 3)
    out = jax.tree_util.tree_map(np.asarray, jit_generate(cfg, sampling)(params, prompts, None))
    np.testing.assert_array_equal(out.tokens, [
        [2, 3, 4, 5, 0, 0],       # stop sequence (4, 5)
        [7, 8, 0, 0, 0, 0],       # eos
        [11, 12, 10, 11, 0, 0],   # stop sequence (12, 10, 11)
        [5, 13, 14, 1, 2, 3],     # the prompt's 4 does not start a (4, 5) match: cut at max_new_tokens
        [9, 9, 9, 9, 9, 9],       # never stops
    ])
    np.testing.assert_array_equal(out.lengths, [4, 2, 4, 6, 6])
    np.testing.assert_array_equal(out.stop_lengths, [2, 1, 3, 0, 0])
    np.testing.assert_array_equal(out.finished, [True, True, True, False, False])
    assert np.all(out.logprobs[out.tokens == 0] == 0) and np.all(out.logprobs[out.tokens != 0] < 0)


def test_stop_length_hand_worked():
    sampling = smp.SamplingConfig(eos_id=2, stop_sequences=((7, 2), (5, 6, 7), (7,)))
    tail = jnp.array([[-1, 5, 6, 7],    # (5, 6, 7) beats (7,)
                      [-1, -1, -1, 7],  # (7,)
                      [1, 5, 7, 2],     # (7, 2) beats eos
                      [4, 4, 4, 2],     # eos
                      [6, 7, 3, 2][::-1],  # no match
                      [-1, -1, -1, -1]])
    np.testing.assert_array_equal(smp.stop_length(tail, sampling), [3, 1, 2, 1, 0, 0])


# ---------------------------------------------------------------- sample_logits statistics

LOGITS = np.log(np.array([0.30, 0.22, 0.18, 0.12, 0.10, 0.05, 0.03]))


def reference_distribution(sampling):
    """float64 NumPy: bans, temperature, top-k, then the top-p nucleus, renormalised."""
    logits = LOGITS.copy()
    logits[list(sampling.banned_ids)] = -np.inf
    logits = logits / sampling.temperature
    order = np.argsort(-logits)
    keep = np.zeros(len(logits), bool)
    if sampling.top_k:
        keep[order[:sampling.top_k]] = True
    else:
        keep[:] = True
    keep &= np.isfinite(logits)
    p = np.where(keep, np.exp(logits - logits[keep].max()), 0.0)
    p /= p.sum()
    if sampling.top_p < 1.0:
        mass, nucleus = 0.0, np.zeros_like(keep)
        for i in np.argsort(-p):
            nucleus[i] = True
            mass += p[i]
            if mass >= sampling.top_p:
                break
        p = np.where(nucleus, p, 0.0)
        p /= p.sum()
    return p


@pytest.mark.parametrize("kw", [dict(), dict(temperature=0.5), dict(top_k=3), dict(top_p=0.75),
                                dict(top_k=5, top_p=0.6, temperature=1.5, banned_ids=(0, 4))],
                         ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "plain")
def test_sample_logits_matches_filtered_distribution(kw):
    sampling = smp.SamplingConfig(**kw)
    n = 40000
    draws = jax.jit(smp.sample_logits, static_argnums=2)(
        jnp.broadcast_to(jnp.asarray(LOGITS, jnp.float32), (n, len(LOGITS))), jax.random.key(0), sampling)
    freq = np.bincount(np.asarray(draws), minlength=len(LOGITS)) / n
    want = reference_distribution(sampling)
    assert np.all(freq[want == 0] == 0)                  # filtered tokens are never drawn
    # TV sampling noise at n = 40000 is ~0.003; a filter off by one token moves it by >= 0.03.
    assert 0.5 * np.abs(freq - want).sum() < 0.012, (freq, want)


@pytest.mark.parametrize("vocab,block", [(300, 128), (300, 7), (8, 3)])
def test_categorical_draws_the_softmax_across_blocks(vocab, block):
    """The two-level inverse CDF against float64 softmax probabilities: the finite logits sit at
    block edges (first and last slot of a block, the padded tail), every other id is -inf."""
    rng = np.random.default_rng(vocab + block)
    logits = np.full(vocab, -np.inf)
    live = sorted({0, block - 1, block, vocab - 2} | set(rng.choice(vocab, 4, replace=False).tolist()))
    logits[live] = rng.normal(size=len(live)) * 1.5
    n = 40000
    draws = jax.jit(smp.categorical, static_argnums=2)(
        jax.random.key(1), jnp.broadcast_to(jnp.asarray(logits, jnp.float32), (n, vocab)), block)
    freq = np.bincount(np.asarray(draws), minlength=vocab) / n
    want = np.where(np.isfinite(logits), np.exp(logits - logits[live].max()), 0.0)
    want /= want.sum()
    assert len(freq) == vocab and np.all(freq[want == 0] == 0)
    assert 0.5 * np.abs(freq - want).sum() < 0.012, (freq[live], want[live])


def test_greedy_is_argmax_after_bans():
    logits = jnp.asarray([LOGITS, LOGITS[::-1]], jnp.float32)
    got = smp.sample_logits(logits, None, smp.SamplingConfig(greedy=True, temperature=0.1, banned_ids=(0,)))
    np.testing.assert_array_equal(got, [1, 6])
    lp = smp.token_logprobs(logits, got, smp.SamplingConfig(greedy=True, temperature=0.1))
    np.testing.assert_allclose(lp, [np.log(0.22), np.log(0.30)], atol=1e-6)   # T ignored, full vocab


# ---------------------------------------------------------------- sharded sampling


def test_sharded_greedy_matches_single_device():
    """Mesh data=2, fsdp=2, tensor=2: params sharded by configs/common.py's rules, batch over
    (data, fsdp), the cache like activations."""
    boxed = jax.eval_shape(TransformerLM(GQA).init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
    params, prompts, single = make_params(GQA), left_padded(BATCH8, WIDTH), greedy_samples(WIDTH)
    mesh = shd.make_mesh(dict(data=2, fsdp=2, tensor=2))
    sharded_params = jax.device_put(params, shd.logical_shardings(boxed, mesh, SHARDING_RULES))
    sharded = smp.jit_generate(GQA, GREEDY, mesh, SHARDING_RULES)(sharded_params, prompts, None)
    assert not sharded_params["stack"]["layers"]["mlp"]["up"]["kernel"].sharding.is_fully_replicated
    assert sharded.tokens.sharding.spec[0] == ("data", "fsdp")

    # Equal tokens up to the first step whose top-2 logit gap is <= 1e-3: there a
    # float reduction order may legitimately flip the argmax.
    tokens = np.asarray(single.tokens)
    logits = full_forward_logits(params, GQA, prompts, tokens)[:, WIDTH - 1:-1]
    top2 = np.sort(logits, axis=-1)[..., -2:]
    trusted = np.cumsum((top2[..., 1] - top2[..., 0]) <= 1e-3, axis=1) == 0
    assert trusted.mean() > 0.9
    np.testing.assert_array_equal(np.asarray(sharded.tokens)[trusted], tokens[trusted])
    np.testing.assert_allclose(np.asarray(sharded.logprobs)[trusted], np.asarray(single.logprobs)[trusted],
                               atol=ATOL)


def test_sampling_config_normalises_and_validates():
    sampling = smp.SamplingConfig(stop_sequences=[[1, 2], (3,)], banned_ids=[0, 5])
    assert sampling.stop_sequences == ((1, 2), (3,)) and sampling.banned_ids == (0, 5)
    hash(sampling)   # a static jit argument
    for bad in (dict(temperature=0.0), dict(top_p=0.0), dict(top_k=-1), dict(max_new_tokens=0),
                dict(stop_sequences=((),))):
        with pytest.raises(ValueError):
            smp.SamplingConfig(**bad)
    smp.SamplingConfig(temperature=0.0, greedy=True)   # greedy ignores the temperature


@pytest.mark.parametrize("cfg", [BASE, GQA], ids=["layers_unrolled", "layers_scanned"])
def test_k_samples_per_prompt_equal_the_repeated_prompts(cfg):
    """Prefill once + the cache copied k times = generating from each prompt repeated k times."""
    params, k = make_params(cfg), 3
    prompts = left_padded(PROMPTS, WIDTH)
    repeated = {key: np.repeat(prompts[key], k, axis=0) for key in ("tokens", "segment_ids", "positions")}
    run = jax.jit(smp.generate, static_argnames=("model_cfg", "sampling", "samples_per_prompt"))
    once = run(params, cfg, {key: prompts[key] for key in repeated}, jax.random.key(5), SAMPLED,
               samples_per_prompt=k)
    many = run(params, cfg, repeated, jax.random.key(5), SAMPLED)
    assert once.tokens.shape == (len(PROMPTS) * k, SAMPLED.max_new_tokens)
    np.testing.assert_array_equal(once.tokens, many.tokens)
    np.testing.assert_allclose(once.logprobs, many.logprobs, atol=ATOL)
    np.testing.assert_array_equal(once.lengths, many.lengths)
    # the k rows of one prompt are different draws, not copies
    assert len({tuple(r) for r in np.asarray(once.tokens)[:k]}) > 1
