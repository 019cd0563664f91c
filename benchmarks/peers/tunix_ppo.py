"""The peer side of the PPO benchmark (docs/performance.md): google/tunix's PPOLearner on the workloads of
benchmarks/ppo_workloads.py, timed per iteration and per phase. Runs in its own venv
(`make bench-ppo-peer-env`, benchmarks/peers/requirements-tunix.txt), never in hh's.

    benchmarks/peers/.venv-tunix/bin/python benchmarks/peers/tunix_ppo.py --workload W1 [--iterations N] [--trace DIR]

Models: tunix's Llama-3 class (RMSNorm, SwiGLU, rotary), float32, untied LM head, for the policy,
a frozen reference (a copy of the policy), a critic (tunix's `create_critic_model`: the policy with
a scalar head) and a PM (an independent model with a scalar head, passed as `reward=`: tunix runs
its forward every iteration). `rollout_engine="vanilla"`, a 1x1 mesh, on CPU.

Phases, timed by wrapping the RLCluster methods that PPOLearner calls (each wrapper calls
`jax.block_until_ready` on what the method returns; the train wrappers on the model's state):
  rollout  RLCluster.generate                    (VanillaRollout -> Sampler: prefill + decode loop)
  scoring  RLCluster.get_ref_per_token_logps     (reference log-probs)
           RLCluster.get_old_per_token_logps     (policy log-probs before the update)
           RLCluster.get_values                  (critic forward)
           RLCluster.get_rewards                 (PM forward)
  train    RLCluster.update_actor, RLCluster.update_critic   (one jitted optimizer step each)
  other    the iteration less the above: KL, token rewards, GAE, whitening, metrics, queues.
With minibatches > 1 (W3) tunix's `mini_batch_size` is batch / minibatches and `num_iterations` the
passes: each minibatch is rolled out, scored and trained K times before the next is rolled out, so
an iteration calls generate and each scorer once per minibatch and each update K times per minibatch.
An iteration is one call of RLLearner._run_global_step (all its minibatches) plus RLCluster.sync_weights if tunix calls
it (it does not when the rollout shares the actor's weights, as here). The last stdout line is one
JSON object; tunix's own output goes to stderr.
"""

import argparse
import contextlib
import json
from importlib import metadata
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import AxisType  # noqa: E402

import ppo_workloads  # noqa: E402  (benchmarks/ppo_workloads.py: plain Python, shared with hh)
from tunix.models.llama3 import model as llama3_lib  # noqa: E402
from tunix.rl import rl_cluster as rl_cluster_lib  # noqa: E402
from tunix.rl import utils as rl_utils  # noqa: E402
from tunix.rl.ppo import ppo_learner  # noqa: E402
from tunix.rl.rollout import base_rollout  # noqa: E402

Role = rl_cluster_lib.Role
SCORING = ("get_ref_per_token_logps", "get_old_per_token_logps", "get_values", "get_rewards")
TRAIN = ("update_actor", "update_critic")


class Llama3(llama3_lib.Llama3):
    """tunix's Llama-3, accepting the `segment_ids=` that tunix's `compute_score` (critic, PM)
    passes and the class rejects; unused here, every sequence is one unpadded segment."""

    def __call__(self, input_tokens, positions, cache, attention_mask, segment_ids=None):
        return super().__call__(input_tokens, positions, cache, attention_mask)


class IdTokenizer:
    """Prompts are token ids written as decimal words. pad and EOS lie outside the vocabulary, so
    EOS is never sampled (every row generates gen_len tokens) and no sampled token reads as pad."""

    def __init__(self, vocab: int):
        self._pad, self._eos = vocab, vocab + 1

    def encode(self, text, **_):
        return [int(t) for t in text.split()]

    def decode(self, ids, **_):
        return " ".join(str(int(t)) for t in ids)

    def bos_id(self):
        return None  # the sampler prepends no BOS: a prompt is exactly prompt_len tokens

    def eos_id(self):
        return self._eos

    def pad_id(self):
        return self._pad


def model_config(w):
    return llama3_lib.ModelConfig(
        num_layers=w["layers"], vocab_size=w["vocab"], embed_dim=w["d_model"],
        hidden_dim=w["mlp_hidden_factor"] * w["d_model"], num_heads=w["heads"],
        head_dim=w["head_dim"], num_kv_heads=w["heads"], rope_theta=10_000, norm_eps=1e-5,
        weight_tying=w["tied_embeddings"])


