"""The PPO objective as token SUMS plus a token count (Schulman et al. 2017; Bai et al. 2022 App.
B.1: clip ε = 0.2, no entropy bonus). The caller divides once by the global token count
(hh.train.step.accumulated_gradients), so the loss is the same for any microbatching or mesh.
All inputs are [batch, length] over response tokens; `mask` is 1 on real tokens.
"""

import jax.numpy as jnp

from hh.rl.advantages import masked_variance
from hh.rl.kl import kl_k3


def policy_loss_sums(logp, old_logp, advantages, mask, clip_eps: float):
    """Clipped surrogate: Σ max(−A·ρ, −A·clip(ρ, 1 ± ε)) with ρ = π/π_old, and its diagnostics.

    -> {"policy_loss_sum", "clip_fraction_sum" (tokens where the clipped term is the max),
        "approx_kl_sum" (k3 of π_old ‖ π on the rollout's tokens)}. Only sums, so that
    microbatch accumulation (which adds them) stays exact.
    """
    mask = mask.astype(jnp.float32)
    ratio = jnp.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return {
        "policy_loss_sum": jnp.sum(jnp.maximum(unclipped, clipped) * mask),
        "clip_fraction_sum": jnp.sum((clipped > unclipped) * mask),
        # tokens were drawn from π_old, so k3 with r = π/π_old estimates KL(π_old ‖ π)
        "approx_kl_sum": jnp.sum(kl_k3(old_logp, logp) * mask),
    }


def value_loss_sums(values, old_values, returns, mask, clip_eps: float):
    """Clipped value loss, baselines ppo2 style: Σ ½·max((V − R)², (V_clip − R)²) with
    V_clip = V_old + clip(V − V_old, ±ε_v). -> {"value_loss_sum", "value_clip_fraction_sum"}."""
    mask = mask.astype(jnp.float32)
    clipped_values = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
    loss = jnp.square(values - returns)
    loss_clipped = jnp.square(clipped_values - returns)
    return {
        "value_loss_sum": jnp.sum(0.5 * jnp.maximum(loss, loss_clipped) * mask),
        "value_clip_fraction_sum": jnp.sum((loss_clipped > loss) * mask),
    }


def ppo_objective_sums(policy_terms: dict, value_terms: dict, entropy_sum, mask,
                       value_coef: float, entropy_coef: float):
    """-> (objective sum to differentiate, metric sums incl. "count"). The policy and value
    networks share no parameters, so one objective gives each its own gradient."""
    objective = (policy_terms["policy_loss_sum"] + value_coef * value_terms["value_loss_sum"]
                 - entropy_coef * entropy_sum)
    sums = {**policy_terms, **value_terms, "entropy_sum": entropy_sum,
            "count": jnp.sum(mask.astype(jnp.float32))}
    return objective, sums


def explained_variance(values, returns, mask):
    """1 − Var(R − V)/Var(R) over real tokens (1: perfect critic, ≤ 0: no better than a constant)."""
    return 1.0 - masked_variance(returns - values, mask) / jnp.maximum(masked_variance(returns, mask), 1e-12)
