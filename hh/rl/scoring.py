"""The scoring of a PPO rollout (hh.rl.iteration runs it): the frozen models' half (reference
log-probs, the PM reward read at the EOC appended right after each response's content), then, from
the trained networks' outputs at θ_old, per-token KL-penalised rewards and advantages
(hh.rl.advantages).
"""

import jax.numpy as jnp

from hh.rl.advantages import ppo_targets
from hh.rl.kl import kl_k1, kl_k3
from hh.rl.logprobs import response_logprobs, response_mask, response_values, sequence_inputs
from hh.rl.ppo_loss import explained_variance

# The score phase's output: the rollout with the frozen models' scores, before θ_old is read.
SCORED_KEYS = ("prompt_tokens", "prompt_segment_ids", "response_tokens", "lengths", "mask", "ref_logp",
               "score", "reward", "finished")
# What the PPO update's minibatches take (hh.rl.ppo.ppo_loss_terms).
ROLLOUT_KEYS = ("prompt_tokens", "prompt_segment_ids", "response_tokens", "mask", "old_logp",
                "old_values", "advantages", "returns")


def pm_inputs(prompts, response_tokens, content_lengths, eoc_id: int):
    """[bos] + prompt + response content + [eoc] (hh.data.pm_data.encode_side's layout), the
    prompt left-padded and the rest right-padded: -> {"tokens","segment_ids","positions"}
    [b, P + N + 1]. content_lengths [b]: response tokens before any stop marker/EOS."""
    b, n = response_tokens.shape
    index = jnp.arange(n + 1)[None, :]
    tokens = jnp.concatenate([response_tokens, jnp.zeros((b, 1), response_tokens.dtype)], axis=1)
    tokens = jnp.where(index < content_lengths[:, None], tokens,
                       jnp.where(index == content_lengths[:, None], eoc_id, 0))
    return sequence_inputs(prompts, tokens, index <= content_lengths[:, None])


def pm_scores(pm_params, pm_model, prompts, samples):
    """The PM's score of each response, read at the EOC appended right after its content
    (stop marker / EOS stripped: the PM was trained on responses without them) -> [b]."""
    inputs = pm_inputs(prompts, samples.tokens, samples.lengths - samples.stop_lengths, pm_model.eoc_id)
    return pm_model.apply({"params": pm_params}, inputs["tokens"], inputs["positions"],
                          inputs["segment_ids"])["score"]


def score_frozen(frozen, prompts, samples, *, policy_model, pm_model, rollout_cfg, logprob_chunk: int = 0) -> dict:
    """The frozen models' scores of a rollout: the scored rollout (SCORED_KEYS).

    frozen {"reference","pm"} params -> the prompts and responses, "lengths" [b], "mask",
    "ref_logp" [b, N] (from the training forward at the sampling temperature, not the sampler's:
    the same function of the tokens as the update's log-probs), "score", "reward" [b] (score plus
    any truncation penalty) and "finished" [b] float32. logprob_chunk: hh.rl.logprobs' chunk.
    """
    mask = response_mask(samples.lengths, samples.tokens.shape[1])
    ref_logp, _ = response_logprobs(frozen["reference"], policy_model, prompts, samples.tokens, mask,
                                    rollout_cfg.temperature, logprob_chunk)
    score = pm_scores(frozen["pm"], pm_model, prompts, samples)
    finished = samples.finished.astype(jnp.float32)
    return {"prompt_tokens": prompts["tokens"], "prompt_segment_ids": prompts["segment_ids"],
            "response_tokens": samples.tokens, "lengths": samples.lengths, "mask": mask, "ref_logp": ref_logp,
            "score": score, "finished": finished,
            "reward": score + rollout_cfg.truncated_penalty * (1.0 - finished)}


def complete_rollout(scored, old_logp, entropy, old_values, kl_coef, ppo_cfg):
    """The rollout the update's minibatches take, from the scored rollout and the trained
    networks' outputs at θ_old (old_logp, entropy, old_values [b, N], 0 on padding).

    -> (rollout: ROLLOUT_KEYS [b, ...], metrics of the rollout).
    """
    mask, ref_logp, score = scored["mask"], scored["ref_logp"], scored["score"]
    targets = ppo_targets(scored["reward"], old_logp, ref_logp, old_values, mask, beta=kl_coef,
                          kl_estimator=ppo_cfg.kl_estimator, gamma=ppo_cfg.gamma, lam=ppo_cfg.lam,
                          whiten_advantages=ppo_cfg.whiten_advantages)
    rollout = {**{k: scored[k] for k in ("prompt_tokens", "prompt_segment_ids", "response_tokens", "mask")},
               "old_logp": old_logp, "old_values": old_values, "advantages": targets["advantages"],
               "returns": targets["returns"]}
    kl = jnp.mean(jnp.sum(targets["kl"], axis=1))          # per-sequence sum, batch mean
    tokens = jnp.maximum(jnp.sum(mask), 1.0)
    metrics = {
        "reward": jnp.mean(score),                          # raw PM score, before any penalty
        "reward_total": jnp.mean(jnp.sum(targets["rewards"], axis=1)),   # r_PM − β·KL (+ penalty)
        "kl": kl,
        "kl_k1": jnp.mean(jnp.sum(kl_k1(old_logp, ref_logp) * mask, axis=1)),
        "kl_k3": jnp.mean(jnp.sum(kl_k3(old_logp, ref_logp) * mask, axis=1)),
        "sqrt_kl": jnp.sqrt(jnp.maximum(kl, 0.0)),
        "entropy": jnp.sum(entropy) / tokens,
        "explained_variance": explained_variance(old_values, targets["returns"], mask),
        "value_mean": jnp.sum(old_values) / tokens,
        "response_length": jnp.mean(scored["lengths"].astype(jnp.float32)),
        "fraction_finished": jnp.mean(scored["finished"]),
        "kl_coef": kl_coef,
    }
    return rollout, metrics


def rollout_prompts(batch):
    """The prompt half of a rollout minibatch -> the prompts dict the forwards take."""
    return {"tokens": batch["prompt_tokens"], "segment_ids": batch["prompt_segment_ids"]}


def transformer_fns(policy_model, value_model, temperature: float, logprob_chunk: int = 0):
    """(logprob_fn, value_fn) over rollout minibatches, for hh.rl.ppo.ppo_loss_terms;
    logprob_chunk > 0 runs the LM head that many response positions at a time (hh.rl.logprobs)."""
    def logprob_fn(policy_params, batch):
        return response_logprobs(policy_params, policy_model, rollout_prompts(batch),
                                 batch["response_tokens"], batch["mask"], temperature, logprob_chunk)

    def value_fn(value_params, batch):
        return response_values(value_params, value_model, rollout_prompts(batch),
                               batch["response_tokens"], batch["mask"])
    return logprob_fn, value_fn
