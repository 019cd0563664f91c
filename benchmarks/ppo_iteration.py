"""One PPO iteration of hh, timed by phase, against the hardware's roofline (docs/performance.md).

`python benchmarks/ppo_iteration.py --workload W1|W2|W3|W3m [--iterations N] [--trace DIR] [--override JSON]` builds the
workload of benchmarks/ppo_workloads.py with the PPO stage's own iteration (hh.rl.iteration's
phase functions): policy, frozen reference, critic and PM of one shape (SwiGLU
MLP with hidden 4·d_model, RMSNorm, rotary, untied head, float32), random prompts of exactly the
prompt length, temperature-1 sampling over the full vocabulary with EOS banned, the KL penalty in
the reward, GAE γ = 1, λ = 0.95, the workload's passes and minibatches, clipping + AdamW.

Each phase is its own jitted call, timed with block_until_ready: rollout (hh's generate phase:
prefill + KV-cache decode), scoring (hh's score phase: reference log-probs, PM reward), train (hh's
update phase: old log-probs and values at θ_old, advantages, policy and critic AdamW steps), other (the rest of the iteration's wall time: dispatch, host work). The median
is over the iterations after the first (compilation). The roofline: each phase's analytic FLOPs
against this process's float32 matmul peak, and the decode loop's bytes read (weights + KV cache
per token) against the measured memory bandwidth. Prints one JSON line.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ppo_workloads import CONFIG_KEYS, PHASES, WORKLOADS, micro_rows, optimizer_spec, per_minibatch_part, workload  # noqa: E402

from hh.models.heads import PreferenceModel, ValueModel  # noqa: E402
from hh.models.sampling import SamplingConfig  # noqa: E402
from hh.models.transformer import TransformerConfig, TransformerLM  # noqa: E402
from hh.parallel.sharding import strip_boxes  # noqa: E402
from hh.rl.iteration import phase_fns  # noqa: E402
from hh.rl.ppo import init_ppo_state  # noqa: E402
from hh.train.flops import matmul_params  # noqa: E402


def model_config(w) -> TransformerConfig:
    return TransformerConfig(vocab_size=w["vocab"], d_model=w["d_model"], n_layers=w["layers"],
                             n_heads=w["heads"], d_head=w["head_dim"], d_ff=w["mlp_hidden_factor"] * w["d_model"],
                             max_len=w["prompt_len"] + w["gen_len"] + 1, norm="rmsnorm", activation="swiglu",
                             tie_embeddings=False, position="rotary", dtype=w["dtype"], param_dtype="float32",
                             attention=w.get("attention", "dense"))


def configs(w):
    rollout = ml_collections.ConfigDict(dict(max_new_tokens=w["gen_len"], temperature=w["temperature"],
                                             truncated_penalty=0.0))
    ppo = ml_collections.ConfigDict(dict(epochs=w["epochs"], minibatches=w["minibatches"], clip_eps=w["clip_eps"],
                                         value_clip_eps=0.2, value_coef=1.0, entropy_coef=0.0, gamma=w["gamma"],
                                         lam=w["lam"], kl_estimator="k1", whiten_advantages=True))
    kl = ml_collections.ConfigDict(dict(kind="fixed", init_coef=w["kl_coef"]))
    return rollout, ppo, kl


class Workload:
    """The models, params, optimizers and the three jitted phases of one workload."""

    def __init__(self, w, cfg: TransformerConfig = None):
        """w: a workload dict (ppo_workloads.workload); cfg: the model, by default the workload's."""
        cfg = model_config(w) if cfg is None else cfg
        self.w, self.cfg = w, cfg
        self.eos = w["vocab"] - 1          # never sampled; the PM reads its score at this id
        self.models = {"policy": TransformerLM(cfg), "value": ValueModel(cfg),
                       "pm": PreferenceModel(cfg, eoc_id=self.eos)}
        self.sampling = SamplingConfig(max_new_tokens=w["gen_len"], temperature=w["temperature"],
                                       eos_id=self.eos, banned_ids=(self.eos,), pad_id=0)
        self.rollout_cfg, self.ppo_cfg, self.kl_cfg = configs(w)
        seq = w["prompt_len"] + w["gen_len"] + 1
        tokens = jnp.zeros((1, seq), jnp.int32)
        keys = jax.random.split(jax.random.key(w["seed"]), 4)
        init = jax.jit(lambda k: strip_boxes(self.models["policy"].init(k, tokens)["params"]))
        policy, reference = init(keys[0]), init(keys[1])
        value = jax.jit(lambda k: strip_boxes(self.models["value"].init(
            k, tokens, tokens, jnp.ones_like(tokens))["params"]))(keys[2])
        pm = jax.jit(lambda k: strip_boxes(self.models["pm"].init(k, tokens)["params"]))(keys[3])
        spec = optimizer_spec(w)    # as the PPO stage builds it: clip then AdamW (hh.train.optim)
        self.optimizers = {k: optax.chain(optax.clip_by_global_norm(spec["clip_norm"]), optax.adamw(**spec["adamw"]))
                           for k in ("policy", "value")}
        self.state = init_ppo_state({"policy": policy, "value": value}, self.optimizers, w["kl_coef"])
        self.frozen = {"reference": reference, "pm": pm}
        self.params = {k: sum(x.size for x in jax.tree.leaves(p)) for k, p in
                       (("policy", policy), ("reference", reference), ("value", value), ("pm", pm))}
        rng = np.random.default_rng(w["seed"])
        b, p = w["batch"], w["prompt_len"]
        self.prompts = {"tokens": jnp.asarray(rng.integers(1, self.eos, (b, p)), jnp.int32),
                        "segment_ids": jnp.ones((b, p), jnp.int32),
                        "positions": jnp.broadcast_to(jnp.arange(p, dtype=jnp.int32), (b, p))}
        self.phases = self._phases()

    def _phases(self):
        """hh.rl.iteration's phases, jitted as the stage jits them (one device: no shardings),
        under the benchmark's phase names."""
        microbatches = self.w["batch"] // self.w["minibatches"] // micro_rows(self.w)
        fns = phase_fns(self.models, self.optimizers, sampling=self.sampling, rollout_cfg=self.rollout_cfg,
                        ppo_cfg=self.ppo_cfg, kl_cfg=self.kl_cfg, seed=self.w["seed"],
                        lr_schedule=optax.constant_schedule(self.w["learning_rate"]), microbatches=microbatches)
        return {"rollout": jax.jit(fns["generate"]), "scoring": jax.jit(fns["score"]),
                "train": jax.jit(fns["update"], donate_argnums=0)}

    def iteration(self):
        """One PPO iteration -> {phase: seconds} (+ "total")."""
        times, start = {}, time.perf_counter()
        t = time.perf_counter()
        samples = jax.block_until_ready(self.phases["rollout"](self.state.params["policy"], self.prompts, self.state.step))
        times["rollout"] = time.perf_counter() - t
        t = time.perf_counter()
        scored, _ = jax.block_until_ready(self.phases["scoring"](self.frozen, self.prompts, samples))
        times["scoring"] = time.perf_counter() - t
        t = time.perf_counter()
        self.state, _ = jax.block_until_ready(self.phases["train"](self.state, scored))
        times["train"] = time.perf_counter() - t
        times["total"] = time.perf_counter() - start
        times["other"] = max(0.0, times["total"] - times["rollout"] - times["scoring"] - times["train"])
        self.generated = int(np.sum(np.asarray(samples.lengths)))
        return times


