"""Token losses against a float64 NumPy re-derivation."""

import jax.numpy as jnp
import numpy as np

from hh.train.losses import cross_entropy_and_log_z, masked_sum, token_accuracy, token_log_probs


def _numpy_log_softmax(logits):
    logits = logits.astype(np.float64)
    m = logits.max(-1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))


def test_cross_entropy_log_z_and_log_probs_match_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 11)).astype(np.float32) * 4
    targets = rng.integers(0, 11, size=(3, 5))
    ref_logp = np.take_along_axis(_numpy_log_softmax(logits), targets[..., None], -1)[..., 0]
    ref_log_z = np.log(np.exp(logits.astype(np.float64)).sum(-1))
    ce, log_z = cross_entropy_and_log_z(jnp.asarray(logits), jnp.asarray(targets))
    np.testing.assert_allclose(ce, -ref_logp, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(log_z, ref_log_z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(token_log_probs(jnp.asarray(logits), jnp.asarray(targets)), ref_logp,
                               rtol=1e-5, atol=1e-6)


def test_bfloat16_logits_are_upcast():
    logits = jnp.asarray([[[0.0, 10.0, -10.0]]], jnp.bfloat16)
    ce, _ = cross_entropy_and_log_z(logits, jnp.asarray([[1]]))
    assert ce.dtype == jnp.float32
    np.testing.assert_allclose(ce, [[np.log1p(np.exp(-10.0) + np.exp(-20.0))]], atol=1e-6)


def test_masked_sum_and_accuracy_hand_example():
    logits = jnp.asarray([[[0.0, 1.0], [2.0, 0.0], [0.0, 3.0]]])
    targets = jnp.asarray([[1, 1, 1]])
    mask = jnp.asarray([[1.0, 1.0, 0.0]])
    acc = token_accuracy(logits, targets)
    np.testing.assert_array_equal(acc, [[1.0, 0.0, 1.0]])
    assert float(masked_sum(acc, mask)) == 1.0
