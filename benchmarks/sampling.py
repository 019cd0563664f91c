"""Sampling throughput: hh.models.sampling.generate (KV cache) against the honest uncached baseline.

    .venv/bin/python benchmarks/sampling.py [--preset 13M] [--batch 8] [--prompt 64] [--new 128]

The baseline is no strawman but the fastest uncached loop: the same jitted model on a fixed
[batch, prompt + new] buffer, compiled once: each step of one `lax.fori_loop` runs the full forward with
compute_logits=False, applies the LM head to the current position only, samples and writes the
token. Both use the same sampler and key. The last stdout line is one JSON object.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.train_step import device_name  # noqa: E402
from hh.data.prompt_data import left_padded  # noqa: E402
from hh.models import presets, sampling as smp  # noqa: E402
from hh.models.transformer import TransformerLM  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="13M")
    p.add_argument("--vocab", type=int, default=512,
                   help="model vocabulary (512: the runs' SentencePiece size; the paper presets have 65,536)")
    p.add_argument("--dtype", default="float32", help="compute dtype (CPU: float32)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--prompt", type=int, default=64, help="prompt length (every row full, no padding)")
    p.add_argument("--new", type=int, default=128, help="new tokens per row")
    p.add_argument("--kv-runs", type=int, default=3, help="timed runs of the KV-cache sampler")
    p.add_argument("--baseline-runs", type=int, default=1, help="timed runs of the baseline")
    return p.parse_args(argv)


def baseline_generate(params, cfg, prompts, rng, sampling):
    """Tokens [batch, new] by re-running the whole buffer every step (no cache, no stop rules)."""
    batch, prompt_len = prompts["tokens"].shape
    n_new = sampling.max_new_tokens
    model = TransformerLM(cfg)
    tokens = jnp.concatenate([prompts["tokens"], jnp.zeros((batch, n_new), jnp.int32)], axis=1)
    segment_ids = jnp.concatenate([prompts["segment_ids"], jnp.ones((batch, n_new), jnp.int32)], axis=1)
    positions = jnp.concatenate(
        [prompts["positions"], prompts["positions"][:, -1:] + 1 + jnp.arange(n_new)], axis=1)

    def step(t, tokens):
        hidden = model.apply({"params": params}, tokens, positions, segment_ids,
                             compute_logits=False)["final_hidden"]
        current = jax.lax.dynamic_index_in_dim(hidden, prompt_len - 1 + t, axis=1, keepdims=False)
        logits = smp.next_token_logits(params, cfg, current)
        token = smp.sample_logits(logits, jax.random.fold_in(rng, t), sampling)
        return jax.lax.dynamic_update_index_in_dim(tokens, token, prompt_len + t, axis=1)

    return jax.lax.fori_loop(0, n_new, step, tokens)[:, prompt_len:]


def compile_and_time(fn, args, runs):
    """-> (compile seconds, mean seconds per run, last output). AOT-compiled once, one warm-up run."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return compile_s, float(np.mean(times)), out


def main(argv=None):
    args = parse_args(argv)
    cfg = presets.model_config(args.preset, vocab_size=args.vocab, dtype=args.dtype)
    params = jax.jit(TransformerLM(cfg).init)(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
    params = nn.meta.unbox(params["params"])
    n_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
    rows = np.random.default_rng(0).integers(1, args.vocab, (args.batch, args.prompt)).tolist()
    prompts = {k: jnp.asarray(v) for k, v in left_padded(rows, args.prompt).items() if k in smp.PROMPT_KEYS}
    # No eos: both samplers run all `new` steps (the KV loop would otherwise exit early).
    sampling = smp.SamplingConfig(max_new_tokens=args.new, temperature=1.0)
    rng = jax.random.key(1)
    n_tokens = args.batch * args.new

    kv_compile, kv_s, kv_out = compile_and_time(
        lambda p, x, r: smp.generate(p, cfg, x, r, sampling), (params, prompts, rng), args.kv_runs)
    print(f"kv cache: compile {kv_compile:.2f} s, {kv_s:.3f} s per batch", flush=True)
    base_compile, base_s, base_tokens = compile_and_time(
        lambda p, x, r: baseline_generate(p, cfg, x, r, sampling), (params, prompts, rng), args.baseline_runs)
    print(f"baseline: compile {base_compile:.2f} s, {base_s:.3f} s per batch", flush=True)

    result = {
        "preset": args.preset, "vocab": args.vocab, "dtype": args.dtype, "batch": args.batch,
        "prompt_len": args.prompt, "new_tokens": args.new, "params_total": int(n_params),
        "compile_s": {"kv_cache": round(kv_compile, 2), "baseline": round(base_compile, 2)},
        "seconds_per_batch": {"kv_cache": round(kv_s, 4), "baseline": round(base_s, 4)},
        "tokens_per_s": {"kv_cache": round(n_tokens / kv_s, 1), "baseline": round(n_tokens / base_s, 1)},
        "speedup": round(base_s / kv_s, 1),
        # same key and sampler: equal unless float noise flips a draw (then the rows diverge)
        "tokens_equal_fraction": float(np.mean(np.asarray(kv_out.tokens) == np.asarray(base_tokens))),
        "jax_version": jax.__version__,
        "device": device_name(jax.devices()[0]),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
