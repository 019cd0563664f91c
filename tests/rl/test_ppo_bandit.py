"""The key correctness test of PPO: on a one-step bandit with a per-token KL
penalty β·k1 in the reward, PPO converges to the analytic optimum p* = p0·exp(r/β)/Z.

The policy is a categorical over K arms (params = logits), the critic one scalar; everything
else is the library's: ppo_targets (rewards, GAE, whitening), ppo_loss_terms and ppo_update.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hh.rl.advantages import ppo_targets
from hh.rl.ppo import bind_loss, init_ppo_state, ppo_update
from hh.train.optim import make_optimizer

P0 = np.array([0.4, 0.3, 0.2, 0.1])
REWARD = np.array([1.0, 0.5, 0.0, -0.5])
BETA = 0.5
ITERATIONS, BATCH = 150, 512


def bandit_optimum():
    p = P0 * np.exp(REWARD / BETA)
    return p / p.sum()


def _logprob(logits, batch):
    logp = jnp.take(jax.nn.log_softmax(logits), batch["actions"])   # [b, 1]
    probs = jax.nn.softmax(logits)
    entropy = -jnp.sum(probs * jnp.log(probs)) * jnp.ones_like(logp)
    return logp, entropy


def _value(v, batch):
    return jnp.broadcast_to(v, batch["actions"].shape)


def _iteration(state, rng, optimizers, ppo_cfg):
    sample_rng, update_rng = jax.random.split(rng)
    logits = state.params["policy"]
    actions = jax.random.categorical(sample_rng, logits, shape=(BATCH, 1))
    batch = {"actions": actions, "mask": jnp.ones((BATCH, 1), jnp.float32)}
    old_logp, _ = _logprob(logits, batch)
    ref_logp = jnp.log(jnp.asarray(P0, jnp.float32))[actions]
    values = _value(state.params["value"], batch)
    score = jnp.asarray(REWARD, jnp.float32)[actions[:, 0]]
    targets = ppo_targets(score, old_logp, ref_logp, values, batch["mask"], beta=state.kl_coef,
                          kl_estimator="k1", gamma=1.0, lam=0.95)
    rollout = {**batch, "old_logp": old_logp, "old_values": values,
               "advantages": targets["advantages"], "returns": targets["returns"]}
    loss = bind_loss(_logprob, _value, ppo_cfg)
    return ppo_update(state, rollout, update_rng, loss_terms=loss, optimizers=optimizers,
                      epochs=ppo_cfg.epochs, minibatches=ppo_cfg.minibatches, microbatches=2)


def test_ppo_reaches_the_kl_regularised_optimum():
    ppo_cfg = ml_collections.ConfigDict(dict(clip_eps=0.2, value_clip_eps=10.0, value_coef=1.0,
                                             entropy_coef=0.0, epochs=2, minibatches=4))
    opt_cfg = ml_collections.ConfigDict(dict(learning_rate=0.05, schedule="cosine", warmup_steps=0,
                                             end_lr_factor=0.02, b1=0.9, b2=0.999, eps=1e-8,
                                             weight_decay=0.0, clip_norm=1.0))
    updates = ITERATIONS * ppo_cfg.epochs * ppo_cfg.minibatches
    optimizers = {k: make_optimizer(opt_cfg, updates)[0] for k in ("policy", "value")}
    params = {"policy": jnp.log(jnp.asarray(P0, jnp.float32)), "value": jnp.zeros((), jnp.float32)}
    state = init_ppo_state(params, optimizers, BETA)
    step = jax.jit(functools.partial(_iteration, optimizers=optimizers, ppo_cfg=ppo_cfg))
    for i in range(ITERATIONS):
        state, metrics = step(state, jax.random.fold_in(jax.random.key(0), i))
    p = np.asarray(jax.nn.softmax(state.params["policy"]), np.float64)
    tv = 0.5 * np.abs(p - bandit_optimum()).sum()
    assert tv < 0.02, (p, bandit_optimum(), tv)
    print(f"TV(p, p*) = {tv:.4f}")
    # it moved far from p0 (so the test could fail): TV(p0, p*) ≈ 0.34
    assert 0.5 * np.abs(P0 - bandit_optimum()).sum() > 0.3
