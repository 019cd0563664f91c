"""The PM objective: λ·softplus(r_rejected − r_chosen) + μ·LM-loss(chosen), as sums over pairs.

Askell et al. 2021 eq. 3.1 (the preference loss) and App. C.3 eq. C.1 (the LM loss on the good
sequence mixed in; (λ, μ) = (1, 1) for PMP). Bai et al. 2022 §5.1: per-tranche weights on the
preference term (L_helpful + λ·L_harmless). Everything is a sum over pairs plus a pair count
(hh.train.step), so microbatching and multi-host averaging stay exact.
"""

import jax
import jax.numpy as jnp

from hh.models.transformer import unembedding
from hh.train.losses import chunked_lm_losses, lm_losses, masked_sum
from hh.train.step import means_from_sums

SIDES = ("chosen", "rejected")


def preference_loss(chosen_score, rejected_score):
    """log(1 + exp(r_rejected − r_chosen)) per pair (Askell et al. 2021 eq. 3.1)."""
    return jax.nn.softplus(rejected_score - chosen_score)


def pair_scores(model, params, batch, compute_logits=False):
    """Runs chosen and rejected rows as one [2·batch, length] call -> (r_chosen, r_rejected, out)."""
    def both(key):
        return jnp.concatenate([batch[f"chosen_{key}"], batch[f"rejected_{key}"]], axis=0)
    out = model.apply({"params": params}, both("tokens"), both("positions"), both("segment_ids"),
                      compute_logits=compute_logits)
    n = batch["chosen_tokens"].shape[0]
    return out["score"][:n], out["score"][n:], out


def chosen_lm_loss(model, params, final_hidden, batch, loss_chunk: int):
    """Per pair: the mean next-token cross-entropy over the chosen row's loss mask ([batch])."""
    targets, mask = batch["chosen_targets"], batch["chosen_loss_mask"]
    head = unembedding(params["trunk"], model.cfg)
    if loss_chunk:
        cross_entropy = chunked_lm_losses(final_hidden, head, targets, loss_chunk)[0]
    else:
        logits = jnp.einsum("bld,dv->blv", final_hidden, head.astype(final_hidden.dtype),
                            preferred_element_type=jnp.float32)
        cross_entropy = lm_losses(logits, targets)[0]
    # A per-pair mean keeps one normaliser (pairs) for both terms: exact under microbatching.
    return jnp.sum(cross_entropy * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)


def pm_sums(model, params, batch, *, pm_weight: float, lm_weight: float, loss_chunk: int = 0):
    """-> (objective sum, metric sums with "count" = number of real pairs)."""
    chosen, rejected, out = pair_scores(model, params, batch)
    pairs = batch["pair_mask"]
    weight = batch.get("pair_weight", pairs) * pairs
    pref = preference_loss(chosen, rejected)
    objective = pm_weight * jnp.sum(weight * pref)
    margin = chosen - rejected
    sums = {
        "preference_loss_sum": masked_sum(pref, pairs),
        # a tie counts half: a fresh zero-initialised head scores 50%, not 0% or 100%
        "accuracy_sum": masked_sum(jnp.where(margin > 0, 1.0, jnp.where(margin == 0, 0.5, 0.0)), pairs),
        "margin_sum": masked_sum(margin, pairs),
        "score_sum": masked_sum((chosen + rejected) / 2, pairs),
        "score_sq_sum": masked_sum((chosen ** 2 + rejected ** 2) / 2, pairs),
        "count": jnp.sum(pairs),
    }
    if lm_weight:
        n = batch["chosen_tokens"].shape[0]
        lm = chosen_lm_loss(model, params, out["final_hidden"][:n], batch, loss_chunk)
        objective = objective + lm_weight * masked_sum(lm, pairs)
        sums["lm_loss_sum"] = masked_sum(lm, pairs)
    sums["loss_sum"] = objective
    return objective, sums


def pm_loss_terms(params, batch, *, model, pm_weight, lm_weight, loss_chunk=0):
    """The `loss_terms` hh.train.step.train_step expects."""
    return pm_sums(model, params, batch, pm_weight=pm_weight, lm_weight=lm_weight,
                   loss_chunk=loss_chunk)


def pm_eval_sums(state, batch, *, model, pm_weight, lm_weight, loss_chunk=0):
    return pm_sums(model, state.params, batch, pm_weight=pm_weight, lm_weight=lm_weight,
                   loss_chunk=loss_chunk)[1]


def pm_score_step(params, batch, *, model):
    """(r_chosen, r_rejected) per pair, for evaluation tools."""
    return pair_scores(model, params, batch)[:2]


def pm_summary(sums):
    """Means over pairs, plus the score standard deviation over both sides."""
    out = means_from_sums({k: float(v) for k, v in sums.items()})
    out["score_std"] = float(max(out.pop("score_sq") - out["score"] ** 2, 0.0)) ** 0.5
    out["pairs"] = out.pop("count")
    return out
