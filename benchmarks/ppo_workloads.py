"""The PPO-iteration workloads of the hh-vs-tunix benchmark, defined once for both sides (benchmarks/ppo_iteration.py
for hh, benchmarks/peers/tunix_ppo.py for google/tunix). Plain Python: the peer imports it from its
own virtual environment.

Both: float32 everywhere, untied LM head, policy + frozen reference + critic + PM of the same shape
(critic and PM with a scalar head), random prompts of exactly `prompt_len` tokens, sampling at
temperature 1 over the full vocabulary, EOS never sampled (every row generates `gen_len` tokens),
the KL penalty in the reward, GAE gamma = 1, lambda = 0.95, global-norm clipping at 1.0 then AdamW
(b1 0.9, b2 0.95, no weight decay) for policy and critic, as configs/ppo.py builds them.
MLP: SwiGLU with hidden 4 * d_model (the peer's Llama-3 MLP), so the per-token matmul FLOPs match.

W1 and W2 are one minibatch and one pass (the PPO ratio is 1 throughout: a degenerate PPO, kept for
continuity with earlier measurements). W3 is W2's models with configs/ppo.py's loop: a rollout of
32 prompts, 96 prompt + 32 generated tokens, 4 minibatches and K = 2 passes, so 8 optimizer steps
per iteration. hh runs it as configs/ppo.py does: one rollout of 32, then 4 × 2 minibatch steps.
No tunix 0.1.7 setting gives that schedule: with `mini_batch_size` = batch / minibatches and
`num_iterations` = K (benchmarks/peers/tunix_ppo.py) it rolls out, scores and trains each
minibatch before the next, and a full-batch `mini_batch_size` takes one optimizer step per pass.
So W3m runs tunix's schedule on both sides (hh: 4 iterations of 8 prompts, K = 2, one minibatch):
the like-for-like row. W3 is hh's schedule against tunix's: the same forwards and backwards.
"""

WORKLOADS = {
    "W1": dict(layers=2, d_model=128, heads=4, head_dim=32, vocab=4096, batch=8, prompt_len=32,
               gen_len=32, epochs=1, iterations=10),
    "W2": dict(layers=4, d_model=512, heads=8, head_dim=64, vocab=8192, batch=8, prompt_len=64,
               gen_len=64, epochs=1, iterations=5),
    "W3": dict(layers=4, d_model=512, heads=8, head_dim=64, vocab=8192, batch=32, prompt_len=96,
               gen_len=32, epochs=2, minibatches=4, iterations=5),
}
# W3 in tunix's schedule: each minibatch rolled out, scored and trained K times before the next
# (hh runs it as `minibatches` iterations of batch / minibatches prompts; tunix's W3 is this).
WORKLOADS["W3m"] = {**WORKLOADS["W3"], "schedule": "per_minibatch"}
COMMON = dict(dtype="float32", tied_embeddings=False, temperature=1.0, gamma=1.0, lam=0.95,
              minibatches=1, mlp="swiglu", mlp_hidden_factor=4, kl_in_reward=True, kl_coef=0.001,
              learning_rate=1e-5, clip_norm=1.0, adam_b1=0.9, adam_b2=0.95, adam_eps=1e-8, weight_decay=0.0,
              clip_eps=0.2, micro_tokens=0, schedule="whole_rollout", seed=0)
PHASES = ("rollout", "scoring", "train", "other")
CONFIG_KEYS = ("layers", "d_model", "heads", "head_dim", "vocab", "batch", "prompt_len", "gen_len", "epochs",
               "minibatches", "micro_tokens", "schedule")


def optimizer_spec(w: dict) -> dict:
    """The optimizer both sides build for policy and critic: optax.chain(clip_by_global_norm(clip_norm),
    adamw(**adamw)); plain data so the peer's venv needs nothing of hh."""
    return {"clip_norm": w["clip_norm"],
            "adamw": dict(learning_rate=w["learning_rate"], b1=w["adam_b1"], b2=w["adam_b2"], eps=w["adam_eps"],
                          weight_decay=w["weight_decay"])}


def micro_rows(w: dict) -> int:
    """Rows per gradient microbatch (and per forward piece): the largest divisor of a minibatch's
    rows whose tokens stay within `micro_tokens`, or the whole minibatch where micro_tokens is 0.
    Gradient accumulation: the same FLOPs and, up to float sums, the same update."""
    rows = w["batch"] // w["minibatches"]
    if not w["micro_tokens"]:
        return rows
    cap = max(1, w["micro_tokens"] // (w["prompt_len"] + w["gen_len"]))
    return max(d for d in range(1, rows + 1) if rows % d == 0 and d <= cap)


def per_minibatch_part(w: dict) -> dict:
    """The workload of one of a per-minibatch schedule's iterations: batch / minibatches prompts,
    one minibatch, the same passes."""
    return {**w, "batch": w["batch"] // w["minibatches"], "minibatches": 1, "schedule": "whole_rollout"}


def workload(name: str) -> dict:
    if name not in WORKLOADS:
        raise SystemExit(f"--workload {name!r}: use one of {sorted(WORKLOADS)}")
    return {**COMMON, **WORKLOADS[name], "name": name}
