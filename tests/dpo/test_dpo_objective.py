"""The DPO / IPO objective against independent references: the losses and their gradients against a
float64 NumPy derivation on hand-built log-probs, sequence log-probs invariant to padding, the
update invariant to microbatching, and the bandit check that DPO on Bradley–Terry preferences
reaches the KL-regularised optimum π* ∝ π_ref·exp(r/β) (the optimum the PPO bandit test checks)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hh.data.prompt_data import left_padded
from hh.dpo.objective import dpo_loss, dpo_sums, ipo_loss, preference_objective, sequence_logprobs
from hh.train import step
from rl_fixtures import smoke_models, smoke_params

# hand-built sequence log-probs of 5 pairs: policy chosen / rejected, reference chosen / rejected
LOGP = np.array([[-12.0, -15.5, -13.0, -14.0],
                 [-30.2, -29.0, -30.0, -30.0],
                 [-4.0, -9.0, -6.5, -7.0],
                 [-50.0, -48.0, -47.0, -52.0],
                 [-8.0, -8.0, -8.0, -8.0]])


def _numpy_loss_and_grad(logp, loss, beta=0.0, eps=0.0, tau=1.0):
    """float64: per-pair loss and d(loss)/d(policy chosen, policy rejected)."""
    lw, ll, rw, rl = logp.T.astype(np.float64)
    h = (lw - rw) - (ll - rl)
    sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    if loss == "dpo":
        z = beta * h
        value = -(1 - eps) * np.log(sigmoid(z)) - eps * np.log(sigmoid(-z))
        d_h = beta * (-(1 - eps) * sigmoid(-z) + eps * sigmoid(z))
    else:
        value = (h - 1.0 / (2 * tau)) ** 2
        d_h = 2 * (h - 1.0 / (2 * tau))
    return value, np.stack([d_h, -d_h], axis=1)


@pytest.mark.parametrize("loss, options", [("dpo", dict(beta=0.1, eps=0.0)), ("dpo", dict(beta=0.5, eps=0.2)),
                                           ("ipo", dict(tau=0.1)), ("ipo", dict(tau=2.0))])
def test_losses_and_gradients_match_a_float64_derivation(loss, options):
    beta, eps, tau = options.get("beta", 0.1), options.get("eps", 0.0), options.get("tau", 1.0)
    expected, expected_grad = _numpy_loss_and_grad(LOGP, loss, beta, eps, tau)

    def per_pair(policy, reference):
        h = (policy[:, 0] - reference[:, 0]) - (policy[:, 1] - reference[:, 1])
        return preference_objective(h, loss, beta=beta, label_smoothing=eps, tau=tau)
    policy, reference = jnp.asarray(LOGP[:, :2], jnp.float32), jnp.asarray(LOGP[:, 2:], jnp.float32)
    np.testing.assert_allclose(per_pair(policy, reference), expected, rtol=1e-5, atol=1e-6)
    grad = jax.grad(lambda p: jnp.sum(per_pair(p, reference)))(policy)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-6)


def test_hand_worked_values():
    # h = 0: DPO is log 2 whatever β and ε; IPO is (1/(2τ))²
    assert float(dpo_loss(jnp.float32(0.0), 0.1, 0.3)) == pytest.approx(np.log(2.0))
    assert float(ipo_loss(jnp.float32(0.0), 0.25)) == pytest.approx(4.0)
    # a huge margin: plain DPO → 0 without overflow; smoothing ε keeps a linear penalty ε·βh
    assert float(dpo_loss(jnp.float32(1e4), 1.0, 0.0)) == 0.0
    assert float(dpo_loss(jnp.float32(1e4), 1.0, 0.1)) == pytest.approx(0.1 * 1e4, rel=1e-6)


def _pairs(seed=0, prompt_width=6, response_width=5, extra_prompt=0, extra_response=0):
    """4 pairs over vocabulary ids ≥ 5, padded to the given widths (+ extra padding)."""
    rng = np.random.default_rng(seed)
    prompt_lens, chosen_lens, rejected_lens = [3, 6, 1, 4], [5, 2, 4, 1], [1, 5, 3, 2]
    prompts = left_padded([[1, *rng.integers(5, 300, L - 1)] for L in prompt_lens], prompt_width + extra_prompt)
    batch = {"prompt_tokens": prompts["tokens"], "prompt_segment_ids": prompts["segment_ids"],
             "pair_mask": np.ones(4, np.float32)}
    for side, lens in (("chosen", chosen_lens), ("rejected", rejected_lens)):
        tokens = np.zeros((4, response_width + extra_response), np.int32)
        for i, n in enumerate(lens):
            tokens[i, :n] = rng.integers(5, 300, n)
        batch[f"{side}_tokens"] = tokens
        batch[f"{side}_mask"] = (np.arange(tokens.shape[1])[None] < np.array(lens)[:, None]).astype(np.float32)
    return batch


def test_sequence_logprobs_are_invariant_to_padding_and_to_head_chunks():
    _, policy, value = smoke_models()
    params = smoke_params(policy, value)["policy"]
    score = jax.jit(sequence_logprobs, static_argnums=1)
    tight = score(params, policy, _pairs())
    padded = score(params, policy, _pairs(extra_prompt=3, extra_response=4))
    for a, b in zip(tight, padded):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    assert np.all(np.asarray(tight[0]) < 0)
    # the chunked LM head (hh.rl.logprobs: 2 response positions at a time) gives the same sums
    chunked = jax.jit(sequence_logprobs, static_argnums=(1, 3))(params, policy, _pairs(), 2)
    for a, b in zip(tight, chunked):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_the_update_is_the_same_for_any_number_of_microbatches():
    _, policy, value = smoke_models()
    params = smoke_params(policy, value)["policy"]
    batch = _pairs()
    batch["ref_chosen_logp"] = np.array([-20.0, -10.0, -25.0, -6.0], np.float32)
    batch["ref_rejected_logp"] = np.array([-6.0, -30.0, -21.0, -12.0], np.float32)
    batch["pair_weight"] = np.array([1.0, 2.0, 1.0, 1.0], np.float32)
    terms = functools.partial(dpo_sums, model=policy, loss="dpo", beta=0.1, label_smoothing=0.1, tau=0.1)
    grads = {n: jax.jit(functools.partial(step.accumulated_gradients, terms, n_micro=n))(params, batch)
             for n in (1, 2, 4)}
    for n in (2, 4):
        np.testing.assert_allclose(grads[n][1]["loss_sum"], grads[1][1]["loss_sum"], rtol=1e-5)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-7), grads[n][0], grads[1][0])
    # the weighted objective: pair 1 counts twice, and the count is the number of real pairs
    assert float(grads[1][1]["count"]) == 4.0


# ---- the bandit: one prompt, K one-token responses ---------------------------------------------

P_REF = np.array([0.4, 0.3, 0.2, 0.1])
REWARD = np.array([1.0, 0.5, 0.0, -0.5])
BETA = 0.5


def bandit_optimum():
    p = P_REF * np.exp(REWARD / BETA)
    return p / p.sum()


def test_dpo_on_bradley_terry_preferences_reaches_the_kl_regularised_optimum():
    """Pairs of responses drawn from π_ref, labelled by a Bradley–Terry model with reward r; the
    policy (logits over K responses) trained with the library's DPO loss converges to
    π* ∝ π_ref·exp(r/β) within 0.02 total variation."""
    log_ref = jnp.log(jnp.asarray(P_REF, jnp.float32))
    reward = jnp.asarray(REWARD, jnp.float32)
    steps_, batch = 600, 1024
    optimizer = optax.adam(optax.cosine_decay_schedule(0.05, steps_, alpha=0.02))

    def loss_fn(logits, a, b, a_wins):
        log_pi = jax.nn.log_softmax(logits)
        w, l = jnp.where(a_wins, a, b), jnp.where(a_wins, b, a)
        h = (log_pi[w] - log_ref[w]) - (log_pi[l] - log_ref[l])
        return jnp.mean(dpo_loss(h, BETA, 0.0))

    @jax.jit
    def update(logits, opt_state, key):
        ka, kb, kl = jax.random.split(key, 3)
        a = jax.random.categorical(ka, log_ref, shape=(batch,))
        b = jax.random.categorical(kb, log_ref, shape=(batch,))
        a_wins = jax.random.uniform(kl, (batch,)) < jax.nn.sigmoid(reward[a] - reward[b])
        grads = jax.grad(loss_fn)(logits, a, b, a_wins)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(logits, updates), opt_state

    logits = log_ref
    opt_state = optimizer.init(logits)
    for i in range(steps_):
        logits, opt_state = update(logits, opt_state, jax.random.fold_in(jax.random.key(0), i))
    p = np.asarray(jax.nn.softmax(logits), np.float64)
    tv = 0.5 * np.abs(p - bandit_optimum()).sum()
    assert tv < 0.02, (p, bandit_optimum(), tv)
    assert 0.5 * np.abs(P_REF - bandit_optimum()).sum() > 0.3   # it had far to go
