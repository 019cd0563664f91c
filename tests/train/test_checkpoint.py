"""Checkpoints: restore onto a different mesh (a resumed run may get another slice shape), the
data state travels with the model, and params-only restore for `init_from`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import lm as lm_config
from hh.models.transformer import TransformerLM
from hh.train import runtime
from hh.train.checkpoint import Checkpointer, ShapeMismatchError
from hh.train.optim import make_optimizer
from hh.train.state import init_state, state_shardings


def _sharded_state(mesh_shape, seed, d_head=16, abstract_only=False):
    config = lm_config.get_config("smoke")
    config.model.n_heads, config.model.d_head = 4, d_head
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = mesh_shape
    mesh, rules = runtime.mesh_and_rules(config)
    model = TransformerLM(runtime.model_config(config))
    optimizer, _ = make_optimizer(config.optimizer, 10)

    def init_params(rng):
        return model.init(rng, jnp.zeros((1, 8), jnp.int32))["params"]

    with runtime.sharding_context(mesh, rules):
        abstract, shardings = state_shardings(init_params, optimizer, mesh, rules)
        if abstract_only:
            return None, abstract
        state = init_state(init_params, optimizer, shardings, jax.random.key(seed))
    return state, abstract


def test_restore_onto_another_mesh(tmp_path):
    state, _ = _sharded_state((8, 1, 1), seed=0)
    ckpt = Checkpointer(tmp_path, keep=2, every=1)
    ckpt.save(5, state, {"next_batch": 5, "seed": 0}, {"step": 5})
    ckpt.wait()
    _, abstract = _sharded_state((1, 2, 4), seed=1)
    restored, data_state, meta = Checkpointer(tmp_path, keep=2, every=1).restore(5, abstract)
    assert data_state == {"next_batch": 5, "seed": 0} and meta == {"step": 5}
    for a, b, want in zip(jax.tree.leaves(state), jax.tree.leaves(restored), jax.tree.leaves(abstract)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert b.sharding == want.sharding
    up = restored.params["stack"]["layer_0"]["mlp"]["up"]["kernel"]
    assert up.addressable_shards[0].data.shape == (64 // 2, 256 // 4)


def test_params_only_restore(tmp_path):
    state, abstract = _sharded_state((2, 4, 1), seed=0)
    ckpt = Checkpointer(tmp_path, keep=2, every=1)
    ckpt.save(3, state, {"next_batch": 3, "seed": 0}, {"step": 3})
    ckpt.wait()
    params = Checkpointer(tmp_path, keep=2, every=1).restore_params(3, abstract.params)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_an_unfinished_checkpoint_is_not_restored(tmp_path):
    state, _ = _sharded_state((8, 1, 1), seed=0)
    ckpt = Checkpointer(tmp_path, keep=2, every=1)
    ckpt.save(1, state, {"next_batch": 1, "seed": 0}, {"step": 1})
    ckpt.wait()
    # what a SIGKILL during an async save leaves behind: a temporary directory
    (tmp_path / "2.orbax-checkpoint-tmp-123").mkdir()
    assert Checkpointer(tmp_path, keep=2, every=1).latest_step() == 1


def test_a_shape_mismatch_names_the_parameter_and_both_shapes(tmp_path):
    """Before restoring, the saved tree's metadata is compared with the target (orbax's own error
    names neither the parameter nor the config field)."""
    state, _ = _sharded_state((8, 1, 1), seed=0)
    ckpt = Checkpointer(tmp_path, keep=2, every=1)
    ckpt.save(1, state, {"next_batch": 1, "seed": 0}, {"step": 1})
    ckpt.wait()
    _, abstract = _sharded_state((8, 1, 1), seed=0, d_head=8, abstract_only=True)
    reader = Checkpointer(tmp_path, keep=2, every=1)
    expected = r"params/stack/layer_0/attention/key/kernel: saved \(64, 64\), this run needs \(64, 32\)"
    with pytest.raises(ShapeMismatchError, match=expected) as error:
        reader.restore(1, abstract)
    assert error.value.mismatches[0] == ("params/stack/layer_0/attention/key/kernel", (64, 64), (64, 32))
    with pytest.raises(ShapeMismatchError, match=expected):
        reader.restore_params(1, abstract.params)
