"""The PM objective against hand-computed values and a float64 NumPy reference; microbatching and
the chunked LM head leave it unchanged."""

import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hh.models.heads import PreferenceModel, init_pm_params
from hh.models.transformer import TransformerConfig
from hh.pm.objective import pm_loss_terms, pm_sums, pm_summary, preference_loss
from hh.train import step
from hh.parallel.sharding import strip_boxes

TOL = dict(rtol=1e-5, atol=1e-6)


def test_preference_loss_hand_values():
    # softplus(r_rej − r_cho): ln(1 + e^-1), ln 2, ln(1 + e^-3), ln(1 + e^2)
    got = preference_loss(jnp.array([1.0, 0.0, 2.0, -1.0]), jnp.array([0.0, 0.0, -1.0, 1.0]))
    np.testing.assert_allclose(got, [0.31326169, 0.69314718, 0.04858735, 2.12692801], **TOL)


class _FixedModel:
    """Stands in for PreferenceModel: returns given scores and hidden states (2·batch rows)."""

    def __init__(self, scores, hidden):
        self.scores, self.hidden = scores, hidden
        self.cfg = types.SimpleNamespace(tie_embeddings=False)

    def apply(self, variables, tokens, positions, segment_ids, compute_logits=False):
        return {"score": self.scores, "final_hidden": self.hidden}


def _reference(chosen, rejected, hidden_c, kernel, targets, mask, pairs, weights, lam, mu):
    """float64: λ·Σ w·softplus(r_r − r_c) + μ·Σ per-pair mean CE over the chosen loss mask."""
    pref = np.log1p(np.exp(rejected - chosen))
    logits = hidden_c @ kernel
    log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    ce = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    lm = (ce * mask).sum(1) / mask.sum(1)
    return lam * np.sum(pairs * weights * pref) + mu * np.sum(pairs * lm), pref, lm


def test_pm_sums_match_a_numpy_reference():
    rng = np.random.default_rng(0)
    b, length, d, vocab = 4, 6, 8, 11
    scores = rng.normal(size=2 * b).astype(np.float32)
    hidden = rng.normal(size=(2 * b, length, d)).astype(np.float32)
    kernel = rng.normal(size=(d, vocab)).astype(np.float32)
    targets = rng.integers(0, vocab, size=(b, length)).astype(np.int32)
    mask = (rng.random((b, length)) < 0.7).astype(np.float32)
    mask[:, 0] = 1.0
    pairs = np.array([1, 1, 1, 0], np.float32)            # the last pair is eval padding
    weights = np.array([1.0, 2.0, 1.0, 5.0], np.float32)  # per-tranche λ on the second pair
    batch = {"chosen_tokens": np.zeros((b, length), np.int32), "rejected_tokens": np.zeros((b, length), np.int32),
             "chosen_positions": 0 * targets, "rejected_positions": 0 * targets,
             "chosen_segment_ids": 0 * targets, "rejected_segment_ids": 0 * targets,
             "chosen_targets": targets, "chosen_loss_mask": mask, "pair_mask": pairs, "pair_weight": weights}
    model = _FixedModel(jnp.asarray(scores), jnp.asarray(hidden))
    params = {"trunk": {"lm_head": {"kernel": jnp.asarray(kernel)}}}
    objective, sums = pm_sums(model, params, batch, pm_weight=0.7, lm_weight=0.3)
    c, r = scores[:b].astype(np.float64), scores[b:].astype(np.float64)
    want, pref, lm = _reference(c, r, hidden[:b].astype(np.float64), kernel.astype(np.float64),
                                targets, mask, pairs, weights, 0.7, 0.3)
    np.testing.assert_allclose(objective, want, **TOL)
    np.testing.assert_allclose(sums["loss_sum"], want, **TOL)
    np.testing.assert_allclose(sums["count"], 3.0)
    np.testing.assert_allclose(sums["preference_loss_sum"], np.sum(pairs * pref), **TOL)
    np.testing.assert_allclose(sums["lm_loss_sum"], np.sum(pairs * lm), **TOL)
    np.testing.assert_allclose(sums["accuracy_sum"], np.sum(pairs * (c > r)), **TOL)
    np.testing.assert_allclose(sums["margin_sum"], np.sum(pairs * (c - r)), **TOL)
    summary = pm_summary(jax.device_get(sums))
    both = np.concatenate([c[:3], r[:3]])
    np.testing.assert_allclose(summary["score"], both.mean(), **TOL)
    np.testing.assert_allclose(summary["score_std"], both.std(), rtol=1e-4, atol=1e-5)
    assert summary["pairs"] == 3.0


