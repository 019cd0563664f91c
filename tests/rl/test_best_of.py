"""Best-of-k: the KL bound against an exact discrete computation, and the picked sample is the
PM's best of the k drawn in one batched call (k = 1 is plain sampling)."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hh.data.prompt_data import left_padded
from hh.models import presets
from hh.models.heads import PreferenceModel
from hh.models.sampling import Samples, SamplingConfig, generate
from hh.models.transformer import TransformerLM
from hh.rl.best_of import best_of_k, kl_upper_bound, pick_rows, repeat_rows
from hh.rl.scoring import pm_scores

EOC = 3


def exact_best_of_k_kl(n: int, k: int) -> float:
    """KL(best-of-k ‖ uniform) over n items with distinct scores, in float64: the best of k
    uniform draws is item i (ranked by score) with probability (i/n)^k − ((i−1)/n)^k."""
    i = np.arange(1, n + 1, dtype=np.float64)
    p_best = (i / n) ** k - ((i - 1) / n) ** k
    return float(np.sum(p_best * np.log(p_best * n)))


def test_kl_upper_bound_hand_values():
    assert kl_upper_bound(1) == 0.0
    assert kl_upper_bound(4) == pytest.approx(math.log(4) - 0.75)
    assert kl_upper_bound(64) == pytest.approx(4.158883 - 63 / 64, abs=1e-6)
    with pytest.raises(ValueError):
        kl_upper_bound(0)


@pytest.mark.parametrize("k", [2, 4, 16, 64])
def test_bound_holds_and_is_tight_for_many_distinct_outcomes(k):
    coarse, fine = exact_best_of_k_kl(8, k), exact_best_of_k_kl(4000, k)
    assert coarse < kl_upper_bound(k) and fine <= kl_upper_bound(k) + 1e-12
    assert fine == pytest.approx(kl_upper_bound(k), abs=5e-3)


@pytest.fixture(scope="module")
def setup():
    cfg = presets.model_config("smoke")
    policy, pm = TransformerLM(cfg), PreferenceModel(cfg, eoc_id=EOC)
    tokens = jnp.zeros((1, 8), jnp.int32)
    params = nn.meta.unbox(jax.jit(lambda r: {"policy": policy.init(r, tokens)["params"],
                                              "pm": pm.init(r, tokens)["params"]})(jax.random.key(0)))
    head = params["pm"]["score_head"]["score"]   # a fresh head scores all equal: give it weights
    head["kernel"] = jax.random.normal(jax.random.key(1), head["kernel"].shape)
    rows = [[1, 20, 21, 22], [1, 40], [1, 50, 51, 52, 53, 54]]
    prompts = {k: jnp.asarray(v) for k, v in left_padded(rows, 6).items() if k != "prompt_length"}
    sampling = SamplingConfig(max_new_tokens=6, temperature=1.0, eos_id=2, banned_ids=(0, EOC))
    return cfg, pm, params, prompts, sampling


def run_best_of(setup, k):
    cfg, pm, params, prompts, sampling = setup
    fn = jax.jit(best_of_k, static_argnames=("model_cfg", "pm_model", "sampling", "k"))
    return fn(params["policy"], params["pm"], prompts, jax.random.key(5), model_cfg=cfg,
              pm_model=pm, sampling=sampling, k=k)


def test_best_is_the_argmax_of_the_k_drawn(setup):
    cfg, pm, params, prompts, sampling = setup
    k = 4
    out = run_best_of(setup, k)
    many = repeat_rows(prompts, k)
    samples = jax.jit(generate, static_argnums=(1, 4))(params["policy"], cfg, many, jax.random.key(5), sampling)
    scores = np.asarray(pm_scores(params["pm"], pm, many, samples)).reshape(3, k)
    np.testing.assert_allclose(np.asarray(out["scores"]), scores, rtol=1e-5, atol=1e-6)
    best = scores.argmax(axis=1)
    np.testing.assert_array_equal(np.asarray(out["best_index"]), best)
    np.testing.assert_allclose(np.asarray(out["score"]), scores.max(axis=1), rtol=1e-5, atol=1e-6)
    tokens = np.asarray(samples.tokens).reshape(3, k, -1)
    np.testing.assert_array_equal(np.asarray(out["samples"].tokens), tokens[np.arange(3), best])
    assert len(set(map(tuple, tokens.reshape(3 * k, -1)))) > 3   # the k draws differ


def test_k_of_one_is_plain_sampling(setup):
    cfg, pm, params, prompts, sampling = setup
    out = run_best_of(setup, 1)
    plain = jax.jit(generate, static_argnums=(1, 4))(params["policy"], cfg, prompts, jax.random.key(5), sampling)
    np.testing.assert_array_equal(np.asarray(out["samples"].tokens), np.asarray(plain.tokens))
    np.testing.assert_array_equal(np.asarray(out["samples"].lengths), np.asarray(plain.lengths))


def test_pick_rows_hand_worked():
    tokens = jnp.arange(12).reshape(6, 2)             # 3 prompts × k=2 samples of 2 tokens
    lengths = jnp.array([1, 2, 3, 4, 5, 6])
    samples = Samples(tokens=tokens, logprobs=tokens * 0.0, lengths=lengths, stop_lengths=lengths * 0,
                      finished=lengths > 3)
    picked = pick_rows(samples, jnp.array([1, 0, 1]))
    np.testing.assert_array_equal(np.asarray(picked.tokens), [[2, 3], [4, 5], [10, 11]])
    np.testing.assert_array_equal(np.asarray(picked.lengths), [2, 3, 6])
    np.testing.assert_array_equal(np.asarray(picked.finished), [False, False, True])


@pytest.mark.slow
def test_evaluate_best_of_on_the_smoke_chain(pm_chain):
    from hh.trained import LoadedLM
    from hh.trained import LoadedPM
    from hh.rl.best_of import evaluate_best_of

    report = evaluate_best_of(LoadedLM(pm_chain["lm"]), LoadedPM(pm_chain["pm"]), [1, 4],
                              "synthetic-helpful:test", n_prompts=10, max_new_tokens=8, batch=4)
    one, four = report["k"]["1"], report["k"]["4"]
    assert one["n_prompts"] == four["n_prompts"] == 10
    assert one["mean_best_score"] == pytest.approx(one["mean_single_score"])
    # the best of 4 includes the first draw, so it can only be at least as good
    assert four["mean_best_score"] >= four["mean_single_score"]
    assert four["kl_upper_bound"] == pytest.approx(kl_upper_bound(4))


def test_sequence_kl_is_the_sum_of_log_ratios_over_each_response():
    """Against a row-by-row computation of Σ_t log π − log π_ref from the models' own log-probs;
    exactly 0 when the reference is the policy."""
    from hh.models.sampling import Samples
    from hh.rl.best_of import sequence_kl
    from hh.rl.logprobs import response_logprobs
    from rl_fixtures import prompts_and_responses, smoke_models, smoke_params
    cfg, policy, value = smoke_models()
    a, b = smoke_params(policy, value, seed=0)["policy"], smoke_params(policy, value, seed=3)["policy"]
    prompts, tokens, mask = prompts_and_responses()
    lengths = jnp.sum(mask, axis=1).astype(jnp.int32)
    samples = Samples(tokens=tokens, logprobs=jnp.zeros_like(mask), lengths=lengths,
                      stop_lengths=jnp.zeros_like(lengths), finished=jnp.ones_like(lengths, bool))
    kl = jax.jit(sequence_kl, static_argnames=("model_cfg", "temperature"))
    got = np.asarray(kl(a, b, prompts, samples, model_cfg=cfg, temperature=0.8))
    logp_a = np.asarray(response_logprobs(a, policy, prompts, tokens, mask, 0.8)[0], np.float64)
    logp_b = np.asarray(response_logprobs(b, policy, prompts, tokens, mask, 1.0)[0], np.float64)
    for i in range(len(got)):
        n = int(lengths[i])
        assert got[i] == pytest.approx(logp_a[i, :n].sum() - logp_b[i, :n].sum(), rel=1e-4, abs=1e-4)
    assert np.abs(got).max() > 0.1   # two different models: not trivially 0
    np.testing.assert_array_equal(np.asarray(kl(a, a, prompts, samples, model_cfg=cfg, temperature=1.0)), 0.0)