# ----------------------------------------------------------------------------- the roofline


def phase_flops(w, cfg) -> dict:
    """The FLOPs an iteration needs: 2·params per token forward (6· forward + backward) plus
    attention (QKᵀ and AV, full rows as the dense kernel computes them); the LM head only where a
    token is sampled or scored (the response), the critic and PM have none."""
    head = cfg.d_model * cfg.vocab_size
    trunk = matmul_params(cfg) - head
    b, p, g = w["batch"], w["prompt_len"], w["gen_len"]
    seq = p + g
    width = cfg.n_layers * cfg.n_heads * cfg.d_head
    attention = 4.0 * width * seq * seq * b               # QKᵀ + AV over [seq, seq], forward
    prefill = 2.0 * trunk * p * b + 2.0 * head * b + 4.0 * width * p * p * b
    decode = sum(2.0 * (trunk + head) * b + 4.0 * width * (p + t + 1) * b for t in range(g - 1))
    policy_forward = 2.0 * trunk * seq * b + 2.0 * head * g * b + attention
    scalar_forward = 2.0 * trunk * (seq + 1) * b + attention   # critic; the PM reads one more token
    # The least work: reference log-probs and the PM reward in scoring; the update's θ_old forwards
    # of policy and critic (old log-probs and values), then forward + backward per epoch.
    scoring_flops = policy_forward + scalar_forward
    train = (1 + 3 * w["epochs"]) * (policy_forward + scalar_forward)
    return {"rollout": prefill + decode, "scoring": scoring_flops, "train": train}


