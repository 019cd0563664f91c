"""Scoring a rollout: the PM reward is read at the EOC right after the response content (stop
marker stripped), the completed rollout's targets and metrics are consistent, and the PPO
iteration's update (θ_old forwards, advantages and minibatch passes in one jit) gives what scoring
in one jit and then updating in another gives."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from hh.models.heads import PreferenceModel
from hh.models.sampling import Samples
from hh.rl import kl_control, scoring
from hh.rl.iteration import phase_fns, theta_old_outputs, update_metrics
from hh.rl.logprobs import response_logprobs, response_values
from hh.rl.ppo import bind_loss, init_ppo_state, ppo_update
from hh.rl.scoring import pm_inputs, pm_scores
from rl_fixtures import prompts_and_responses, smoke_models, smoke_params, smoke_rollout

EOC = 3


def _samples(tokens, mask, stop_lengths):
    lengths = jnp.sum(mask, axis=1).astype(jnp.int32)
    return Samples(tokens=tokens, logprobs=jnp.zeros(tokens.shape), lengths=lengths,
                   stop_lengths=jnp.asarray(stop_lengths, jnp.int32), finished=jnp.asarray(stop_lengths) > 0)


def _pm(cfg):
    pm = PreferenceModel(cfg, eoc_id=EOC)
    tokens = jnp.zeros((1, 8), jnp.int32)
    params = jax.jit(lambda k: pm.init(k, tokens, compute_logits=True)["params"])(jax.random.key(5))
    params = nn.meta.unbox(params)
    head = params["score_head"]["score"]
    head["kernel"] = jax.random.normal(jax.random.key(6), head["kernel"].shape)
    return pm, params


def test_pm_inputs_layout():
    prompts, tokens, mask = prompts_and_responses()
    content = jnp.sum(mask, axis=1).astype(jnp.int32) - jnp.array([1, 0, 2, 0, 1, 0, 0, 1])
    inputs = pm_inputs(prompts, tokens, content, EOC)
    p = prompts["tokens"].shape[1]
    for i in range(8):
        c = int(content[i])
        np.testing.assert_array_equal(inputs["tokens"][i, p:p + c], tokens[i, :c])
        assert int(inputs["tokens"][i, p + c]) == EOC
        assert int(inputs["segment_ids"][i, p + c + 1:].sum()) == 0


def test_reward_is_read_at_the_eoc_after_the_content():
    cfg, _, _ = smoke_models()
    pm, params = _pm(cfg)
    prompts, tokens, mask = prompts_and_responses()
    stop = [1, 0, 2, 0, 1, 0, 0, 1]   # trailing stop-marker tokens to strip
    scores = jax.jit(pm_scores, static_argnums=1)(params, pm, prompts, _samples(tokens, mask, stop))
    apply = jax.jit(pm.apply)
    for i in range(8):
        p_ids = [int(t) for t, s in zip(prompts["tokens"][i], prompts["segment_ids"][i]) if s]
        c = int(mask[i].sum()) - stop[i]
        row = jnp.asarray([p_ids + [int(t) for t in tokens[i, :c]] + [EOC]])
        expected = apply({"params": params}, row)["score"][0]
        np.testing.assert_allclose(scores[i], expected, rtol=1e-5, atol=1e-5)
        if stop[i]:   # reading with the stop tokens kept gives another score: the test can fail
            kept = jnp.asarray([p_ids + [int(t) for t in tokens[i, :c + stop[i]]] + [EOC]])
            assert abs(float(apply({"params": params}, kept)["score"][0] - expected)) > 1e-4


def _score_separately(params, frozen, prompts, samples, kl_coef, *, policy, value, pm, rollout_cfg, ppo_cfg):
    """The reference scoring: frozen scores, then the trained networks' own forwards at θ_old,
    then the completed rollout -> (rollout, metrics)."""
    scored = scoring.score_frozen(frozen, prompts, samples, policy_model=policy, pm_model=pm,
                                  rollout_cfg=rollout_cfg)
    old_logp, entropy = response_logprobs(params["policy"], policy, prompts, samples.tokens, scored["mask"],
                                          rollout_cfg.temperature)
    old_values = response_values(params["value"], value, prompts, samples.tokens, scored["mask"])
    return scoring.complete_rollout(scored, old_logp, entropy, old_values, kl_coef, ppo_cfg)


def test_completed_rollout_targets_and_metrics():
    cfg, policy, value = smoke_models()
    params = smoke_params(policy, value)
    reference = smoke_params(policy, value, seed=1)["policy"]
    pm, pm_params = _pm(cfg)
    prompts, tokens, mask = prompts_and_responses()
    samples = _samples(tokens, mask, [0, 1, 0, 0, 1, 0, 1, 0])
    rollout_cfg = ml_collections.ConfigDict(dict(temperature=1.0, truncated_penalty=-2.0))
    ppo_cfg = ml_collections.ConfigDict(dict(kl_estimator="k1", gamma=1.0, lam=0.95, whiten_advantages=True))
    fn = jax.jit(functools.partial(_score_separately, policy=policy, value=value, pm=pm, rollout_cfg=rollout_cfg,
                                   ppo_cfg=ppo_cfg))
    rollout, m = fn(params, {"reference": reference, "pm": pm_params}, prompts, samples, jnp.float32(0.1))
    assert set(rollout) == set(scoring.ROLLOUT_KEYS)
    score = pm_scores(pm_params, pm, prompts, samples)
    np.testing.assert_allclose(m["reward"], score.mean(), rtol=1e-5, atol=1e-5)
    assert float(m["kl_k3"]) >= 0 and float(m["kl"]) == float(m["kl_k1"])
    np.testing.assert_allclose(m["sqrt_kl"], np.sqrt(max(float(m["kl"]), 0.0)), rtol=1e-6)
    # total reward = PM score + truncation penalty (unfinished rows) − β·Σ k1
    penalty = -2.0 * (1 - np.asarray(samples.finished, np.float32))
    ref_logp, _ = jax.jit(response_logprobs, static_argnums=(1, 5))(reference, policy, prompts, tokens, mask, 1.0)
    total = np.asarray(score) + penalty - 0.1 * np.sum(np.asarray(rollout["old_logp"] - ref_logp), axis=1)
    np.testing.assert_allclose(m["reward_total"], total.mean(), rtol=1e-4, atol=1e-4)
    adv = np.asarray(rollout["advantages"])[np.asarray(mask) > 0]
    np.testing.assert_allclose([adv.mean(), adv.std()], [0.0, 1.0], atol=1e-4)
    assert float(m["response_length"]) == float(mask.sum(1).mean())


@pytest.mark.slow   # ~20-40 s of compiles: run by make test and CI, not test-fast
@pytest.mark.parametrize("minibatches,microbatches", [(1, 1), (2, 2)])
def test_iteration_update_matches_scoring_then_updating(minibatches, microbatches):
    cfg, policy, value = smoke_models()
    params = smoke_params(policy, value)
    pm, pm_params = _pm(cfg)
    frozen = {"reference": smoke_params(policy, value, seed=1)["policy"], "pm": pm_params}
    prompts, tokens, mask = prompts_and_responses()
    samples = _samples(tokens, mask, [0, 1, 0, 0, 1, 0, 1, 0])
    rollout_cfg = ml_collections.ConfigDict(dict(temperature=0.8, truncated_penalty=-2.0))
    ppo_cfg = ml_collections.ConfigDict(dict(kl_estimator="k1", gamma=1.0, lam=0.95, whiten_advantages=True,
                                             clip_eps=0.2, value_clip_eps=0.2, value_coef=0.5, entropy_coef=0.01,
                                             epochs=2, minibatches=minibatches))
    kl_cfg = ml_collections.ConfigDict(dict(kind="adaptive", init_coef=0.1, target=6.0, horizon=100))
    # SGD applies each gradient as it is (Adam's first step is ≈ sign(g), blind to small errors)
    optimizers = {"policy": optax.sgd(0.05), "value": optax.sgd(0.05)}
    schedule = optax.constant_schedule(0.05)
    state = init_ppo_state(params, optimizers, 0.1)
    seed = 3

    @jax.jit
    def separate(state):
        rollout, metrics = _score_separately(state.params, frozen, prompts, samples, state.kl_coef, policy=policy,
                                             value=value, pm=pm, rollout_cfg=rollout_cfg, ppo_cfg=ppo_cfg)
        rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), state.step), 1)   # the iteration's
        loss = bind_loss(*scoring.transformer_fns(policy, value, rollout_cfg.temperature), ppo_cfg)
        new, per_minibatch = ppo_update(state, rollout, rng, loss_terms=loss, optimizers=optimizers, epochs=2,
                                        minibatches=minibatches, microbatches=microbatches)
        new = new.replace(kl_coef=kl_control.update_kl_coef(state.kl_coef, metrics["kl"], 8, kl_cfg))
        return new, {**metrics, **update_metrics(per_minibatch, ppo_cfg.value_coef, schedule(0))}

    fns = phase_fns({"policy": policy, "value": value, "pm": pm}, optimizers, sampling=None,
                    rollout_cfg=rollout_cfg, ppo_cfg=ppo_cfg, kl_cfg=kl_cfg, seed=seed, lr_schedule=schedule,
                    microbatches=microbatches)
    scored, score_metrics = jax.jit(fns["score"])(frozen, prompts, samples)
    assert set(scored) == set(scoring.SCORED_KEYS) and score_metrics == {}
    got = jax.jit(fns["update"])(state, scored)
    want = separate(state)
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), want[0].params, params)
    assert max(jax.tree.leaves(moved)) > 1e-3, "the test must move the params to mean anything"
    assert float(want[0].kl_coef) != 0.1, "the adaptive β must move"
    # the stage scores in the update's row pieces: float32 sums in another order, ~1e-6 apart
    close = functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=5e-6)
    jax.tree.map(close, got[0], want[0])
    assert set(got[1]) == set(want[1])
    jax.tree.map(close, got[1], want[1])


def test_theta_old_outputs_in_pieces_equal_the_whole_rollout():
    """The update runs θ_old's forwards in minibatch-sized pieces: the same numbers as one pass."""
    _, policy, value = smoke_models()
    params = smoke_params(policy, value)
    rollout = smoke_rollout(params, policy, value)
    logprob_fn, value_fn = scoring.transformer_fns(policy, value, 0.8)
    whole, pieces = (jax.jit(lambda p, r, c=c: theta_old_outputs(p, r, logprob_fn, value_fn, chunks=c))(params, rollout)
                     for c in (1, 4))
    assert [x.shape for x in pieces] == [rollout["mask"].shape] * 3
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6), pieces, whole)
    assert float(jnp.max(jnp.abs(whole[2]))) > 0 and float(jnp.max(jnp.abs(whole[0]))) > 0


