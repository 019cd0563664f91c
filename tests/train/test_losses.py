"""Token losses against a float64 NumPy re-derivation."""

import jax.numpy as jnp
import numpy as np
import pytest

import jax

from hh.train.losses import (chunked_lm_losses, fused_lm_objective, lm_losses, masked_sum,
                             token_log_probs)


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
    ce, log_z, correct = lm_losses(jnp.asarray(logits), jnp.asarray(targets))
    np.testing.assert_allclose(ce, -ref_logp, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(log_z, ref_log_z, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(correct, targets == logits.argmax(-1))
    np.testing.assert_allclose(token_log_probs(jnp.asarray(logits), jnp.asarray(targets)), ref_logp,
                               rtol=1e-5, atol=1e-6)


def test_bfloat16_logits_are_upcast():
    logits = jnp.asarray([[[0.0, 10.0, -10.0]]], jnp.bfloat16)
    ce, _, _ = lm_losses(logits, jnp.asarray([[1]]))
    assert ce.dtype == jnp.float32
    np.testing.assert_allclose(ce, [[np.log1p(np.exp(-10.0) + np.exp(-20.0))]], atol=1e-6)


def test_masked_sum_and_accuracy_hand_example():
    logits = jnp.asarray([[[0.0, 1.0], [2.0, 0.0], [0.0, 3.0]]])
    targets = jnp.asarray([[1, 1, 1]])
    mask = jnp.asarray([[1.0, 1.0, 0.0]])
    acc = lm_losses(logits, targets)[2]
    np.testing.assert_array_equal(acc, [[1.0, 0.0, 1.0]])
    assert float(masked_sum(acc, mask)) == 1.0


def test_cross_entropy_gradient_is_softmax_minus_one_hot():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 7)).astype(np.float32)
    targets = np.array([3, 0])
    grad = jax.grad(lambda x: lm_losses(x, jnp.asarray(targets))[0].sum())(jnp.asarray(logits))
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(grad, p - np.eye(7)[targets], rtol=1e-5, atol=1e-6)


def test_chunked_losses_and_gradients_equal_the_dense_path():
    rng = np.random.default_rng(2)
    hidden = jnp.asarray(rng.normal(size=(2, 12, 8)), jnp.float32)
    head = jnp.asarray(rng.normal(size=(8, 30)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 30, size=(2, 12)))
    mask = jnp.asarray(rng.integers(0, 2, size=(2, 12)), jnp.float32)

    def dense(h, w):
        ce, log_z, correct = lm_losses(jnp.einsum("bld,dv->blv", h, w), targets)
        return masked_sum(ce, mask) + masked_sum(log_z**2, mask), correct

    def chunked(h, w):
        ce, log_z, correct = chunked_lm_losses(h, w, targets, chunk=4)
        return masked_sum(ce, mask) + masked_sum(log_z**2, mask), correct

    (v_dense, c_dense), g_dense = jax.value_and_grad(dense, argnums=(0, 1), has_aux=True)(hidden, head)
    (v_chunk, c_chunk), g_chunk = jax.value_and_grad(chunked, argnums=(0, 1), has_aux=True)(hidden, head)
    np.testing.assert_allclose(v_chunk, v_dense, rtol=1e-6)
    np.testing.assert_array_equal(c_chunk, c_dense)
    for a, b in zip(g_chunk, g_dense):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="does not divide"):
        chunked_lm_losses(hidden, head, targets, chunk=5)


@pytest.mark.parametrize("z_loss", [0.0, 1e-2])
def test_fused_objective_and_gradients_equal_the_dense_path(z_loss):
    rng = np.random.default_rng(3)
    hidden = jnp.asarray(rng.normal(size=(2, 12, 8)), jnp.float32)
    head = jnp.asarray(rng.normal(size=(8, 30)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 30, size=(2, 12)))
    weights = jnp.asarray(rng.integers(0, 2, size=(2, 12)), jnp.float32)

    def dense(h, w):
        ce, log_z, correct = lm_losses(jnp.einsum("bld,dv->blv", h, w), targets)
        return masked_sum(ce, weights) + z_loss * masked_sum(log_z**2, weights), (
            masked_sum(ce, weights), masked_sum(correct, weights))

    def fused(h, w):
        value, sums = fused_lm_objective(h, w, targets, weights, z_loss, chunk=4)
        return value, (sums["loss_sum"], sums["accuracy_sum"])

    (v_dense, aux_dense), g_dense = jax.value_and_grad(dense, argnums=(0, 1), has_aux=True)(hidden, head)
    (v_fused, aux_fused), g_fused = jax.jit(jax.value_and_grad(fused, argnums=(0, 1), has_aux=True))(hidden, head)
    np.testing.assert_allclose(v_fused, v_dense, rtol=1e-5)
    np.testing.assert_allclose(aux_fused, aux_dense, rtol=1e-5)
    for a, b in zip(g_fused, g_dense):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # a scaled objective scales the gradient (the cotangent is applied in the backward pass)
    g_half = jax.grad(lambda h: 0.5 * fused(h, head)[0])(hidden)
    np.testing.assert_allclose(g_half, 0.5 * g_fused[0], rtol=1e-5, atol=1e-7)
