"""The context-distillation objective (Askell et al. 2021 §2.1, App. B.5): per text token, the KL
from the prompted teacher to the student over 51 categories, the teacher's stored top-50 tokens
plus one bucket for the rest of the vocabulary. Sums plus a token count (hh.train.step contract).
"""

import jax
import jax.numpy as jnp

from hh.models.transformer import unembedding
from hh.train.losses import masked_sum

TEACHER_KEYS = ("teacher_log_probs", "teacher_indices", "teacher_rest")


def log_mass_outside(log_probs, indices):
    """log Σ_{v ∉ indices} p(v), summed directly over the complement (no log(1 − Σ top) cancellation).

    log_probs: [..., vocab]; indices: [..., k] -> [...]; -inf when the k indices cover the vocabulary.
    """
    vocab, k = log_probs.shape[-1], indices.shape[-1]
    if k >= vocab:   # a vocabulary of <= k tokens: the bucket is empty (probability 0)
        return jnp.full(log_probs.shape[:-1], -jnp.inf, log_probs.dtype)
    flat = log_probs.reshape(-1, vocab)
    rows = jnp.arange(flat.shape[0])[:, None]
    in_top = jnp.zeros(flat.shape, bool).at[rows, indices.reshape(-1, k)].set(True)
    rest = jax.nn.logsumexp(jnp.where(in_top, -jnp.inf, flat), axis=-1)
    return rest.reshape(log_probs.shape[:-1])


def categorical_kl(p_log, q_log):
    """Σ_c p_c (log p_c − log q_c) over the last axis; categories with p_c = 0 contribute 0 (also
    when q_c = 0 there), and no NaN reaches the gradient through them."""
    p = jnp.exp(p_log)
    gap = jnp.where(p > 0, p_log - q_log, 0.0)   # -inf − -inf is NaN, masked in value and gradient
    return jnp.sum(p * gap, axis=-1)


def distill_token_terms(student_logits, teacher_log_probs, teacher_indices, teacher_rest):
    """Per token: (KL over the 51 categories, student top-1 == teacher top-1, student's mass on the
    teacher's top-k), each [batch, length] float32.

    student_logits: [b, l, vocab]; teacher_log_probs: [b, l, k] (sorted, largest first);
    teacher_indices: [b, l, k] int32; teacher_rest: [b, l] = log of the teacher's remaining mass.
    """
    log_q = jax.nn.log_softmax(student_logits.astype(jnp.float32), axis=-1)
    q_top = jnp.take_along_axis(log_q, teacher_indices, axis=-1)
    q_rest = log_mass_outside(log_q, teacher_indices)
    p_51 = jnp.concatenate([teacher_log_probs.astype(jnp.float32), teacher_rest[..., None]], axis=-1)
    q_51 = jnp.concatenate([q_top, q_rest[..., None]], axis=-1)
    kl = categorical_kl(p_51, q_51)
    agree = (jnp.argmax(log_q, axis=-1) == teacher_indices[..., 0]).astype(jnp.float32)
    mass = jnp.sum(jnp.exp(q_top), axis=-1)
    return kl, jax.lax.stop_gradient(agree), jax.lax.stop_gradient(mass)


def chunked_token_terms(hidden, unembed, teacher, chunk: int):
    """`distill_token_terms` of hidden @ unembed, `chunk` positions at a time under jax.checkpoint,
    so [batch, length, vocab] student logits never exist at once (paper sizes: vocab 65,536)."""
    batch, length, d = hidden.shape
    n = length // chunk

    def to_chunks(x):
        return jnp.moveaxis(x.reshape(batch, n, chunk, *x.shape[2:]), 1, 0)

    @jax.checkpoint
    def one_chunk(h_c, lp, idx, rest):
        logits = jnp.einsum("bcd,dv->bcv", h_c, unembed.astype(h_c.dtype),
                            preferred_element_type=jnp.float32)
        return distill_token_terms(logits, lp, idx, rest)

    xs = (to_chunks(hidden), *(to_chunks(teacher[k]) for k in TEACHER_KEYS))
    _, per_chunk = jax.lax.scan(lambda _, x: (None, one_chunk(*x)), None, xs)
    return tuple(jnp.moveaxis(x, 0, 1).reshape(batch, length) for x in per_chunk)


def distill_sums(model, params, batch, loss_chunk: int = 0):
    """-> (Σ KL over text tokens, dict of metric sums with "count" = text tokens)."""
    inputs = (batch["inputs"], batch["positions"], batch["segment_ids"])
    if loss_chunk:
        out = model.apply({"params": params}, *inputs, compute_logits=False)
        kl, agree, mass = chunked_token_terms(out["final_hidden"], unembedding(params, model.cfg),
                                              batch, loss_chunk)
    else:
        logits = model.apply({"params": params}, *inputs)["logits"]
        kl, agree, mass = distill_token_terms(logits, *(batch[k] for k in TEACHER_KEYS))
    mask = batch["loss_mask"]
    kl_sum = masked_sum(kl, mask)
    return kl_sum, {"loss_sum": kl_sum, "kl_sum": kl_sum, "top1_agreement_sum": masked_sum(agree, mask),
                    "teacher_top_mass_sum": masked_sum(mass, mask), "count": jnp.sum(mask)}


def distill_loss_terms(params, batch, *, model, loss_chunk: int = 0):
    """The training objective: Σ KL(p0(·|C, x<t) ‖ pθ(·|x<t)) over text tokens, and metric sums."""
    return distill_sums(model, params, batch, loss_chunk)


def distill_eval_sums(state, batch, *, model, loss_chunk: int = 0):
    return distill_sums(model, state.params, batch, loss_chunk)[1]