def decode_bytes(w, cfg) -> float:
    """Bytes the decode loop must read: every weight once per generated token (float32) plus the
    KV cache up to that token, for the whole batch."""
    weights = 4.0 * matmul_params(cfg)
    kv_per_token = 4.0 * 2 * cfg.n_layers * cfg.kv_heads * cfg.d_head * w["batch"]
    p, g = w["prompt_len"], w["gen_len"]
    return sum(weights + kv_per_token * (p + t + 1) for t in range(g))


def median_seconds(f, *args, runs: int = 7) -> float:
    """Median wall time of a jitted f(*args) after one warm-up call."""
    f = jax.jit(f)
    f(*args).block_until_ready()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f(*args).block_until_ready()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_peak(n=2048) -> float:
    """FLOP/s of a float32 [n, n] @ [n, n]: the compute roof."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    return 2.0 * n ** 3 / median_seconds(lambda x: x @ x, a)


def memory_bandwidth(mib=256) -> float:
    """Bytes/s of reading a large float32 array once (a reduction: read-bound): the memory roof."""
    x = jnp.ones((mib << 20) // 4, jnp.float32)
    return x.size * 4 / median_seconds(jnp.sum, x)


def cpu_info() -> dict:
    model, flags = platform.processor(), set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(),
            "simd": sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))}


def workload_config(w: dict) -> dict:
    """The shape of the work, as both sides' rows record it."""
    return {k: w[k] for k in CONFIG_KEYS}


def run(name: str, iterations: int = 0, trace: str = "") -> dict:
    """The JSON row of one run of workload `name` (W1, W2 or W3)."""
    w = workload(name)
    return run_workload(w, iterations or w["iterations"], trace)


def run_workload(w: dict, iterations: int, trace: str = "", cfg: TransformerConfig = None,
                 roofs: tuple = None) -> dict:
    """Times `iterations` iterations of workload dict `w` (optionally with model `cfg`) -> the row.
    roofs: (matmul peak FLOP/s, memory bandwidth B/s), measured here when not given."""
    peak, bandwidth = roofs or (matmul_peak(), memory_bandwidth())
    # tunix's schedule (W3m): `minibatches` iterations of one minibatch's prompts make one iteration
    parts = w["minibatches"] if w["schedule"] == "per_minibatch" else 1
    part = per_minibatch_part(w) if parts > 1 else w
    start = time.perf_counter()
    bench = Workload(part, cfg)
    setup_s = time.perf_counter() - start

    def iteration():
        times = [bench.iteration() for _ in range(parts)]
        return {k: sum(t[k] for t in times) for k in times[0]}

    rows = [iteration() for _ in range(iterations)]
    if trace:
        with jax.profiler.trace(trace):
            iteration()
    steady = rows[1:] or rows
    median = {k: statistics.median(r[k] for r in steady) for k in (*PHASES, "total")}
    flops = {k: parts * v for k, v in phase_flops(part, bench.cfg).items()}
    roof = {k: flops[k] / peak for k in flops}
    roof["rollout"] = max(roof["rollout"], parts * decode_bytes(part, bench.cfg) / bandwidth)
    return {
        "side": "hh", "workload": w["name"], "config": workload_config(w), "params": {**bench.params, "total": sum(bench.params.values())},
        "setup_s": setup_s, "compile_s": rows[0]["total"] - median["total"],
        "iteration_s_median": median["total"], "iterations_s": [r["total"] for r in rows],
        "phases_s": {k: median[k] for k in PHASES},
        "generated_tokens_per_s": parts * bench.generated / median["rollout"],
        "roofline": {"matmul_peak_flop_s": peak, "memory_bandwidth_bytes_s": bandwidth,
                     "phase_flops": flops, "decode_bytes": parts * decode_bytes(part, bench.cfg),
                     "phase_roofline_s": roof,
                     "fraction": {k: roof[k] / median[k] for k in roof},
                     "iteration_fraction": sum(roof.values()) / median["total"]},
        "jax_version": jax.__version__, "cpu": cpu_info(),
        "mlp": f"{bench.cfg.activation}, hidden {bench.cfg.d_ff}",
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", required=True, choices=sorted(WORKLOADS))
    parser.add_argument("--iterations", type=int, default=0, help="default: the workload's")
    parser.add_argument("--trace", default="", help="write a JAX profiler trace of one more iteration here")
    parser.add_argument("--override", default="{}", help="JSON of workload fields to change (the cost curves)")
    args = parser.parse_args(argv)
    w = {**workload(args.workload), **json.loads(args.override)}
    print(json.dumps(run_workload(w, args.iterations or w["iterations"], args.trace)), flush=True)


if __name__ == "__main__":
    main()
