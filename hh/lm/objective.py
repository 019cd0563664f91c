"""The LM objective: next-token cross-entropy under a loss mask, optional z-loss, eval metrics.

Returns sums and a token count (see hh.train.step), never means. With `loss_chunk` > 0 the LM head
and the loss run chunk by chunk (hh.train.losses), so the full logits never exist: the same
numbers, a fraction of the memory.
"""

import jax.numpy as jnp

from hh.models.transformer import unembedding
from hh.train.losses import chunked_lm_losses, fused_lm_objective, lm_losses, masked_sum
from hh.train.step import means_from_sums


def per_token_losses(model, params, batch, loss_chunk: int = 0):
    """(cross-entropy, log_z, correct), each [batch, length]."""
    inputs = (batch["inputs"], batch["positions"], batch["segment_ids"])
    if loss_chunk:
        out = model.apply({"params": params}, *inputs, compute_logits=False)
        return chunked_lm_losses(out["final_hidden"], unembedding(params, model.cfg),
                                 batch["targets"], loss_chunk)
    out = model.apply({"params": params}, *inputs)
    return lm_losses(out["logits"], batch["targets"])


def lm_sums(model, params, batch, loss_chunk: int = 0):
    """-> (sum of cross-entropy, sum of log_z², dict of metric sums with "count")."""
    cross_entropy, log_z, correct = per_token_losses(model, params, batch, loss_chunk)
    mask = batch["loss_mask"]
    loss_sum = masked_sum(cross_entropy, mask)
    sums = {"loss_sum": loss_sum, "accuracy_sum": masked_sum(correct, mask), "count": jnp.sum(mask)}
    return loss_sum, masked_sum(jnp.square(log_z), mask), sums


def lm_loss_terms(params, batch, *, model, z_loss: float, loss_chunk: int = 0):
    """The training objective (sum over tokens) and metric sums; z-loss as in PaLM (§5).

    With loss_chunk, the head's gradient is formed chunk by chunk in the forward pass
    (hh.train.losses.fused_lm_objective): no full logits and no recomputation.
    """
    if loss_chunk:
        out = model.apply({"params": params}, batch["inputs"], batch["positions"],
                          batch["segment_ids"], compute_logits=False)
        objective, sums = fused_lm_objective(out["final_hidden"], unembedding(params, model.cfg),
                                             batch["targets"], batch["loss_mask"], z_loss, loss_chunk)
        z_sum = sums.pop("z_sum")
        sums = {**sums, "count": jnp.sum(batch["loss_mask"])}
        if z_loss:
            sums["z_loss_sum"] = z_sum
        return objective, sums
    loss_sum, z_sum, sums = lm_sums(model, params, batch, loss_chunk)
    if z_loss:
        sums["z_loss_sum"] = z_sum
        return loss_sum + z_loss * z_sum, sums
    return loss_sum, sums


def lm_eval_sums(state, batch, *, model, loss_chunk: int = 0):
    return lm_sums(model, state.params, batch, loss_chunk)[2]


def lm_eval_summary(sums):
    """Means over tokens plus perplexity = exp(mean cross-entropy)."""
    means = means_from_sums({k: float(v) for k, v in sums.items()})
    return {"loss": means["loss"], "perplexity": float(jnp.exp(means["loss"])),
            "accuracy": means["accuracy"], "tokens": means["count"]}
