"""The PPO-iteration workloads of the hh-vs-tunix benchmark, defined once for both sides (benchmarks/ppo_iteration.py
for hh, benchmarks/peers/tunix_ppo.py for google/tunix). Plain Python: the peer imports it from its
own virtual environment.

Both: float32 everywhere, untied LM head, policy + frozen reference + critic + PM of the same shape
(critic and PM with a scalar head), random prompts of exactly `prompt_len` tokens, sampling at
temperature 1 over the full vocabulary, EOS never sampled (every row generates `gen_len` tokens),
the KL penalty in the reward, GAE gamma = 1, lambda = 0.95, the full batch as one minibatch.
MLP: SwiGLU with hidden 4 * d_model (the peer's Llama-3 MLP), so the per-token matmul FLOPs match.
"""

WORKLOADS = {
    "W1": dict(layers=2, d_model=128, heads=4, head_dim=32, vocab=4096, batch=8, prompt_len=32,
               gen_len=32, epochs=1, iterations=10),
    "W2": dict(layers=4, d_model=512, heads=8, head_dim=64, vocab=8192, batch=8, prompt_len=64,
               gen_len=64, epochs=1, iterations=5),
}
COMMON = dict(dtype="float32", tied_embeddings=False, temperature=1.0, gamma=1.0, lam=0.95,
              minibatches=1, mlp="swiglu", mlp_hidden_factor=4, kl_in_reward=True, kl_coef=0.001,
              learning_rate=1e-5, clip_eps=0.2, seed=0)
PHASES = ("rollout", "scoring", "train", "other")


def workload(name: str) -> dict:
    if name not in WORKLOADS:
        raise SystemExit(f"--workload {name!r}: use one of {sorted(WORKLOADS)}")
    return {**COMMON, **WORKLOADS[name], "name": name}
