"""The generic train step: microbatching is exact, metrics are sums/counts, the update is AdamW's."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import lm as lm_config
from hh.data.lm_data import lm_batches
from hh.data.sources import lm_rows
from hh.lm.objective import lm_loss_terms
from hh.models.transformer import TransformerLM
from hh.train import runtime, step
from hh.train.optim import make_optimizer
from hh.train.state import TrainState


@functools.lru_cache(maxsize=None)
def _setup():
    config = lm_config.get_config("smoke")
    model = TransformerLM(runtime.model_config(config))
    rows, _, _ = lm_rows(config.data)
    batch = {k: jnp.asarray(v) for k, v in lm_batches(rows, 8, seed=0).batch(0).items()}
    batch["loss_mask"] = batch["loss_mask"].at[1, 10:].set(0.0)   # uneven token counts per row
    params = jax.tree.map(lambda x: x.value, model.init(jax.random.key(0), batch["inputs"])["params"],
                          is_leaf=lambda x: hasattr(x, "value"))
    return config, model, params, batch


@pytest.mark.parametrize("n_micro", [2, pytest.param(4, marks=pytest.mark.slow), 8])
def test_microbatched_gradients_equal_full_batch(n_micro):
    _, model, params, batch = _setup()
    terms = functools.partial(lm_loss_terms, model=model, z_loss=1e-3)
    full, full_sums = jax.jit(step.accumulated_gradients, static_argnums=(0, 3))(terms, params, batch, 1)
    micro, micro_sums = jax.jit(step.accumulated_gradients, static_argnums=(0, 3))(terms, params, batch, n_micro)
    np.testing.assert_allclose(micro_sums["count"], full_sums["count"])
    np.testing.assert_allclose(micro_sums["loss_sum"], full_sums["loss_sum"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(micro), jax.tree.leaves(full)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_gradient_is_the_token_mean_of_the_objective():
    _, model, params, batch = _setup()
    terms = functools.partial(lm_loss_terms, model=model, z_loss=0.0)
    grads, sums = step.accumulated_gradients(terms, params, batch, 1)

    def mean_loss(p):
        objective, s = terms(p, batch)
        return objective / s["count"]
    ref = jax.grad(mean_loss)(params)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_means_from_sums():
    out = step.means_from_sums({"loss_sum": jnp.asarray(6.0), "accuracy_sum": jnp.asarray(3.0),
                                "count": jnp.asarray(4.0)})
    assert float(out["loss"]) == 1.5 and float(out["accuracy"]) == 0.75 and float(out["count"]) == 4


def test_means_from_sums_on_the_host():
    """Host summaries pass Python floats: float64 means, no device round trip, count 0 safe."""
    out = step.means_from_sums({"kl_sum": float(np.float32(0.3)), "count": 3.0})
    assert out == {"kl": float(np.float32(0.3)) / 3.0, "count": 3.0}
    assert isinstance(out["kl"], float) and not isinstance(out["kl"], jax.Array)
    assert step.means_from_sums({"loss_sum": 0.0, "count": 0.0}) == {"loss": 0.0, "count": 0.0}


def test_one_step_equals_hand_written_adamw():
    """A single update against optax-free AdamW arithmetic in float64."""
    _, model, params, batch = _setup()
    opt_cfg = ml_collections.ConfigDict(dict(
        learning_rate=1e-2, schedule="constant", warmup_steps=0, end_lr_factor=1.0,
        b1=0.9, b2=0.95, eps=1e-3, weight_decay=0.1, clip_norm=0.0))
    # eps=1e-3 keeps g/(|g|+eps) smooth, so float32 gradient noise on tiny entries cannot flip it
    optimizer, schedule = make_optimizer(opt_cfg, total_steps=10)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))
    terms = functools.partial(lm_loss_terms, model=model, z_loss=0.0)
    new_state, metrics = jax.jit(functools.partial(
        step.train_step, loss_terms=terms, optimizer=optimizer, schedule=schedule))(state, batch)
    grads, _ = step.accumulated_gradients(terms, params, batch, 1)
    for p, g, new in zip(jax.tree.leaves(params), jax.tree.leaves(grads), jax.tree.leaves(new_state.params)):
        p, g = np.float64(p), np.float64(g)
        m_hat, v_hat = g, g * g                  # bias-corrected first step: m/(1-b1) = g
        update = m_hat / (np.sqrt(v_hat) + 1e-3)
        if p.ndim >= 2:
            update = update + 0.1 * p            # decoupled weight decay on matrices only
        np.testing.assert_allclose(new, p - 1e-2 * update, rtol=1e-4, atol=1e-6)
    assert int(new_state.step) == 1
    assert float(metrics["learning_rate"]) == pytest.approx(1e-2)
    assert float(metrics["grad_norm"]) > 0


def test_chunked_lm_head_gives_the_same_objective_and_gradients():
    _, model, params, batch = _setup()
    dense = functools.partial(lm_loss_terms, model=model, z_loss=1e-3)
    chunked = functools.partial(lm_loss_terms, model=model, z_loss=1e-3, loss_chunk=16)
    (g_dense, s_dense), (g_chunk, s_chunk) = (
        jax.jit(step.accumulated_gradients, static_argnums=(0, 3))(f, params, batch, 1)
        for f in (dense, chunked))
    for key in ("loss_sum", "accuracy_sum", "z_loss_sum", "count"):
        np.testing.assert_allclose(s_chunk[key], s_dense[key], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_chunk), jax.tree.leaves(g_dense)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_frozen_lower_half_gets_no_backward_and_the_same_update_for_the_rest():
    """stop_frozen_gradients: the trained params move exactly as when only the optimizer freezes
    (frozen gradients computed, then dropped), the frozen ones not at all, and the compiled step
    does less work: no weight gradients below the middle and no backward under the lowest
    trained layer."""
    config, model, params, batch = _setup()
    frozen = r"^(embed|stack/layer_0)/"
    opt_cfg = ml_collections.ConfigDict({**config.optimizer.to_dict(), "frozen": frozen, "warmup_steps": 0})
    optimizer, schedule = make_optimizer(opt_cfg, total_steps=10)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))
    terms = functools.partial(lm_loss_terms, model=model, z_loss=0.0)

    def compiled(pattern):
        fn = functools.partial(step.train_step, loss_terms=terms, optimizer=optimizer, schedule=schedule,
                               frozen=pattern)
        return jax.jit(fn).lower(state, batch).compile()

    skipping, computing = compiled(frozen), compiled("")   # the optimizer freezes in both
    new, _ = skipping(state, batch)
    reference, _ = computing(state, batch)
    for (path, a), b, p in zip(jax.tree_util.tree_leaves_with_path(new.params), jax.tree.leaves(reference.params),
                               jax.tree.leaves(params)):
        # AdamW's first step is g/|g|-like: float32 reordering of a tiny gradient moves it by ~lr·1e-3
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=jax.tree_util.keystr(path))
        if "layer_0" in jax.tree_util.keystr(path) or "embed" in jax.tree_util.keystr(path):
            np.testing.assert_array_equal(a, p)
    flops = [c.cost_analysis()["flops"] for c in (skipping, computing)]
    assert flops[0] < 0.85 * flops[1], flops
