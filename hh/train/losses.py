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


def fused_lm_objective(hidden, unembedding, targets, weights, z_loss: float, chunk: int):
    """Σ w·CE + z_loss·Σ w·log_z² over tokens, with its gradient formed in the same pass.

    For training at large vocabularies. Each chunk of `chunk` positions computes its logits once,
    and immediately the gradient w.r.t. them (w·(softmax·(1 + 2·z·log_z) − one_hot)), folded into
    d hidden and d unembedding; the backward pass only scales those by the incoming cotangent. So
    neither the [batch, length, vocab] logits nor a recomputation of them (as jax.checkpoint
    would do) is ever needed: 6·N·T FLOPs for the head, memory of one chunk.

    hidden: [batch, length, d]; unembedding: [d, vocab]; targets, weights: [batch, length].
    Returns (objective, sums) where sums = {"loss_sum", "z_sum", "accuracy_sum"} carry no gradient.
    """
    batch, length, d = hidden.shape
    if length % chunk:
        raise ValueError(f"loss chunk {chunk} does not divide the sequence length {length}")
    n = length // chunk

    def to_chunks(x):
        return jnp.moveaxis(x.reshape(batch, n, chunk, *x.shape[2:]), 1, 0)

    def forward(hidden, unembedding):
        w_mat = unembedding.astype(hidden.dtype)

        def body(d_unembedding, xs):
            h_c, t_c, w_c = xs
            logits = jnp.einsum("bcd,dv->bcv", h_c, w_mat, preferred_element_type=jnp.float32)
            ce, log_z, correct = lm_losses(logits, t_c)
            probs = jnp.exp(logits - log_z[..., None])
            d_logits = w_c[..., None] * (probs * (1.0 + 2.0 * z_loss * log_z[..., None])
                                         - jax.nn.one_hot(t_c, logits.shape[-1], dtype=jnp.float32))
            d_logits = d_logits.astype(h_c.dtype)
            d_hidden = jnp.einsum("bcv,dv->bcd", d_logits, w_mat, preferred_element_type=jnp.float32)
            d_unembedding = d_unembedding + jnp.einsum("bcd,bcv->dv", h_c, d_logits,
                                                       preferred_element_type=jnp.float32)
            sums = jnp.stack([jnp.sum(w_c * ce), jnp.sum(w_c * log_z**2), jnp.sum(w_c * correct)])
            return d_unembedding, (sums, d_hidden)

        zeros = jnp.zeros(unembedding.shape, jnp.float32)
        d_unembedding, (sums, d_hidden) = jax.lax.scan(
            body, zeros, (to_chunks(hidden), to_chunks(targets), to_chunks(weights.astype(jnp.float32))))
        sums = sums.sum(0)
        d_hidden = jnp.moveaxis(d_hidden, 0, 1).reshape(batch, length, d)
        return sums, d_hidden, d_unembedding

    @jax.custom_vjp
    def objective(hidden, unembedding):
        return _objective_from_sums(forward(hidden, unembedding)[0], z_loss)

    def objective_fwd(hidden, unembedding):
        sums, d_hidden, d_unembedding = forward(hidden, unembedding)
        return _objective_from_sums(sums, z_loss), (d_hidden, d_unembedding)

    def objective_bwd(residuals, cotangent):
        d_hidden, d_unembedding = residuals
        g, _ = cotangent   # the sums are metrics: no gradient flows through them
        return (g * d_hidden).astype(hidden.dtype), (g * d_unembedding).astype(unembedding.dtype)

    objective.defvjp(objective_fwd, objective_bwd)
    value, sums = objective(hidden, unembedding)
    return value, jax.lax.stop_gradient(sums)


def _objective_from_sums(sums, z_loss):
    metrics = {"loss_sum": sums[0], "z_sum": sums[1], "accuracy_sum": sums[2]}
    return sums[0] + z_loss * sums[1], metrics


def token_log_probs(logits, targets):
    """log p(target) under logits: [batch, length, vocab], [batch, length] -> [batch, length]."""
    cross_entropy, _, _ = lm_losses(logits, targets)
    return -cross_entropy


def masked_sum(values, mask):
    return jnp.sum(values * mask.astype(values.dtype))
