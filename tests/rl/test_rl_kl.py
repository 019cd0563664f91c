"""KL estimators vs the exact KL of small categoricals (expectation under π by enumeration)."""

import jax.numpy as jnp
import numpy as np
import pytest

from hh.rl.kl import kl_estimate, kl_k1, kl_k2, kl_k3


def _categoricals(seed, k=6):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(k))
    q = rng.dirichlet(np.ones(k))
    return p, q


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k1_and_k3_are_unbiased_by_enumeration(seed):
    p, p0 = _categoricals(seed)
    exact = float(np.sum(p * (np.log(p) - np.log(p0))))
    logp, logp0 = jnp.log(jnp.asarray(p, jnp.float32)), jnp.log(jnp.asarray(p0, jnp.float32))
    for fn in (kl_k1, kl_k3):
        expectation = float(jnp.sum(jnp.asarray(p, jnp.float32) * fn(logp, logp0)))
        np.testing.assert_allclose(expectation, exact, rtol=1e-5, atol=1e-6)
    # k2 is biased in general: its expectation is ½E[(log r)²], not the KL
    k2 = float(jnp.sum(jnp.asarray(p, jnp.float32) * kl_k2(logp, logp0)))
    assert abs(k2 - exact) > 1e-3


def test_k3_is_nonnegative_and_k1_can_be_negative():
    p, p0 = _categoricals(3)
    logp, logp0 = jnp.log(jnp.asarray(p)), jnp.log(jnp.asarray(p0))
    assert float(jnp.min(kl_k3(logp, logp0))) >= 0.0
    assert float(jnp.min(kl_k1(logp, logp0))) < 0.0


def test_sampled_estimates_match_exact_kl():
    p, p0 = _categoricals(4)
    exact = np.sum(p * np.log(p / p0))
    draws = np.random.default_rng(0).choice(len(p), size=200_000, p=p)
    logp, logp0 = jnp.log(jnp.asarray(p[draws])), jnp.log(jnp.asarray(p0[draws]))
    for name in ("k1", "k3"):
        np.testing.assert_allclose(float(jnp.mean(kl_estimate(logp, logp0, name))), exact, rtol=0.03)


def test_hand_values_and_unknown_name():
    logp, logp0 = jnp.log(jnp.array([0.5])), jnp.log(jnp.array([0.25]))
    np.testing.assert_allclose(kl_k1(logp, logp0), [np.log(2)], rtol=1e-6)
    np.testing.assert_allclose(kl_k2(logp, logp0), [0.5 * np.log(2) ** 2], rtol=1e-6)
    np.testing.assert_allclose(kl_k3(logp, logp0), [(0.5 - 1) + np.log(2)], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown KL estimator"):
        kl_estimate(logp, logp0, "k4")
