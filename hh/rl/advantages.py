"""Per-token rewards and advantages of a rollout: KL penalty on every response token, the PM
score on the last one (Bai et al. 2022 §4.1: r_total = r_PM − λ_KL·D_KL), GAE (γ = 1) and masked
whitening. Arrays are [batch, length] over response tokens; `mask` is 1 on real tokens (any
contiguous run per row: right-padded variable lengths or right-aligned rows).
"""

import jax
import jax.numpy as jnp

from hh.models.heads import last_index
from hh.rl.kl import kl_estimate


def kl_penalty(kl, mask, beta):
    """−β·KL_t on every real response token: kl, mask [batch, length], beta scalar -> [batch, length]."""
    return -beta * kl * mask


def token_rewards(score, kl, mask, beta):
    """Per-token reward: −β·KL_t everywhere, plus the PM score at the LAST real token
    (docs/paper-notes.md §8.6). score: [batch]; kl, mask: [batch, length] -> [batch, length]."""
    at_last = jax.nn.one_hot(last_index(mask), mask.shape[1], dtype=score.dtype)
    return kl_penalty(kl, mask, beta) + score[:, None] * at_last * mask


def gae_advantages(rewards, values, mask, gamma: float, lam: float):
    """Generalised advantage estimation over the real tokens of each row.

    δ_t = r_t + γ·V_{t+1} − V_t with V = 0 after a row's last real token (the episode ends);
    A_t = δ_t + γλ·A_{t+1}. rewards, values, mask: [batch, length] -> (advantages, returns)
    with returns = advantages + values; both 0 on padding.
    """
    mask = mask.astype(rewards.dtype)
    values = values * mask
    next_mask = jnp.concatenate([mask[:, 1:], jnp.zeros_like(mask[:, :1])], axis=1)
    next_values = jnp.concatenate([values[:, 1:], jnp.zeros_like(values[:, :1])], axis=1) * next_mask
    deltas = (rewards + gamma * next_values - values) * mask

    def step(next_adv, xs):
        delta, m_next, m = xs
        adv = (delta + gamma * lam * m_next * next_adv) * m
        return adv, adv

    _, adv = jax.lax.scan(step, jnp.zeros_like(rewards[:, 0]),
                          (deltas.T, next_mask.T, mask.T), reverse=True)
    advantages = adv.T
    return advantages, (advantages + values) * mask


def masked_mean(x, mask):
    mask = mask.astype(x.dtype)
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def masked_variance(x, mask):
    """Population (biased, ÷n) variance over real tokens, as TF's moments in lm-human-preferences
    (torch's unbiased ÷(n−1) differs measurably: docs/paper-notes.md §8.7)."""
    return masked_mean(jnp.square(x - masked_mean(x, mask)), mask)


def whiten(x, mask, shift_mean: bool = True, eps: float = 1e-8):
    """(x − mean)/std over real tokens; shift_mean=False keeps the mean (for rewards).
    Under jit the sums run over the global batch, whatever the sharding. Padding stays 0."""
    mean = masked_mean(x, mask)
    white = (x - mean) * jax.lax.rsqrt(masked_variance(x, mask) + eps)
    if not shift_mean:
        white = white + mean
    return white * mask.astype(x.dtype)


def ppo_targets(score, old_logp, ref_logp, values, mask, *, beta, kl_estimator: str,
                gamma: float, lam: float, whiten_advantages: bool = True):
    """What the update needs from a scored rollout, all [batch, N] (0 on padding): the per-token
    KL (the named estimator of π_old vs π₀), rewards, advantages (whitened over the whole
    rollout: shift and scale, population variance) and returns (from the raw advantages).
    score [batch]: the PM reward of each response."""
    kl = kl_estimate(old_logp, ref_logp, kl_estimator) * mask
    rewards = token_rewards(score, kl, mask, beta)
    advantages, returns = gae_advantages(rewards, values, mask, gamma, lam)
    if whiten_advantages:
        advantages = whiten(advantages, mask)
    return {"kl": kl, "rewards": rewards, "advantages": advantages, "returns": returns}
