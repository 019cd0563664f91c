"""Offline preference optimisation from comparisons: DPO (Rafailov et al. 2023), conservative DPO
(label smoothing) and IPO (Azar et al. 2023), as sums over pairs for the shared train step.

Both losses read the policy's implicit reward difference through the log-ratio margin

    h = [log π(y_w|x) − log π_ref(y_w|x)] − [log π(y_l|x) − log π_ref(y_l|x)]

of sequence log-probs summed over the response tokens only (hh.rl.logprobs, the PPO forward:
left-padded prompt ⊕ right-padded response, so padding changes nothing):

    dpo:  −(1 − ε)·log σ(β·h) − ε·log σ(−β·h)      (ε = label smoothing; ε = 0 is plain DPO)
    ipo:  (h − 1/(2τ))²

DPO's optimum is the KL-regularised policy π* ∝ π_ref·exp(r/β) for the Bradley–Terry reward r
behind the preferences; IPO regresses h to the constant 1/(2τ). The frozen reference's log-probs
arrive in the batch (`ref_chosen_logp`, `ref_rejected_logp`), computed on the device for each
batch or read from a cache (hh.dpo.stage), so the step stays a pure (state, batch) function.
"""

import jax
import jax.numpy as jnp

from hh.rl.logprobs import response_logprobs, sequence_inputs
from hh.train.losses import masked_sum
from hh.train.step import means_from_sums

LOSSES = ("dpo", "ipo")
SIDES = ("chosen", "rejected")


def dpo_loss(h, beta: float, label_smoothing: float = 0.0):
    """Per pair: −(1 − ε)·log σ(βh) − ε·log σ(−βh) (softplus form, stable for large |βh|)."""
    z = beta * h
    return (1.0 - label_smoothing) * jax.nn.softplus(-z) + label_smoothing * jax.nn.softplus(z)


def ipo_loss(h, tau: float):
    """Per pair: (h − 1/(2τ))² (Azar et al. 2023, eq. 17)."""
    return jnp.square(h - 1.0 / (2.0 * tau))


def preference_objective(h, loss: str, *, beta: float, label_smoothing: float, tau: float):
    if loss == "dpo":
        return dpo_loss(h, beta, label_smoothing)
    if loss == "ipo":
        return ipo_loss(h, tau)
    raise ValueError(f"loss={loss!r}: use one of {LOSSES}")


def both_sides(batch):
    """Chosen and rejected rows stacked into one [2b] call (one forward for both)."""
    prompts = {k: jnp.concatenate([batch[f"prompt_{k}"]] * 2, axis=0) for k in ("tokens", "segment_ids")}
    tokens = jnp.concatenate([batch["chosen_tokens"], batch["rejected_tokens"]], axis=0)
    mask = jnp.concatenate([batch["chosen_mask"], batch["rejected_mask"]], axis=0)
    return prompts, tokens, mask


def sequence_logprobs(params, model, batch, chunk: int = 0):
    """(log π(y_w|x), log π(y_l|x)) per pair: sums over each response's real tokens; chunk > 0
    runs the LM head that many response positions at a time (hh.rl.logprobs)."""
    prompts, tokens, mask = both_sides(batch)
    logp, _ = response_logprobs(params, model, prompts, tokens, mask, temperature=1.0, chunk=chunk)
    n = batch["chosen_tokens"].shape[0]
    total = jnp.sum(logp, axis=1)
    return total[:n], total[n:]


def reference_logprobs(ref_params, batch, *, model, chunk: int = 0):
    """The frozen reference's sequence log-probs, the two batch fields the loss reads."""
    chosen, rejected = sequence_logprobs(ref_params, model, batch, chunk)
    return {"ref_chosen_logp": jax.lax.stop_gradient(chosen),
            "ref_rejected_logp": jax.lax.stop_gradient(rejected)}


def dpo_sums(params, batch, *, model, loss: str, beta: float, label_smoothing: float, tau: float, chunk: int = 0):
    """-> (objective sum over pairs, metric sums with "count" = real pairs)."""
    chosen, rejected = sequence_logprobs(params, model, batch, chunk)
    drift_w = chosen - batch["ref_chosen_logp"]
    drift_l = rejected - batch["ref_rejected_logp"]
    h = drift_w - drift_l
    pairs = batch["pair_mask"]
    weight = batch.get("pair_weight", pairs) * pairs
    per_pair = preference_objective(h, loss, beta=beta, label_smoothing=label_smoothing, tau=tau)
    objective = jnp.sum(weight * per_pair)
    sums = {
        "loss_sum": objective,
        "preference_loss_sum": masked_sum(per_pair, pairs),
        # DPO's implicit reward r̂ = β·log(π/π_ref); its margin orders the pair
        "reward_margin_sum": masked_sum(beta * h, pairs),
        "reward_accuracy_sum": masked_sum(jnp.where(h > 0, 1.0, jnp.where(h == 0, 0.5, 0.0)), pairs),
        "chosen_drift_sum": masked_sum(drift_w, pairs),
        "rejected_drift_sum": masked_sum(drift_l, pairs),
        "chosen_logp_sum": masked_sum(chosen, pairs),
        "count": jnp.sum(pairs),
    }
    return objective, sums


def dpo_loss_terms(params, batch, *, model, loss, beta, label_smoothing, tau, chunk: int = 0):
    """The `loss_terms` hh.train.step.train_step expects."""
    return dpo_sums(params, batch, model=model, loss=loss, beta=beta, label_smoothing=label_smoothing, tau=tau,
                    chunk=chunk)


def response_kl(params, ref_params, model, prompts, tokens, mask):
    """Σ_t KL(π(·|x, y_<t) ‖ π_ref(·|x, y_<t)) over each response's real tokens: the exact per-token
    KL of the next-token distributions along a given response ([b])."""
    inputs = sequence_inputs(prompts, tokens, mask)
    p, n = prompts["tokens"].shape[1], tokens.shape[1]

    def log_probs(ps):
        logits = model.apply({"params": ps}, inputs["tokens"], inputs["positions"], inputs["segment_ids"],
                             logits_range=(p - 1, p - 1 + n))["logits"]
        return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    log_pi, log_ref = log_probs(params), log_probs(ref_params)
    kl = jnp.sum(jnp.exp(log_pi) * (log_pi - log_ref), axis=-1)
    return jnp.sum(kl * mask, axis=1)


def dpo_eval_sums(params, ref_params, batch, *, model, loss, beta, label_smoothing, tau, chunk: int = 0):
    """The loss metrics on held-out pairs, plus the policy's KL to the reference along their chosen
    responses (a response-level KL per pair: how far the policy has moved on held-out prompts)."""
    batch = {**batch, **reference_logprobs(ref_params, batch, model=model, chunk=chunk)}
    _, sums = dpo_sums(params, batch, model=model, loss=loss, beta=beta, label_smoothing=label_smoothing, tau=tau,
                       chunk=chunk)
    prompts = {k: batch[f"prompt_{k}"] for k in ("tokens", "segment_ids")}
    kl = response_kl(params, ref_params, model, prompts, batch["chosen_tokens"], batch["chosen_mask"])
    sums["kl_to_reference_sum"] = masked_sum(kl, batch["pair_mask"])
    return sums


def dpo_summary(sums) -> dict:
    out = means_from_sums({k: float(v) for k, v in sums.items()})
    out["pairs"] = out.pop("count")
    return out
