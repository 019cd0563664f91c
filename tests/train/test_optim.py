"""Learning-rate schedules against hand-computed values; weight-decay mask."""

import ml_collections
import numpy as np
import pytest

from hh.train.optim import decay_mask, learning_rate_schedule


def _cfg(schedule, warmup=10):
    return ml_collections.ConfigDict(dict(learning_rate=1.0, schedule=schedule, warmup_steps=warmup,
                                          end_lr_factor=0.1))


def test_warmup_then_cosine():
    s = learning_rate_schedule(_cfg("cosine"), total_steps=110)
    assert float(s(0)) == 0.0
    assert float(s(5)) == pytest.approx(0.5)
    assert float(s(10)) == pytest.approx(1.0)
    # halfway through the decay: 0.1 + 0.9 * (1 + cos(pi/2)) / 2 = 0.55
    assert float(s(60)) == pytest.approx(0.55, rel=1e-5)
    assert float(s(110)) == pytest.approx(0.1, rel=1e-5)


def test_warmup_then_linear_and_constant():
    lin = learning_rate_schedule(_cfg("linear"), total_steps=110)
    assert float(lin(60)) == pytest.approx(0.55, rel=1e-5)
    assert float(lin(110)) == pytest.approx(0.1, rel=1e-5)
    const = learning_rate_schedule(_cfg("constant", warmup=0), total_steps=110)
    assert float(const(0)) == float(const(1000)) == 1.0


def test_unknown_schedule_names_the_field():
    with pytest.raises(ValueError, match="config.optimizer.schedule"):
        learning_rate_schedule(_cfg("step"), 10)


def test_decay_mask_only_matrices():
    mask = decay_mask({"kernel": np.ones((2, 3)), "bias": np.ones(3), "scale": np.ones(3)})
    assert mask == {"kernel": True, "bias": False, "scale": False}


def _adamw_cfg(frozen=""):
    from configs import common
    cfg = common.optimizer(0.1, "constant", warmup_steps=0)
    cfg.frozen = frozen
    return cfg


def _params():
    return {"trunk": {"embed": {"embedding": np.ones((4, 3), np.float32)},
                      "stack": {"layer_0": {"mlp": {"up": {"kernel": np.ones((3, 5), np.float32)}}},
                                "layer_1": {"mlp": {"up": {"kernel": np.ones((3, 5), np.float32)}}}}},
            "score_head": {"score": {"kernel": np.ones((3, 1), np.float32)}}}


def test_frozen_parameters_keep_their_values_and_do_not_shrink_the_others_clipped_step():
    import jax
    import optax
    from hh.train.optim import make_optimizer, parameter_path

    params = _params()
    # one huge gradient on a frozen leaf: were it counted, global-norm clipping would shrink the rest
    grads = jax.tree.map(lambda p: np.full_like(p, 0.01), params)
    grads["trunk"]["embed"]["embedding"] = np.full((4, 3), 1e6, np.float32)
    steps = {}
    for frozen in ("", "embed|layer_0"):
        tx, _ = make_optimizer(_adamw_cfg(frozen), total_steps=10)
        updates, _ = tx.update(grads, tx.init(params), params)
        steps[frozen] = optax.apply_updates(params, updates)
    moved = steps["embed|layer_0"]
    assert np.array_equal(moved["trunk"]["embed"]["embedding"], params["trunk"]["embed"]["embedding"])
    assert np.array_equal(moved["trunk"]["stack"]["layer_0"]["mlp"]["up"]["kernel"], np.ones((3, 5)))
    # the first AdamW step moves each unfrozen weight by lr·(sign of grad + weight decay) ≈ 0.1·1.1
    np.testing.assert_allclose(moved["trunk"]["stack"]["layer_1"]["mlp"]["up"]["kernel"], 1 - 0.1 * (1 + 0.1),
                               rtol=1e-4)
    np.testing.assert_allclose(moved["score_head"]["score"]["kernel"], 1 - 0.1 * 1.1, rtol=1e-4)
    # without freezing, the same update moves every leaf
    assert not np.array_equal(steps[""]["trunk"]["embed"]["embedding"], params["trunk"]["embed"]["embedding"])
    paths = {parameter_path(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
    assert paths == {"trunk/embed/embedding", "trunk/stack/layer_0/mlp/up/kernel",
                     "trunk/stack/layer_1/mlp/up/kernel", "score_head/score/kernel"}


def test_a_frozen_pattern_that_matches_nothing_names_the_field():
    from hh.train.optim import make_optimizer

    tx, _ = make_optimizer(_adamw_cfg("layer_9"), total_steps=10)
    with pytest.raises(ValueError, match=r"config.optimizer.frozen='layer_9' matches no parameter"):
        tx.init(_params())


def test_frozen_parameters_carry_no_optimizer_state_boxed_or_plain():
    """A frozen lower half must not cost its AdamW moments (2× its size); the sharded init sees
    boxed params (nn.Partitioned) and the update plain gradients, and both get the same labels."""
    import flax.linen as nn
    import jax
    from hh.train.optim import make_optimizer

    def state_bytes(state):
        return sum(x.size for x in jax.tree.leaves(state) if hasattr(x, "size") and x.ndim)

    params = _params()
    sizes = {k: v.size for k, v in (("embed", params["trunk"]["embed"]["embedding"]),
                                    ("layer_0", params["trunk"]["stack"]["layer_0"]["mlp"]["up"]["kernel"]))}
    full, _ = make_optimizer(_adamw_cfg(""), total_steps=10)
    part, _ = make_optimizer(_adamw_cfg("embed|layer_0"), total_steps=10)
    # two moments per trained leaf; nothing for the frozen ones
    assert state_bytes(full.init(params)) - state_bytes(part.init(params)) == 2 * sum(sizes.values())
    boxed = jax.tree.map(lambda p: nn.Partitioned(p, names=(None,) * p.ndim), params)
    plain = part.init(params)
    abstract = nn.meta.unbox(jax.eval_shape(part.init, boxed))
    assert jax.tree.structure(abstract) == jax.tree.structure(plain)
    assert state_bytes(abstract) == state_bytes(plain)
    updates, _ = part.update(jax.tree.map(np.ones_like, params), plain, params)
    assert not np.any(updates["trunk"]["embed"]["embedding"])
    assert np.all(updates["trunk"]["stack"]["layer_1"]["mlp"]["up"]["kernel"])
