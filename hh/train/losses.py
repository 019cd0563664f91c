"""Token-level losses, written once: log-probs, next-token cross-entropy, z-loss, accuracy.

Everything returns per-token values in float32; callers reduce with `masked_sum` and divide by a
token count once, so microbatching and multi-host averaging stay exact (sums plus counts).
"""

import jax
import jax.numpy as jnp


def token_log_probs(logits, targets):
    """log p(target) under logits: [batch, length, vocab], [batch, length] -> [batch, length]."""
    cross_entropy, _ = cross_entropy_and_log_z(logits, targets)
    return -cross_entropy


def cross_entropy_and_log_z(logits, targets):
    """Per-token cross-entropy and log-partition (for the z-loss), both [batch, length] float32."""
    logits = logits.astype(jnp.float32)
    log_z = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return log_z - target_logit, log_z


def token_accuracy(logits, targets):
    return (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)


def masked_sum(values, mask):
    return jnp.sum(values * mask.astype(values.dtype))
