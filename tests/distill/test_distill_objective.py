"""The 51-category distillation KL and the teacher's top-k + bucket extraction, against float64
NumPy, a hand-worked case, the empty-bucket edge (vocab <= k), microbatching and chunking."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hh.distill.objective import categorical_kl, distill_loss_terms, distill_token_terms
from hh.distill.teacher import top_k_with_rest
from hh.models import presets
from hh.models.transformer import TransformerLM
from hh.train.step import accumulated_gradients

TOL = dict(rtol=1e-5, atol=1e-6)


def np_log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def np_reference(student_logits, teacher_logits, k):
    """float64: (kl over top-k + rest, top-1 agreement, student mass on the teacher's top-k)."""
    log_p, log_q = np_log_softmax(teacher_logits), np_log_softmax(student_logits)
    top = np.argsort(-log_p, axis=-1, kind="stable")[..., :k]
    p_top = np.exp(np.take_along_axis(log_p, top, -1))
    q_top = np.exp(np.take_along_axis(log_q, top, -1))
    if k < log_p.shape[-1]:   # the bucket; with k >= vocab the top-k are the whole vocabulary
        p_top = np.concatenate([p_top, 1 - p_top.sum(-1, keepdims=True)], -1)
        q_top = np.concatenate([q_top, 1 - q_top.sum(-1, keepdims=True)], -1)
    p, q = p_top, q_top
    kl = np.sum(np.where(p > 0, p * (np.log(np.where(p > 0, p, 1)) - np.log(q)), 0), -1)
    agree = (log_q.argmax(-1) == top[..., 0]).astype(np.float64)
    return kl, agree, np.exp(np.take_along_axis(log_q, top, -1)).sum(-1)


def random_logits(shape, seed, scale):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32) * scale


@pytest.mark.parametrize("vocab,scale", [(120, 1.0), (300, 4.0)])
def test_kl_matches_float64_numpy(vocab, scale):
    teacher_logits = random_logits((3, 7, vocab), 0, scale)
    student_logits = random_logits((3, 7, vocab), 1, scale)
    lp, idx, rest = top_k_with_rest(jnp.asarray(teacher_logits), 50)
    kl, agree, mass = distill_token_terms(jnp.asarray(student_logits), lp, idx, rest)
    ref_kl, ref_agree, ref_mass = np_reference(student_logits, teacher_logits, 50)
    np.testing.assert_allclose(kl, ref_kl, **TOL)
    np.testing.assert_array_equal(agree, ref_agree)
    np.testing.assert_allclose(mass, ref_mass, **TOL)
    assert np.all(np.asarray(kl) > 0)


def test_hand_worked_51_category_case():
    """Teacher: p(0) = 0.5, tokens 1..49 share 0.4, tokens 50..99 share the rest 0.1; student
    uniform over 100 tokens. KL = 0.5 ln 50 + 0.4 ln(40/49) + 0.1 ln(0.1/0.5) = 1.713891."""
    p = np.concatenate([[0.5], np.full(49, 0.4 / 49), np.full(50, 0.1 / 50)])
    lp, idx, rest = top_k_with_rest(jnp.log(jnp.asarray(p, jnp.float32))[None, None], 50)
    assert sorted(np.asarray(idx[0, 0]).tolist()) == list(range(50)) and int(idx[0, 0, 0]) == 0
    np.testing.assert_allclose(np.exp(rest), 0.1, rtol=1e-5)
    kl, _, mass = distill_token_terms(jnp.zeros((1, 1, 100)), lp, idx, rest)
    np.testing.assert_allclose(kl, 1.713891373871987, rtol=1e-5)
    np.testing.assert_allclose(mass, 0.5, rtol=1e-6)


def test_hand_worked_three_category_kl():
    """p = (0.5, 0.3 | rest 0.2), q = (0.25, 0.25 | 0.5): 0.5 ln 2 + 0.3 ln 1.2 + 0.2 ln 0.4."""
    kl = categorical_kl(jnp.log(jnp.array([0.5, 0.3, 0.2])), jnp.log(jnp.array([0.25, 0.25, 0.5])))
    np.testing.assert_allclose(kl, 0.218011910943328, rtol=1e-6)


