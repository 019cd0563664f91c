"""PPO losses vs hand-worked values."""

import jax.numpy as jnp
import numpy as np

from hh.rl.ppo_loss import explained_variance, policy_loss_sums, value_loss_sums


def test_policy_loss_hand_values():
    # ratios 1.5, 0.5, 1.1, (padding); advantages +1, +1, −2, 9
    old = jnp.zeros((1, 4))
    logp = jnp.log(jnp.array([[1.5, 0.5, 1.1, 3.0]]))
    adv = jnp.array([[1.0, 1.0, -2.0, 9.0]])
    mask = jnp.array([[1.0, 1.0, 1.0, 0.0]])
    s = policy_loss_sums(logp, old, adv, mask, clip_eps=0.2)
    # token 1: max(−1.5, −1.2) = −1.2 (clipped); token 2: max(−0.5, −0.8) = −0.5;
    # token 3: max(2.2, 2.2) = 2.2 (inside the clip range)
    np.testing.assert_allclose(s["policy_loss_sum"], -1.2 - 0.5 + 2.2, rtol=1e-6)
    assert float(s["clip_fraction_sum"]) == 1.0
    k3 = [(r - 1) - np.log(r) for r in (1.5, 0.5, 1.1)]   # k3 with r = π/π_old (samples from π_old)
    np.testing.assert_allclose(s["approx_kl_sum"], sum(k3), rtol=1e-5)


def test_value_loss_hand_values():
    values = jnp.array([[1.0, 0.0, 5.0]])
    old = jnp.array([[0.0, 0.0, 0.0]])
    returns = jnp.array([[2.0, 1.0, 0.0]])
    mask = jnp.array([[1.0, 1.0, 0.0]])
    s = value_loss_sums(values, old, returns, mask, clip_eps=0.5)
    # token 1: V=1 clipped to 0.5: max((1−2)², (0.5−2)²) = 2.25; token 2: (0−1)² both
    np.testing.assert_allclose(s["value_loss_sum"], 0.5 * (2.25 + 1.0), rtol=1e-6)
    assert float(s["value_clip_fraction_sum"]) == 1.0


def test_explained_variance():
    returns = jnp.array([[1.0, 2.0, 3.0, 4.0]])
    mask = jnp.ones((1, 4))
    np.testing.assert_allclose(explained_variance(returns, returns, mask), 1.0, atol=1e-6)
    np.testing.assert_allclose(explained_variance(jnp.full((1, 4), 2.5), returns, mask), 0.0, atol=1e-6)
    half = returns - jnp.array([[0.5, -0.5, 0.5, -0.5]])
    np.testing.assert_allclose(explained_variance(half, returns, mask), 1 - 0.25 / 1.25, rtol=1e-5)
