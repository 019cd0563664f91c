"""The PPO update on one scored rollout: K passes (Bai et al. 2022 App. B.1: K = 1, 2 or 4) over
shuffled minibatches, each an exact gradient-accumulated step of the policy and value optimizers.

Pure: `ppo_update(state, rollout, rng) -> (state, metrics)` with the model-specific forward passed
in as `loss_terms` (hh.rl.iteration binds it for transformers; the bandit test for logits).
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from hh.rl.ppo_loss import policy_loss_sums, ppo_objective_sums, value_loss_sums
from hh.train.step import accumulated_gradients, means_from_sums

NETWORKS = ("policy", "value")


@flax.struct.dataclass
class PPOState:
    """What a PPO run checkpoints: the frozen reference policy and PM are not in it."""
    step: jax.Array        # PPO iterations (rollouts) done
    params: Any            # {"policy": ..., "value": ...}
    opt_state: Any         # {"policy": ..., "value": ...}
    kl_coef: jax.Array     # β of the KL penalty (hh.rl.kl_control)


def init_ppo_state(params: dict, optimizers: dict, kl_coef) -> PPOState:
    return PPOState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state={k: optimizers[k].init(params[k]) for k in NETWORKS},
                    kl_coef=jnp.asarray(kl_coef, jnp.float32))


def ppo_loss_terms(params, batch, *, logprob_fn, value_fn, clip_eps, value_clip_eps,
                   value_coef=1.0, entropy_coef=0.0):
    """(objective sum, metric sums with "count") of one (micro)batch of a rollout.

    logprob_fn(policy_params, batch) -> (logp, entropy) [b, N]; value_fn(value_params, batch)
    -> values [b, N]. batch holds "mask", "old_logp", "old_values", "advantages", "returns".
    """
    logp, entropy = logprob_fn(params["policy"], batch)
    values = value_fn(params["value"], batch)
    mask = batch["mask"]
    if not entropy_coef:   # a metric only: 0 · entropy would still run its backward over the vocabulary
        entropy = jax.lax.stop_gradient(entropy)
    policy = policy_loss_sums(logp, batch["old_logp"], batch["advantages"], mask, clip_eps)
    value = value_loss_sums(values, batch["old_values"], batch["returns"], mask, value_clip_eps)
    return ppo_objective_sums(policy, value, jnp.sum(entropy * mask), mask, value_coef, entropy_coef)


def minibatch_indices(rng, batch_size: int, epochs: int, minibatches: int):
    """A fresh permutation of the rollout per pass -> [epochs · minibatches, batch_size / minibatches]."""
    if batch_size % minibatches:
        raise ValueError(f"rollout of {batch_size} does not split into {minibatches} minibatches")
    perms = jax.vmap(lambda r: jax.random.permutation(r, batch_size))(jax.random.split(rng, epochs))
    return perms.reshape(epochs * minibatches, batch_size // minibatches)


def _apply(optimizers, grads, opt_state, params):
    new_params, new_opt = {}, {}
    for k in NETWORKS:
        updates, new_opt[k] = optimizers[k].update(grads[k], opt_state[k], params[k])
        new_params[k] = optax.apply_updates(params[k], updates)
    return new_params, new_opt


def _step(optimizers, grads, sums, params, opt_state):
    """One optimizer step of both networks -> (params, opt_state, the minibatch's metrics)."""
    params, opt_state = _apply(optimizers, grads, opt_state, params)
    metrics = means_from_sums(sums)
    for k in NETWORKS:
        metrics[f"{k}_grad_norm"] = optax.global_norm(grads[k])
    return params, opt_state, metrics


def _passes(params, opt_state, rollout, order, loss_terms, optimizers, microbatches):
    """One optimizer step per row of `order` (the minibatches' row indices), in order."""
    def one_minibatch(carry, index):
        params, opt_state = carry
        batch = jax.tree.map(lambda x: jnp.take(x, index, axis=0), rollout)
        grads, sums = accumulated_gradients(loss_terms, params, batch, microbatches)
        params, opt_state, metrics = _step(optimizers, grads, sums, params, opt_state)
        return (params, opt_state), metrics

    return jax.lax.scan(one_minibatch, (params, opt_state), order)


def ppo_update(state: PPOState, rollout: dict, rng, *, loss_terms, optimizers: dict,
               epochs: int, minibatches: int, microbatches: int = 1):
    """K = `epochs` passes over `minibatches` minibatches of `rollout` ([B, ...] arrays).

    -> (state with step + 1, metrics: each a [epochs · minibatches] array, one per minibatch in
    order, so the first is the first minibatch of the first pass). `state.kl_coef` is untouched:
    hh.rl.iteration updates it from the rollout's KL.
    """
    batch_size = jax.tree.leaves(rollout)[0].shape[0]
    order = minibatch_indices(rng, batch_size, epochs, minibatches)
    (params, opt_state), metrics = _passes(state.params, state.opt_state, rollout, order, loss_terms,
                                           optimizers, microbatches)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def mean_metrics(per_minibatch: dict) -> dict:
    """Per-minibatch metrics -> their means over the update (what a PPO run logs)."""
    return {k: jnp.mean(v) for k, v in per_minibatch.items()}


def bind_loss(logprob_fn, value_fn, ppo_cfg):
    """ppo_loss_terms with the config's clip ranges and coefficients bound."""
    return functools.partial(ppo_loss_terms, logprob_fn=logprob_fn, value_fn=value_fn, clip_eps=ppo_cfg.clip_eps,
                             value_clip_eps=ppo_cfg.value_clip_eps, value_coef=ppo_cfg.value_coef,
                             entropy_coef=ppo_cfg.entropy_coef)