@pytest.mark.parametrize("vocab,scale", [(200, 1.0), (200, 6.0), (1000, 3.0)])
def test_top_k_and_bucket_match_numpy(vocab, scale):
    logits = random_logits((4, 5, vocab), 2, scale)
    lp, idx, rest = top_k_with_rest(jnp.asarray(logits), 50)
    log_p = np_log_softmax(logits)
    ref_idx = np.argsort(-log_p, axis=-1, kind="stable")[..., :50]
    np.testing.assert_array_equal(idx, ref_idx)
    assert idx.dtype == jnp.int32 and lp.shape == (4, 5, 50) and rest.shape == (4, 5)
    np.testing.assert_allclose(lp, np.take_along_axis(log_p, ref_idx, -1), **TOL)
    rest_ref = np.log1p(-np.exp(np.take_along_axis(log_p, ref_idx, -1)).sum(-1))
    np.testing.assert_allclose(rest, rest_ref, rtol=1e-4, atol=1e-5)
    total = np.exp(np.asarray(lp, np.float64)).sum(-1) + np.exp(np.asarray(rest, np.float64))
    np.testing.assert_allclose(total, 1.0, rtol=1e-5)


def test_bucket_of_a_confident_teacher_stays_accurate():
    """1 − Σ top-50 cancels in float32 when the top token holds almost all mass; the bucket is
    summed over the complement instead, so its log stays right where log(1 − Σ) would be -inf."""
    logits = np.zeros((1, 1, 500), np.float32)
    logits[..., 7] = 30.0
    _, _, rest = top_k_with_rest(jnp.asarray(logits), 50)
    log_p = np_log_softmax(logits)
    ref = np.log(np.exp(np.sort(log_p[0, 0])[:450]).sum())   # the 450 smallest, in float64
    np.testing.assert_allclose(rest, ref, rtol=1e-5)
    assert np.isfinite(rest).all()


def test_vocab_smaller_than_k_has_an_empty_bucket_and_no_nan():
    teacher_logits, student_logits = random_logits((2, 3, 30), 3, 2.0), random_logits((2, 3, 30), 4, 2.0)
    lp, idx, rest = top_k_with_rest(jnp.asarray(teacher_logits), 50)
    assert lp.shape == (2, 3, 30) and np.all(np.isneginf(rest))
    kl, _, mass = distill_token_terms(jnp.asarray(student_logits), lp, idx, rest)
    np.testing.assert_allclose(kl, np_reference(student_logits, teacher_logits, 30)[0], **TOL)
    np.testing.assert_allclose(mass, 1.0, rtol=1e-6)
    grad = jax.grad(lambda s: distill_token_terms(s, lp, idx, rest)[0].sum())(jnp.asarray(student_logits))
    assert np.isfinite(grad).all()
    # the full-vocabulary KL's gradient w.r.t. the student logits is q − p
    p = np.exp(np_log_softmax(teacher_logits))
    q = np.exp(np_log_softmax(student_logits))
    np.testing.assert_allclose(grad, q - p, **TOL)


def _model_and_batch(seq=16, batch=4):
    model = TransformerLM(presets.model_config("smoke", n_layers=1, vocab_size=128))
    params = jax.jit(lambda r: model.init(r, jnp.zeros((1, seq), jnp.int32)))(jax.random.key(0))["params"]
    params = jax.tree.map(lambda x: getattr(x, "value", x), params,
                          is_leaf=lambda x: hasattr(x, "value"))
    rng = np.random.default_rng(5)
    inputs = rng.integers(4, 128, (batch, seq)).astype(np.int32)
    teacher_logits = random_logits((batch, seq, model.cfg.vocab_size), 6, 3.0)
    lp, idx, rest = top_k_with_rest(jnp.asarray(teacher_logits), 50)
    mask = (np.arange(seq)[None] < np.array([16, 9, 12, 1])[:, None]).astype(np.float32)
    return model, params, {"inputs": inputs, "positions": np.tile(np.arange(seq, dtype=np.int32), (batch, 1)),
                           "segment_ids": np.ones_like(inputs), "loss_mask": mask,
                           "teacher_log_probs": lp, "teacher_indices": idx, "teacher_rest": rest}


def test_sums_and_gradients_are_exact_under_microbatching_and_chunking():
    model, params, batch = _model_and_batch()
    def grads(n_micro, loss_chunk):
        terms = functools.partial(distill_loss_terms, model=model, loss_chunk=loss_chunk)
        return jax.jit(lambda p, b: accumulated_gradients(terms, p, b, n_micro))(params, batch)

    # one compile each (this machine compiles slowly): plain vs 2 microbatches of 4-token chunks
    (grads_1, sums_1), (grads_2, sums_2) = grads(1, 0), grads(2, 4)
    assert float(sums_1["count"]) == 16 + 9 + 12 + 1
    for key in sums_1:
        np.testing.assert_allclose(sums_2[key], sums_1[key], **TOL)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), grads_2, grads_1)
