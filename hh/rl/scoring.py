"""The second phase of a PPO iteration: score a rollout with the training forward. Old and
reference log-probs and values (hh.rl.logprobs), the PM reward read at the EOC appended right
after each response's content, then per-token rewards and advantages (hh.rl.advantages).
"""

import jax.numpy as jnp

from hh.rl.advantages import ppo_targets
from hh.rl.kl import kl_k1, kl_k3
from hh.rl.logprobs import response_logprobs, response_mask, response_values, sequence_inputs
from hh.rl.ppo_loss import explained_variance

ROLLOUT_KEYS = ("prompt_tokens", "prompt_segment_ids", "response_tokens", "mask", "old_logp",
                "old_values", "advantages", "returns")
# What the update takes when its first step finishes the scoring (hh.rl.ppo.ppo_update_scoring_first).
PARTIAL_KEYS = ("prompt_tokens", "prompt_segment_ids", "response_tokens", "mask", "lengths", "ref_logp",
                "score", "reward", "finished")
FROZEN_KEYS = ("mask", "ref_logp", "score", "reward", "finished")


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


def score_frozen(frozen, prompts, samples, *, policy_model, pm_model, rollout_cfg):
    """The frozen models' half of scoring: reference log-probs and the PM reward.

    -> {"mask", "ref_logp" [b, N], "score", "reward" [b] (score plus any truncation penalty),
    "finished" [b] float32}. What `score_rollout` needs beside the trained networks' forwards, and
    all that the scoring phase computes when the update scores in its first step
    (hh.rl.ppo.ppo_update_scoring_first).
    """
    mask = response_mask(samples.lengths, samples.tokens.shape[1])
    ref_logp, _ = response_logprobs(frozen["reference"], policy_model, prompts, samples.tokens, mask,
                                    rollout_cfg.temperature)
    score = pm_scores(frozen["pm"], pm_model, prompts, samples)
    finished = samples.finished.astype(jnp.float32)
    return {"mask": mask, "ref_logp": ref_logp, "score": score, "finished": finished,
            "reward": score + rollout_cfg.truncated_penalty * (1.0 - finished)}


def complete_rollout(prompts, response_tokens, lengths, frozen_scores, old_logp, entropy, values, kl_coef,
                     ppo_cfg):
    """The scored rollout from the frozen scores and the trained networks' outputs at θ_old.

    -> (rollout: ROLLOUT_KEYS [b, ...], metrics). old_logp, entropy, values [b, N], 0 on padding.
    """
    mask, ref_logp, score = frozen_scores["mask"], frozen_scores["ref_logp"], frozen_scores["score"]
    targets = ppo_targets(frozen_scores["reward"], old_logp, ref_logp, values, mask, beta=kl_coef,
                          kl_estimator=ppo_cfg.kl_estimator, gamma=ppo_cfg.gamma, lam=ppo_cfg.lam,
                          whiten_advantages=ppo_cfg.whiten_advantages)
    rollout = {"prompt_tokens": prompts["tokens"], "prompt_segment_ids": prompts["segment_ids"],
               "response_tokens": response_tokens, "mask": mask, "old_logp": old_logp, "old_values": values,
               "advantages": targets["advantages"], "returns": targets["returns"]}
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
        "explained_variance": explained_variance(values, targets["returns"], mask),
        "value_mean": jnp.sum(values) / tokens,
        "response_length": jnp.mean(lengths.astype(jnp.float32)),
        "fraction_finished": jnp.mean(frozen_scores["finished"]),
        "kl_coef": kl_coef,
    }
    return rollout, metrics


def partial_rollout(prompts, samples, frozen_scores) -> dict:
    """PARTIAL_KEYS: the rollout as the scoring phase leaves it when the update's first step
    computes the old log-probs and values."""
    return {"prompt_tokens": prompts["tokens"], "prompt_segment_ids": prompts["segment_ids"],
            "response_tokens": samples.tokens, "lengths": samples.lengths,
            **{k: frozen_scores[k] for k in FROZEN_KEYS}}


def completion(kl_coef, ppo_cfg):
    """complete(partial, old_logp, entropy, values) for hh.rl.ppo.scoring_loss_terms: the
    rollout and scoring metrics of `score_rollout`, from a partial rollout."""
    def complete(partial, old_logp, entropy, values):
        return complete_rollout(rollout_prompts(partial), partial["response_tokens"], partial["lengths"],
                                {k: partial[k] for k in FROZEN_KEYS}, old_logp, entropy, values, kl_coef,
                                ppo_cfg)
    return complete


def per_response(samples, frozen_scores) -> dict:
    """What the sample log keeps of each response: {"score","length","finished"} [b]."""
    return {"score": frozen_scores["score"], "length": samples.lengths, "finished": samples.finished}


def score_rollout(params, frozen, prompts, samples, kl_coef, *, policy_model, value_model, pm_model,
                  rollout_cfg, ppo_cfg):
    """-> (rollout: ROLLOUT_KEYS [b, ...], per_response: {"score","length","finished"} [b], metrics).

    params {"policy","value"} (trained), frozen {"reference","pm"}. Every log-prob comes from the
    training forward at the sampling temperature (RLHF-NOTES #4, #20), not from the sampler.
    """
    frozen_scores = score_frozen(frozen, prompts, samples, policy_model=policy_model, pm_model=pm_model,
                                 rollout_cfg=rollout_cfg)
    mask = frozen_scores["mask"]
    old_logp, entropy = response_logprobs(params["policy"], policy_model, prompts, samples.tokens, mask,
                                          rollout_cfg.temperature)
    values = response_values(params["value"], value_model, prompts, samples.tokens, mask)
    rollout, metrics = complete_rollout(prompts, samples.tokens, samples.lengths, frozen_scores, old_logp,
                                        entropy, values, kl_coef, ppo_cfg)
    return rollout, per_response(samples, frozen_scores), metrics


def rollout_prompts(batch):
    """The prompt half of a rollout minibatch -> the prompts dict the forwards take."""
    return {"tokens": batch["prompt_tokens"], "segment_ids": batch["prompt_segment_ids"]}


def transformer_fns(policy_model, value_model, temperature: float):
    """(logprob_fn, value_fn) over rollout minibatches, for hh.rl.ppo.ppo_loss_terms."""
    def logprob_fn(policy_params, batch):
        return response_logprobs(policy_params, policy_model, rollout_prompts(batch),
                                 batch["response_tokens"], batch["mask"], temperature)

    def value_fn(value_params, batch):
        return response_values(value_params, value_model, rollout_prompts(batch),
                               batch["response_tokens"], batch["mask"])
    return logprob_fn, value_fn
