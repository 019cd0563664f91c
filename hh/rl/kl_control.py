"""The KL coefficient β of the reward penalty: fixed (Bai et al. 2022 §4.1: λ_KL = 0.001) or
adaptive (Ziegler et al. 2019: β ← β(1 + clip(KL/target − 1, ±0.2)·n/horizon)). Pure: β is a
float32 scalar stored in the PPO train state, so it is checkpointed and resumes exactly.
"""

import jax.numpy as jnp

KINDS = ("fixed", "adaptive")


def initial_kl_coef(kl_cfg):
    """kl_cfg: kind, init_coef, target, horizon -> float32 scalar β₀."""
    if kl_cfg.kind not in KINDS:
        raise ValueError(f"config.kl.kind={kl_cfg.kind!r}: use one of {KINDS}")
    return jnp.asarray(kl_cfg.init_coef, jnp.float32)


def update_kl_coef(beta, kl, n_steps, kl_cfg):
    """Next β after a rollout whose mean per-sequence KL is `kl`, counting `n_steps` samples
    (Ziegler's n: episodes in the batch). Fixed control returns β unchanged."""
    if kl_cfg.kind == "fixed":
        return beta
    error = jnp.clip(kl / kl_cfg.target - 1.0, -0.2, 0.2)
    return (beta * (1.0 + error * n_steps / kl_cfg.horizon)).astype(jnp.float32)
