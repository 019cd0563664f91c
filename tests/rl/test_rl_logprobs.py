"""Log-probs and values of given tokens: padding-invariant, read at the right positions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hh.data.special_tokens import BOS_ID, EOS_ID, PAD_ID
from hh.rl.logprobs import response_logprobs, response_values, sequence_inputs
from hh.train.losses import token_log_probs
from rl_fixtures import prompts_and_responses, smoke_models, smoke_params


def _unpadded_reference(params, policy, value, prompt_ids, response_ids, temperature):
    """One row with no padding at all, scored directly from the model's full outputs."""
    seq = jnp.asarray([prompt_ids + response_ids], jnp.int32)
    logits = jax.jit(policy.apply)({"params": params["policy"]}, seq)["logits"][0] / temperature
    p = len(prompt_ids)
    logp = token_log_probs(logits[p - 1:-1][None], jnp.asarray([response_ids]))[0]
    values = jax.jit(value.apply)({"params": params["value"]}, seq, jnp.arange(seq.shape[1])[None],
                                  jnp.ones_like(seq))[0]
    return logp, values[p - 1:-1]


@pytest.mark.slow   # ~15-25 s of compiles: run by make test and CI, not test-fast
def test_padding_invariant_and_matches_unpadded_rows():
    _, policy, value = smoke_models()
    params = smoke_params(policy, value)
    prompts, tokens, mask = prompts_and_responses()
    logp, entropy = jax.jit(response_logprobs, static_argnums=(1, 5))(
        params["policy"], policy, prompts, tokens, mask, 0.7)
    values = jax.jit(response_values, static_argnums=1)(params["value"], value, prompts, tokens, mask)
    for i in (0, 2, 3):
        p_ids = [int(t) for t, s in zip(prompts["tokens"][i], prompts["segment_ids"][i]) if s]
        n = int(mask[i].sum())
        ref_logp, ref_values = _unpadded_reference(params, policy, value, p_ids,
                                                   [int(t) for t in tokens[i, :n]], 0.7)
        np.testing.assert_allclose(logp[i, :n], ref_logp, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(values[i, :n], ref_values, rtol=1e-5, atol=1e-5)
        assert np.all(np.asarray(logp[i, n:]) == 0) and np.all(np.asarray(entropy[i, n:]) == 0)
    assert float(jnp.min(jnp.where(mask > 0, entropy, 1.0))) > 0


def test_more_padding_changes_nothing():
    _, policy, value = smoke_models()
    params = smoke_params(policy, value)
    prompts, tokens, mask = prompts_and_responses()
    wide = {k: jnp.pad(v, ((0, 0), (3, 0))) for k, v in prompts.items()}   # 3 more left pads
    longer, longer_mask = jnp.pad(tokens, ((0, 0), (0, 2))), jnp.pad(mask, ((0, 0), (0, 2)))
    logprobs = jax.jit(response_logprobs, static_argnums=(1, 5))
    a, _ = logprobs(params["policy"], policy, prompts, tokens, mask, 1.0)
    b, _ = logprobs(params["policy"], policy, wide, longer, longer_mask, 1.0)
    np.testing.assert_allclose(a, b[:, :5], rtol=1e-5, atol=1e-6)


def test_positions_are_the_exclusive_cumsum_and_pad_is_not_eos():
    prompts, tokens, mask = prompts_and_responses()
    inputs = sequence_inputs(prompts, tokens, mask)
    real = np.asarray(inputs["segment_ids"])
    expected = np.maximum(np.cumsum(real, axis=1) - 1, 0)
    np.testing.assert_array_equal(inputs["positions"], expected)
    # a response's padding is not a token of the response: EOS (id 2) would be real
    eos_tokens = jnp.where(mask > 0, tokens, 2)
    assert int(sequence_inputs(prompts, eos_tokens, mask)["segment_ids"].sum()) == int(real.sum())
    assert PAD_ID != EOS_ID and BOS_ID != EOS_ID


@pytest.mark.parametrize("chunk", [3])
def test_chunked_head_gives_the_unchunked_logprobs_entropies_and_gradients(chunk):
    """chunk > 0 never forms the [b, N, vocab] logits; values and gradients are the same (chunk
    3 does not divide the 5 response positions: the padded tail is cut)."""
    _, policy, value = smoke_models()
    params = smoke_params(policy, value)["policy"]
    prompts, tokens, mask = prompts_and_responses()
    weights = jnp.asarray(np.random.default_rng(0).standard_normal(tokens.shape), jnp.float32)

    def objective(p, c):
        logp, entropy = response_logprobs(p, policy, prompts, tokens, mask, 0.7, c)
        return jnp.sum(weights * logp) + 0.1 * jnp.sum(entropy), (logp, entropy)

    run = jax.jit(jax.value_and_grad(objective, has_aux=True), static_argnums=1)
    (_, (logp, entropy)), grads = run(params, 0)
    (_, (logp_c, entropy_c)), grads_c = run(params, chunk)
    np.testing.assert_allclose(logp_c, logp, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(entropy_c, entropy, rtol=1e-5, atol=1e-6)
    for (path, g), g_c in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree_util.tree_leaves(grads_c)):
        np.testing.assert_allclose(g_c, g, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))
    assert float(jnp.abs(grads["lm_head"]["kernel"]).max()) > 0
