"""Rewards, GAE and whitening vs a float64 NumPy loop reference."""

import jax.numpy as jnp
import numpy as np
import pytest

from hh.rl.advantages import gae_advantages, masked_variance, token_rewards, whiten


def numpy_gae(rewards, values, mask, gamma, lam):
    """Per-row loop over the real tokens only (float64)."""
    adv = np.zeros_like(rewards, dtype=np.float64)
    for b in range(rewards.shape[0]):
        idx = np.nonzero(mask[b])[0]
        last = 0.0
        for j in reversed(range(len(idx))):
            t = idx[j]
            next_v = values[b, idx[j + 1]] if j + 1 < len(idx) else 0.0
            delta = rewards[b, t] + gamma * next_v - values[b, t]
            last = delta + gamma * lam * last
            adv[b, t] = last
    return adv, (adv + values) * mask


def _rollout(seed, b=5, n=9):
    rng = np.random.default_rng(seed)
    lengths = np.array([n, 1, 4, 0, 7])[:b]
    mask = (np.arange(n)[None] < lengths[:, None]).astype(np.float64)
    mask[4] = np.roll(mask[4], 2)   # a right-aligned row: real tokens at 2..8
    return rng.normal(size=(b, n)), rng.normal(size=(b, n)), mask


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (1.0, 1.0), (0.9, 0.5)])
def test_gae_matches_numpy_loop(gamma, lam):
    rewards, values, mask = _rollout(0)
    ref_adv, ref_ret = numpy_gae(rewards * mask, values, mask, gamma, lam)
    adv, ret = gae_advantages(jnp.asarray(rewards * mask, jnp.float32), jnp.asarray(values, jnp.float32),
                              jnp.asarray(mask, jnp.float32), gamma, lam)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, ref_ret, rtol=1e-5, atol=1e-5)


def test_gamma_lambda_one_gives_reward_to_go_minus_value():
    rewards, values, mask = _rollout(1)
    adv, _ = gae_advantages(jnp.asarray(rewards * mask), jnp.asarray(values), jnp.asarray(mask), 1.0, 1.0)
    to_go = np.flip(np.cumsum(np.flip(rewards * mask, 1), 1), 1)
    np.testing.assert_allclose(adv, (to_go - values) * mask, rtol=1e-5, atol=1e-5)


def test_token_rewards_kl_everywhere_score_at_last_token():
    mask = jnp.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 1, 1, 0]], jnp.float32)
    kl = jnp.full((3, 4), 2.0)
    r = token_rewards(jnp.array([10.0, 20.0, 30.0]), kl, mask, beta=0.5)
    np.testing.assert_allclose(r, [[-1, -1, 9, 0], [19, 0, 0, 0], [0, -1, 29, 0]])


def test_whiten_masked_statistics_population_variance():
    x = np.array([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, -7.0, -7.0]])
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.float64)
    real = x[mask > 0]
    expected = (x - real.mean()) / np.sqrt(real.var() + 1e-8) * mask   # np.var: ÷n
    np.testing.assert_allclose(whiten(jnp.asarray(x), jnp.asarray(mask)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(masked_variance(jnp.asarray(x), jnp.asarray(mask)), real.var(), rtol=1e-5)
    kept = whiten(jnp.asarray(x), jnp.asarray(mask), shift_mean=False)
    np.testing.assert_allclose(kept, (expected + real.mean()) * mask, rtol=1e-5, atol=1e-6)