@pytest.mark.slow   # two update compiles
def test_frozen_lower_halves_get_no_backward_in_the_ppo_update():
    """With the optimizers' `frozen` patterns passed as frozen_patterns, the update skips the frozen
    params' backward (fewer FLOPs), leaves them as they were, and moves the rest as when only the
    optimizers freeze."""
    from hh.train.optim import make_optimizer

    cfg, policy, value = smoke_models()
    params = smoke_params(policy, value)
    pm, pm_params = _pm(cfg)
    frozen = {"reference": smoke_params(policy, value, seed=1)["policy"], "pm": pm_params}
    prompts, tokens, mask = prompts_and_responses()
    rollout_cfg = ml_collections.ConfigDict(dict(temperature=0.8, truncated_penalty=-2.0))
    ppo_cfg = ml_collections.ConfigDict(dict(kl_estimator="k1", gamma=1.0, lam=0.95, whiten_advantages=True,
                                             clip_eps=0.2, value_clip_eps=0.2, value_coef=0.5, entropy_coef=0.0,
                                             epochs=1, minibatches=2))
    kl_cfg = ml_collections.ConfigDict(dict(kind="fixed", init_coef=0.1))
    patterns = {"policy": r"^(embed|stack/layer_0)/", "value": r"^trunk/(embed|stack/layer_0)/"}
    optimizers = {}
    for k, pattern in patterns.items():
        opt_cfg = ml_collections.ConfigDict(dict(learning_rate=1e-2, schedule="constant", warmup_steps=0,
                                                 end_lr_factor=1.0, b1=0.9, b2=0.95, eps=1e-3, weight_decay=0.0,
                                                 clip_norm=1.0, frozen=pattern))
        optimizers[k], schedule = make_optimizer(opt_cfg, 10)
    state = init_ppo_state(params, optimizers, 0.1)
    models = {"policy": policy, "value": value, "pm": pm}
    common = dict(sampling=None, rollout_cfg=rollout_cfg, ppo_cfg=ppo_cfg, kl_cfg=kl_cfg, seed=3, lr_schedule=schedule)
    fns = phase_fns(models, optimizers, **common)
    scored, _ = jax.jit(fns["score"])(frozen, prompts, _samples(tokens, mask, [0] * 8))
    updates = {name: jax.jit(phase_fns(models, optimizers, frozen_patterns=p, **common)["update"]).lower(
        state, scored).compile() for name, p in (("skipping", patterns), ("computing", None))}
    new, reference = (updates[name](state, scored)[0].params for name in ("skipping", "computing"))
    for k, pattern in patterns.items():
        for (path, a), b, p in zip(jax.tree_util.tree_leaves_with_path(new[k]), jax.tree.leaves(reference[k]),
                                   jax.tree.leaves(params[k])):
            where = jax.tree_util.keystr(path)
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=f"{k} {where}")
            if "layer_0" in where or "embed" in where:
                np.testing.assert_array_equal(a, p, err_msg=f"{k} {where}")
    flops = {name: c.cost_analysis()["flops"] for name, c in updates.items()}
    assert flops["skipping"] < 0.9 * flops["computing"], flops
