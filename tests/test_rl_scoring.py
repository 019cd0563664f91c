"""Scoring a rollout: the PM reward is read at the EOC right after the response content (stop
marker stripped), score_rollout's targets and metrics are consistent, and an update whose first
step finishes the scoring gives what scoring then updating gives."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from hh.models.sampling import Samples
from hh.rl.logprobs import response_logprobs
from hh.pm.model import PreferenceModel
from hh.rl import scoring
from hh.rl.ppo import bind_loss, init_ppo_state, ppo_update, ppo_update_scoring_first
from hh.rl.scoring import pm_inputs, pm_scores, score_rollout
from rl_fixtures import prompts_and_responses, smoke_models, smoke_params

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


def test_score_rollout_targets_and_metrics():
    cfg, policy, value = smoke_models()
    params = smoke_params(policy, value)
    reference = smoke_params(policy, value, seed=1)["policy"]
    pm, pm_params = _pm(cfg)
    prompts, tokens, mask = prompts_and_responses()
    samples = _samples(tokens, mask, [0, 1, 0, 0, 1, 0, 1, 0])
    rollout_cfg = ml_collections.ConfigDict(dict(temperature=1.0, truncated_penalty=-2.0))
    ppo_cfg = ml_collections.ConfigDict(dict(kl_estimator="k1", gamma=1.0, lam=0.95, whiten_advantages=True))
    fn = jax.jit(lambda pr, fr, pp, s, b: score_rollout(
        pr, fr, pp, s, b, policy_model=policy, value_model=value, pm_model=pm,
        rollout_cfg=rollout_cfg, ppo_cfg=ppo_cfg))
    rollout, per_response, m = fn(params, {"reference": reference, "pm": pm_params}, prompts, samples,
                                  jnp.float32(0.1))
    score = pm_scores(pm_params, pm, prompts, samples)
    np.testing.assert_allclose(per_response["score"], score, rtol=1e-5, atol=1e-5)
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


@pytest.mark.slow   # ~15-25 s of compiles: run by make test and CI, not test-fast
def test_scoring_in_the_first_step_matches_scoring_then_updating():
    cfg, policy, value = smoke_models()
    params = smoke_params(policy, value)
    frozen = {"reference": smoke_params(policy, value, seed=1)["policy"], "pm": _pm(cfg)[1]}
    pm = _pm(cfg)[0]
    prompts, tokens, mask = prompts_and_responses()
    samples = _samples(tokens, mask, [0, 1, 0, 0, 1, 0, 1, 0])
    rollout_cfg = ml_collections.ConfigDict(dict(temperature=0.8, truncated_penalty=-2.0))
    ppo_cfg = ml_collections.ConfigDict(dict(kl_estimator="k1", gamma=1.0, lam=0.95, whiten_advantages=True,
                                             clip_eps=0.2, value_clip_eps=0.2, value_coef=0.5, entropy_coef=0.01))
    models = dict(policy_model=policy, pm_model=pm, rollout_cfg=rollout_cfg)
    fns = scoring.transformer_fns(policy, value, rollout_cfg.temperature)
    # SGD applies each gradient as it is (Adam's first step is ≈ sign(g), blind to small errors)
    optimizers = {"policy": optax.sgd(0.05), "value": optax.sgd(0.05)}
    state = init_ppo_state(params, optimizers, 0.1)
    rng = jax.random.key(3)

    @jax.jit
    def separate(state):
        rollout, _, metrics = score_rollout(state.params, frozen, prompts, samples, state.kl_coef,
                                            value_model=value, ppo_cfg=ppo_cfg, **models)
        rollout = {k: rollout[k] for k in scoring.ROLLOUT_KEYS}
        new, per_step = ppo_update(state, rollout, rng, loss_terms=bind_loss(*fns, ppo_cfg),
                                   optimizers=optimizers, epochs=2, minibatches=1)
        return new, per_step, rollout, metrics

    @jax.jit
    def fused(state):
        partial = scoring.partial_rollout(prompts, samples, scoring.score_frozen(frozen, prompts, samples, **models))
        scoring_loss = bind_loss(*fns, ppo_cfg, complete=scoring.completion(state.kl_coef, ppo_cfg))
        return ppo_update_scoring_first(state, partial, rng, scoring_loss=scoring_loss,
                                        loss_terms=bind_loss(*fns, ppo_cfg), optimizers=optimizers, epochs=2)

    want = separate(state)
    got = fused(state)
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), want[0].params, params)
    assert max(jax.tree.leaves(moved)) > 1e-3, "the test must move the params to mean anything"
    close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)
    jax.tree.map(close, got[0].params, want[0].params)
    assert int(got[0].step) == int(want[0].step) == 1
    assert set(got[1]) == set(want[1]) and got[1]["policy_loss"].shape == (2,)
    jax.tree.map(close, got[1], want[1])
    jax.tree.map(close, {k: got[2][k] for k in scoring.ROLLOUT_KEYS}, want[2])
    assert set(got[3]) == set(want[3])
    jax.tree.map(close, got[3], want[3])
