"""Per-token estimators of KL(π ‖ π₀) from the log-probs of tokens sampled from π.

Schulman's k1/k2/k3 (http://joschu.net/blog/kl-approx.html): with log r = logπ₀ − logπ,
k1 = −log r (unbiased, can be negative per token), k2 = ½(log r)² (biased, low variance),
k3 = (r − 1) − log r (unbiased and ≥ 0). Used for the reward penalty (hh.rl.advantages), the KL
metrics of a rollout and PPO's approx-KL of new vs old policy.
"""

import jax.numpy as jnp


def kl_k1(logp, ref_logp):
    """logπ − logπ₀ per token: [...] -> [...]."""
    return logp - ref_logp


def kl_k2(logp, ref_logp):
    """½(logπ − logπ₀)² per token."""
    return 0.5 * jnp.square(logp - ref_logp)


def kl_k3(logp, ref_logp):
    """(r − 1) − log r with r = π₀/π, per token; expm1 keeps it exact near r = 1."""
    log_r = ref_logp - logp
    return jnp.expm1(log_r) - log_r


ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def kl_estimate(logp, ref_logp, estimator: str):
    """The named estimator ("k1", "k2" or "k3") per token."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown KL estimator {estimator!r}: use one of {sorted(ESTIMATORS)}")
    return ESTIMATORS[estimator](logp, ref_logp)
