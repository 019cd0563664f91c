"""Token-level losses, written once: log-probs, next-token cross-entropy, z-loss, accuracy.

Everything returns per-token values in float32; callers reduce with `masked_sum` and divide by a
token count once, so microbatching and multi-host averaging stay exact (sums plus counts).
`chunked_lm_losses` computes the same from hidden states without materialising all the logits:
the memory fix that large vocabularies (65,536) and long contexts need.
"""

import jax
import jax.numpy as jnp


def lm_losses(logits, targets):
    """(cross-entropy, log_z, correct) per token from logits [..., vocab] and targets [...].

    The row max serves both the stable logsumexp and the accuracy (a tie with the max counts as
    correct), so accuracy costs no second pass over the vocabulary.
    """
    logits = logits.astype(jnp.float32)
    top = jax.lax.stop_gradient(jnp.max(logits, axis=-1))
    log_z = top + jnp.log(jnp.sum(jnp.exp(logits - top[..., None]), axis=-1))
    target_logit = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return log_z - target_logit, log_z, (target_logit >= top).astype(jnp.float32)


def chunked_lm_losses(hidden, unembedding, targets, chunk: int):
    """`lm_losses` of `hidden @ unembedding`, `chunk` positions at a time under jax.checkpoint:
    the backward pass recomputes each chunk's logits instead of storing [batch, length, vocab].

    hidden: [batch, length, d]; unembedding: [d, vocab]; targets: [batch, length]; chunk | length.
    """
    batch, length, d = hidden.shape
    if length % chunk:
        raise ValueError(f"loss chunk {chunk} does not divide the sequence length {length}")
    n = length // chunk
    h = jnp.moveaxis(hidden.reshape(batch, n, chunk, d), 1, 0)
    t = jnp.moveaxis(targets.reshape(batch, n, chunk), 1, 0)

    @jax.checkpoint
    def one_chunk(h_c, t_c):
        logits = jnp.einsum("bcd,dv->bcv", h_c, unembedding.astype(h_c.dtype),
                            preferred_element_type=jnp.float32)
        return lm_losses(logits, t_c)

    _, per_chunk = jax.lax.scan(lambda _, xs: (None, one_chunk(*xs)), None, (h, t))
    return tuple(jnp.moveaxis(x, 0, 1).reshape(batch, length) for x in per_chunk)


def token_log_probs(logits, targets):
    """log p(target) under logits: [batch, length, vocab], [batch, length] -> [batch, length]."""
    cross_entropy, _, _ = lm_losses(logits, targets)
    return -cross_entropy


def masked_sum(values, mask):
    return jnp.sum(values * mask.astype(values.dtype))
