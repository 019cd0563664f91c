"""Time per pair of the DPO step against the PM step at the same shape, on this device.

    .venv/bin/python benchmarks/dpo_step.py [--preset tiny] [--prompt 160] [--response 96] \\
        [--batch 16] [--steps 10] [--out benchmarks/results/dpo_step.json]

Equal work: the same model preset, the same pairs per step and the same tokens per sequence
(prompt + response = the PM's seq_len), both sides run their stage's own jitted functions
(hh.pm.stage.build_steps, hh.dpo.stage.build_steps) on the same mesh, compiled once, warmed up,
then timed to completion (block_until_ready) one step at a time; the median is reported.
- PM: one forward + backward over 2 sequences per pair (chosen, rejected) and the optimizer.
- DPO, reference "batch": the frozen reference's forward over both responses, then the policy's
  forward + backward and the optimizer (two jitted calls, as the loop dispatches them).
- DPO, reference "cached": the update alone (the reference's log-probs come with the batch).
Expectation (counted in forward-equivalents: a backward is two): PM 3, DPO cached 3, DPO batch 4,
so DPO / PM ≈ 1.0 and 1.33; the project's bounds are 2.5× (batch) and 2.1× (cached).
The last stdout line is one JSON object.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from configs import dpo as dpo_config, pm as pm_config  # noqa: E402
from hh.data.byte_tokenizer import ByteTokenizer  # noqa: E402
from hh.dpo import stage as dpo_stage  # noqa: E402
from hh.parallel import sharding as shd  # noqa: E402
from hh.pm import stage as pm_stage  # noqa: E402
from hh.train import runtime  # noqa: E402
from hh.train.state import state_from_params  # noqa: E402

BOUNDS = {"batch": 2.5, "cached": 2.1}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--prompt", type=int, default=160, help="prompt tokens (DPO's max_prompt_len)")
    p.add_argument("--response", type=int, default=96, help="response tokens (DPO's max_response_len)")
    p.add_argument("--batch", type=int, default=16, help="pairs per step")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--out", default="")
    return p.parse_args(argv)


def configure(config, args):
    config.model.vocab_size = 512
    config.train.global_batch_size = config.train.eval_batch_size = args.batch
    config.loop.steps = 100
    return config


def random_tokens(rng, shape):
    return rng.integers(4, 500, shape).astype(np.int32)


def pm_batch(args, rng):
    """A full PM batch: every row real, seq_len = prompt + response tokens, eoc last."""
    seq, b = args.prompt + args.response, args.batch
    batch = {}
    for side in ("chosen", "rejected"):
        tokens = random_tokens(rng, (b, seq))
        tokens[:, -1] = ByteTokenizer.eoc_id
        batch.update({f"{side}_tokens": tokens, f"{side}_positions": np.tile(np.arange(seq, dtype=np.int32), (b, 1)),
                      f"{side}_segment_ids": np.ones((b, seq), np.int32), f"{side}_eoc_index": np.full(b, seq - 1),
                      f"{side}_response_mask": (np.arange(seq) >= args.prompt)[None].repeat(b, 0).astype(np.float32),
                      f"{side}_targets": np.roll(tokens, -1, axis=1),
                      f"{side}_loss_mask": np.ones((b, seq), np.float32)})
    batch.update(pair_mask=np.ones(b, np.float32), pair_weight=np.ones(b, np.float32))
    return batch


def dpo_batch(args, rng):
    """A full DPO batch: real prompts and responses of the whole widths, reference log-probs given."""
    b = args.batch
    batch = {"prompt_tokens": random_tokens(rng, (b, args.prompt)),
             "prompt_segment_ids": np.ones((b, args.prompt), np.int32),
             "pair_mask": np.ones(b, np.float32), "pair_weight": np.ones(b, np.float32),
             "ref_chosen_logp": np.full(b, -300.0, np.float32), "ref_rejected_logp": np.full(b, -300.0, np.float32)}
    for side in ("chosen", "rejected"):
        batch[f"{side}_tokens"] = random_tokens(rng, (b, args.response))
        batch[f"{side}_mask"] = np.ones((b, args.response), np.float32)
    return batch


def timed(fn, steps, warmup):
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def fresh_state(steps, shardings, optimizer, init_fn, mesh, rules):
    import flax.linen as nn
    with runtime.sharding_context(mesh, rules):
        params = jax.jit(lambda r: nn.meta.unbox(init_fn(r)), out_shardings=shardings.params)(jax.random.key(0))
        return state_from_params(params, optimizer, shardings)


def measure_pm(args, rng):
    config = configure(pm_config.get_config(args.preset), args)
    config.data.seq_len = args.prompt + args.response
    config.train.lm_weight = 0.0   # PM finetuning's preference loss alone (the LM term would add a head)
    mesh, rules = runtime.mesh_and_rules(config)
    local = pm_batch(args, rng)
    steps = pm_stage.build_steps(config, mesh, rules, ByteTokenizer.eoc_id, local, verbose=False)
    state = fresh_state(steps, steps["shardings"], steps["optimizer"], steps["init_fn"], mesh, rules)
    batch = shd.make_global_batch(local, steps["batch_sharding"], args.batch)
    holder = {"state": state}

    def one():
        holder["state"], metrics = steps["train_step"](holder["state"], batch)
        return metrics
    return timed(one, args.steps, args.warmup)


def measure_dpo(args, rng, reference: str):
    config = configure(dpo_config.get_config(args.preset), args)
    config.data.max_prompt_len, config.data.max_response_len = args.prompt, args.response
    config.data.seq_len = args.prompt + args.response
    mesh, rules = runtime.mesh_and_rules(config)
    local = dpo_batch(args, rng)
    steps = dpo_stage.build_steps(config, mesh, rules, local, verbose=False)
    state = fresh_state(steps, steps["shardings"], steps["optimizer"], steps["init_fn"], mesh, rules)
    ref_params = jax.tree.map(jnp.copy, state.params)
    batch = shd.make_global_batch(local, steps["batch_sharding"], args.batch)
    inputs = {k: v for k, v in batch.items() if not k.startswith("ref_")}
    holder = {"state": state}

    def one():
        step_batch = batch if reference == "cached" else {**inputs, **steps["reference"](ref_params, inputs)}
        holder["state"], metrics = steps["update"](holder["state"], step_batch)
        return metrics
    return timed(one, args.steps, args.warmup)


def git_state():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True).stdout.strip())
    return {"commit": commit, "dirty": dirty}


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(0)
    pm_s, pm_all = measure_pm(args, rng)
    rows = {"pm": {"median_s": pm_s, "per_pair_ms": 1e3 * pm_s / args.batch, "times_s": pm_all}}
    for reference in ("batch", "cached"):
        s, all_ = measure_dpo(args, rng, reference)
        rows[f"dpo_{reference}"] = {"median_s": s, "per_pair_ms": 1e3 * s / args.batch, "times_s": all_,
                                    "ratio_to_pm": s / pm_s, "bound": BOUNDS[reference],
                                    "within_bound": s / pm_s <= BOUNDS[reference]}
    result = {"benchmark": "dpo_step", "preset": args.preset, "prompt": args.prompt, "response": args.response,
              "pairs_per_step": args.batch, "steps": args.steps, "devices": jax.device_count(),
              "platform": jax.devices()[0].platform, "cpu": platform.processor() or platform.machine(),
              "jax": jax.__version__, "git": git_state(), "rows": rows}
    print(f"{'step':>12} {'median s':>9} {'ms / pair':>9} {'× PM':>6} {'bound':>6}")
    for name, row in rows.items():
        print(f"{name:>12} {row['median_s']:9.4f} {row['per_pair_ms']:9.2f} {row.get('ratio_to_pm', 1.0):6.2f} "
              f"{row.get('bound', float('nan')):6.1f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
