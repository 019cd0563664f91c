"""The LM objective: next-token cross-entropy under a loss mask, optional z-loss, eval metrics.

Returns sums and a token count (see hh.train.step), never means.
"""

import jax.numpy as jnp

from hh.train.losses import cross_entropy_and_log_z, masked_sum, token_accuracy


def lm_sums(model, params, batch):
    """-> (sum of cross-entropy, sum of log_z², dict of metric sums with "count")."""
    out = model.apply({"params": params}, batch["inputs"], batch["positions"], batch["segment_ids"])
    cross_entropy, log_z = cross_entropy_and_log_z(out["logits"], batch["targets"])
    mask = batch["loss_mask"]
    loss_sum = masked_sum(cross_entropy, mask)
    sums = {"loss_sum": loss_sum,
            "accuracy_sum": masked_sum(token_accuracy(out["logits"], batch["targets"]), mask),
            "count": jnp.sum(mask)}
    return loss_sum, masked_sum(jnp.square(log_z), mask), sums


def lm_loss_terms(params, batch, *, model, z_loss: float):
    """The training objective (sum over tokens) and metric sums; z-loss as in PaLM (§5)."""
    loss_sum, z_sum, sums = lm_sums(model, params, batch)
    if z_loss:
        sums["z_loss_sum"] = z_sum
        return loss_sum + z_loss * z_sum, sums
    return loss_sum, sums


def lm_eval_sums(state, batch, *, model):
    return lm_sums(model, state.params, batch)[2]


def lm_eval_summary(sums):
    """Means over tokens plus perplexity = exp(mean cross-entropy)."""
    count = max(float(sums["count"]), 1.0)
    loss = float(sums["loss_sum"]) / count
    return {"loss": loss, "perplexity": float(jnp.exp(loss)),
            "accuracy": float(sums["accuracy_sum"]) / count, "tokens": float(sums["count"])}