def language_model(cfg, seed: int) -> nnx.Module:
    """tunix initialises the MLP kernels to zero (it expects loaded weights): with zero gate and
    up kernels no MLP weight gets a gradient, so they are redrawn here (normal, std 0.02)."""
    model = Llama3(cfg, rngs=nnx.Rngs(seed))
    key = jax.random.key(seed + 1000)
    for layer in model.layers:
        for proj in (layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
            key, sub = jax.random.split(key)
            proj.kernel[...] = 0.02 * jax.random.normal(sub, proj.kernel[...].shape, jnp.float32)
    return model


def n_params(model) -> int:
    return int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def prompt_batches(w, n: int):
    """n batches of `batch` random prompts of exactly prompt_len ids, as tunix wants them: a dict
    whose "prompts" is a NumPy array of strings (a Python list crashes its sampler)."""
    rng = np.random.default_rng(w["seed"])
    out = []
    for _ in range(n):
        ids = rng.integers(0, w["vocab"], size=(w["batch"], w["prompt_len"]))
        out.append({"prompts": np.array([" ".join(map(str, row)) for row in ids])})
    return out


def build(w, n_iterations: int):
    cfg = model_config(w)
    policy = language_model(cfg, w["seed"])
    graph, state = nnx.split(policy)
    reference = nnx.merge(graph, jax.tree.map(jnp.copy, state))
    critic = rl_utils.create_critic_model(policy, seed=w["seed"] + 1)
    pm = rl_utils.create_critic_model(language_model(cfg, w["seed"] + 2), seed=w["seed"] + 3)
    params = {"policy": n_params(policy), "reference": n_params(reference),
              "critic": n_params(critic), "pm": n_params(pm)}
    params["total"] = sum(params.values())

    mesh = jax.make_mesh((1, 1), ("fsdp", "tp"), axis_types=(AxisType.Auto,) * 2)

    spec = ppo_workloads.optimizer_spec(w)
    micro = ppo_workloads.micro_rows(w)

    def adam():  # hh's PPO optimizer: global-norm clipping then AdamW, no weight decay
        return optax.chain(optax.clip_by_global_norm(spec["clip_norm"]), optax.adamw(**spec["adamw"]))

    cluster_config = rl_cluster_lib.ClusterConfig(
        role_to_mesh={r: mesh for r in (Role.ACTOR, Role.CRITIC, Role.REFERENCE, Role.REWARD,
                                        Role.ROLLOUT)},
        rollout_engine="vanilla",
        offload_to_cpu=False,
        training_config=rl_cluster_lib.RLTrainingConfig(
            actor_optimizer=adam(), critic_optimizer=adam(),
            eval_every_n_steps=10**9,
            # max_steps counts optimizer steps, not iterations
            max_steps=n_iterations * w["epochs"] * w["minibatches"],
            # One optimizer step per minibatch. tunix rolls out, scores and trains each minibatch
            # on its own (RLLearner._run_global_step): the same forwards and backwards as hh's
            # one rollout of the whole batch, in calls of batch / minibatches rows.
            mini_batch_size=w["batch"] // w["minibatches"],
            # micro_tokens (the cost curves): gradient accumulation and log-prob passes over
            # micro_rows rows, the rollout still one call per minibatch, as hh does it
            **({} if micro == w["batch"] // w["minibatches"] else dict(
                train_micro_batch_size=micro, compute_logps_micro_batch_size=micro,
                rollout_micro_batch_size=w["batch"] // w["minibatches"])),
            pbar_description=None),
        rollout_config=base_rollout.RolloutConfig(
            max_tokens_to_generate=w["gen_len"], max_prompt_length=w["prompt_len"],
            kv_cache_size=w["prompt_len"] + w["gen_len"],
            temperature=w["temperature"],  # tunix's default is 0.9; its training log-probs use 1.0
            # top_p 1.0, top_k None: jax.random.categorical over the full vocabulary. seed None:
            # tunix samples every rollout with PRNGKey(0); the prompts differ per iteration.
            top_p=1.0, top_k=None, data_type=jnp.float32))
    cluster = rl_cluster_lib.RLCluster(actor=policy, critic=critic, reference=reference, reward=pm,
                                       tokenizer=IdTokenizer(w["vocab"]),
                                       cluster_config=cluster_config)
    # tunix's "kl" is Stiennon et al.'s per-token log-ratio (hh's k1), subtracted from the reward
    # with coefficient beta; kl_coef (a KL term in the policy loss) stays 0.
    ppo_config = ppo_learner.PPOConfig(
        num_iterations=w["epochs"], gamma=w["gamma"], gae_lambda=w["lam"], beta=w["kl_coef"],
        kl_method="kl", epsilon=w["clip_eps"])
    learner = ppo_learner.PPOLearner(rl_cluster=cluster, ppo_config=ppo_config)
    return learner, cluster, params


class Timers:
    """Per-iteration phase times and XLA compilations, from wrappers installed on the instances."""

    def __init__(self, trace_dir=None, trace_iteration=None):
        self.iterations, self.phases, self.compiles = [], [], []
        self.calls = {name: 0 for name in SCORING + TRAIN + ("generate",)}
        self.phase = "other"
        self.trace_dir, self.trace_iteration = trace_dir, trace_iteration
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event, duration, **kw):
        if event == "/jax/core/compile/backend_compile_duration":
            self.compiles.append((len(self.iterations) - 1, self.phase, kw.get("fun_name"),
                                  duration))

    def _add(self, phase, detail, seconds):
        d = self.phases[-1]
        d[phase] = d.get(phase, 0.0) + seconds
        d["detail"][detail] = d["detail"].get(detail, 0.0) + seconds

    def wrap_phase(self, obj, name, phase, block_on=None, check=None):
        inner = getattr(obj, name)

        def timed(*args, **kwargs):
            self.phase, t0 = phase, time.perf_counter()
            out = inner(*args, **kwargs)
            jax.block_until_ready(block_on() if block_on else _arrays(out))
            self._add(phase, name, time.perf_counter() - t0)
            self.calls[name] += 1
            if check:
                check(out)
            self.phase = "other"
            return out

        setattr(obj, name, timed)

    def wrap_iteration(self, learner, cluster):
        run_global_step, sync_weights = learner._run_global_step, cluster.sync_weights

        def timed_global_step(*args, **kwargs):
            i = len(self.iterations)
            self.phases.append({"detail": {}})
            self.iterations.append(0.0)
            tracing = self.trace_dir is not None and i == self.trace_iteration
            if tracing:
                jax.profiler.start_trace(self.trace_dir)
            t0 = time.perf_counter()
            out = run_global_step(*args, **kwargs)
            jax.block_until_ready(nnx.state(cluster.actor_trainer.model))
            self.iterations[-1] += time.perf_counter() - t0
            if tracing:
                jax.profiler.stop_trace()
            return out

        def timed_sync(*args, **kwargs):
            t0 = time.perf_counter()
            out = sync_weights(*args, **kwargs)
            jax.block_until_ready(nnx.state(cluster.rollout.model()))
            self.iterations[-1] += time.perf_counter() - t0
            self._add("other", "sync_weights", time.perf_counter() - t0)
            return out

        learner._run_global_step, cluster.sync_weights = timed_global_step, timed_sync


def _arrays(out):
    """The arrays in what an RLCluster method returns (RolloutOutput is not a pytree)."""
    if isinstance(out, base_rollout.RolloutOutput):
        return [out.tokens, out.left_padded_prompt_tokens]
    return out


def cpu_info() -> dict:
    text = open("/proc/cpuinfo").read()
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    simd = sorted(f for f in (flags.group(1).split() if flags else [])
                  if f.startswith(("avx", "fma", "amx")))
    return {"model": model.group(1) if model else "unknown", "simd": simd,
            "cores": os.cpu_count()}


def expected_calls(w, n_iterations: int) -> dict:
    """RLCluster calls in n iterations: a rollout and its scoring per minibatch, and an actor
    and a critic call per microbatch per pass (tunix accumulates the microbatches' gradients)."""
    per_minibatch = {name: 1 for name in SCORING + ("generate",)}
    micro_per_minibatch = w["batch"] // w["minibatches"] // ppo_workloads.micro_rows(w)
    per_minibatch.update({name: w["epochs"] * micro_per_minibatch for name in TRAIN})
    return {name: n * w["minibatches"] * n_iterations for name, n in per_minibatch.items()}


def run(w, n_iterations: int, trace_dir):
    # With --trace, one extra iteration is run and traced, and left out of the statistics.
    n_total = n_iterations + (1 if trace_dir else 0)
    t0 = time.perf_counter()
    learner, cluster, params = build(w, n_total)
    setup_s = time.perf_counter() - t0
    timers = Timers(trace_dir, trace_iteration=n_total - 1 if trace_dir else None)
    timers.wrap_iteration(learner, cluster)

    def full_length(out):  # the work per iteration is fixed only if no row stops early
        lengths = {len(t) for t in out.tokens}
        if lengths != {w["gen_len"]}:
            raise SystemExit(f"completion lengths {sorted(lengths)}, expected {w['gen_len']}")

    timers.wrap_phase(cluster, "generate", "rollout", check=full_length)
    for name in SCORING:
        timers.wrap_phase(cluster, name, "scoring")
    timers.wrap_phase(cluster, "update_actor", "train",
                      block_on=lambda: nnx.state(cluster.actor_trainer.model))
    timers.wrap_phase(cluster, "update_critic", "train",
                      block_on=lambda: nnx.state(cluster.critic_trainer.model))
    t0 = time.perf_counter()
    learner.train(prompt_batches(w, n_total))
    wall = time.perf_counter() - t0
    if len(timers.iterations) != n_total:
        raise SystemExit(f"tunix ran {len(timers.iterations)} iterations, expected {n_total}")
    expected = expected_calls(w, n_total)
    if timers.calls != expected:
        raise SystemExit(f"phase calls {timers.calls}, expected {expected}")
    return timers, params, setup_s, wall


def report(w, timers, params, setup_s, wall, n_iterations) -> dict:
    its = timers.iterations[:n_iterations]
    phases = timers.phases[:n_iterations]
    for it, ph in zip(its, phases):
        ph["other"] = it - sum(ph.get(p, 0.0) for p in ("rollout", "scoring", "train"))
    steady = slice(1, None) if n_iterations > 1 else slice(0, None)

    def median(key, detail=False):
        return statistics.median((p["detail"] if detail else p).get(key, 0.0)
                                 for p in phases[steady])

    it_median = statistics.median(its[steady])
    details = sorted({k for p in phases for k in p["detail"]})
    compiles = [{"iteration": i, "phase": ph, "fun": f, "s": round(s, 4)}
                for i, ph, f, s in timers.compiles]
    per_iteration = [sum(1 for c in timers.compiles if c[0] == i) for i in range(n_iterations)]
    return {
        "side": "tunix", "workload": w["name"],
        "config": {k: w[k] for k in ppo_workloads.CONFIG_KEYS},
        "iterations": n_iterations,
        "params": params,
        "setup_s": round(setup_s, 3),
        "compile_s": round(its[0] - it_median, 4) if n_iterations > 1 else None,
        "iteration_s_median": round(it_median, 4),
        "iterations_s": [round(t, 4) for t in its],
        "phases_s": {p: round(median(p), 4) for p in ppo_workloads.PHASES},
        "phases_detail_s": {k: round(median(k, detail=True), 4) for k in details},
        # as hh's side: the tokens generated per iteration / the median rollout time
        "generated_tokens_per_s": round(w["batch"] * w["gen_len"] / median("rollout"), 2),
        "xla_compiles_per_iteration": per_iteration,
        "xla_compile_s_first": round(sum(c["s"] for c in compiles if c["iteration"] == 0), 3),
        "xla_compiles_after_first": [c for c in compiles if c["iteration"] >= 1],
        "wall_s": round(wall, 3),
        "traced": bool(timers.trace_dir),
        "jax_version": jax.__version__,
        "tunix_version": metadata.version("google-tunix"),
        "flax_version": metadata.version("flax"),
        "cpu": cpu_info(),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workload", required=True, help="W1, W2 or W3 (benchmarks/ppo_workloads.py)")
    p.add_argument("--override", default="{}", help="JSON of workload fields to change (the cost curves)")
    p.add_argument("--iterations", type=int, help="default: the workload's")
    p.add_argument("--trace", metavar="DIR", help="write a JAX profiler trace of one extra iteration")
    args = p.parse_args(argv)
    w = {**ppo_workloads.workload(args.workload), **json.loads(args.override)}
    n = args.iterations or w["iterations"]
    if jax.default_backend() != "cpu":
        print(f"warning: running on {jax.default_backend()}, not the CPU", file=sys.stderr)
    with contextlib.redirect_stdout(sys.stderr):  # tunix's prints and progress bars
        timers, params, setup_s, wall = run(w, n, args.trace)
        line = json.dumps(report(w, timers, params, setup_s, wall, n))
    print(line, flush=True)


if __name__ == "__main__":
    main()