def test_ties_count_half():
    model = _FixedModel(jnp.zeros(4), jnp.zeros((4, 3, 2)))
    batch = {f"{s}_{k}": np.zeros((2, 3), np.int32) for s in ("chosen", "rejected")
             for k in ("tokens", "positions", "segment_ids")}
    batch["pair_mask"] = np.ones(2, np.float32)
    _, sums = pm_sums(model, {}, batch, pm_weight=1.0, lm_weight=0.0)
    np.testing.assert_allclose(sums["accuracy_sum"], 1.0)
    np.testing.assert_allclose(sums["loss_sum"], 2 * np.log(2), **TOL)


def _real_setup():
    cfg = TransformerConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, d_head=8, d_ff=64, max_len=16)
    model = PreferenceModel(cfg, eoc_id=3)
    params = strip_boxes(init_pm_params(model, jax.random.key(1), 8))
    params["score_head"]["score"]["kernel"] = 0.1 * jax.random.normal(jax.random.key(2), (16, 1))
    rng = np.random.default_rng(3)
    batch = {}
    for side in ("chosen", "rejected"):
        lengths = rng.integers(3, 9, size=8)
        tokens = rng.integers(4, 32, size=(8, 8)).astype(np.int32)
        real = np.arange(8)[None] < lengths[:, None]
        tokens = np.where(real, tokens, 0)
        tokens[np.arange(8), lengths - 1] = 3
        batch[f"{side}_tokens"] = tokens
        batch[f"{side}_positions"] = np.where(real, np.arange(8)[None], 0).astype(np.int32)
        batch[f"{side}_segment_ids"] = real.astype(np.int32)
        batch[f"{side}_targets"] = np.concatenate([tokens[:, 1:], np.zeros((8, 1), np.int32)], 1)
        batch[f"{side}_loss_mask"] = (np.arange(8)[None] < lengths[:, None] - 2).astype(np.float32)
    batch["pair_mask"] = np.ones(8, np.float32)
    batch["pair_weight"] = np.array([1, 2, 1, 2, 1, 2, 1, 2], np.float32)
    return model, params, batch


@pytest.mark.parametrize("n_micro", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_microbatched_pm_gradients_equal_full_batch(n_micro):
    model, params, batch = _real_setup()
    terms = functools.partial(pm_loss_terms, model=model, pm_weight=1.0, lm_weight=1.0)
    grads = jax.jit(step.accumulated_gradients, static_argnums=(0, 3))
    full, full_sums = grads(terms, params, batch, 1)
    micro, micro_sums = grads(terms, params, batch, n_micro)
    np.testing.assert_allclose(micro_sums["loss_sum"], full_sums["loss_sum"], **TOL)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), micro, full)


@pytest.mark.slow
def test_chunked_lm_head_gives_the_same_objective_and_gradients():
    model, params, batch = _real_setup()
    plain = jax.value_and_grad(functools.partial(pm_loss_terms, model=model, pm_weight=1.0,
                                                 lm_weight=1.0), has_aux=True)(params, batch)
    chunked = jax.value_and_grad(functools.partial(pm_loss_terms, model=model, pm_weight=1.0,
                                                   lm_weight=1.0, loss_chunk=4), has_aux=True)(params, batch)
    np.testing.assert_allclose(chunked[0][0], plain[0][0], **TOL)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), chunked[1], plain[1])
