"""Sharding: the same params and batch give the same loss and gradients on every mesh, and large
weights really are partitioned. Runs on 8 fake CPU devices (conftest)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import lm as lm_config
from hh.data.lm_data import lm_batches
from hh.data.sources import lm_rows
from hh.lm.objective import lm_loss_terms
from hh.models.transformer import TransformerLM
from hh.parallel import sharding as shd
from hh.train import runtime
from hh.train.state import state_shardings
from hh.train.optim import make_optimizer

MESHES = [(8, 1, 1), (2, 4, 1), (1, 2, 4), (1, 1, 1)]


def _config(mesh_shape):
    config = lm_config.get_config("smoke")
    config.model.n_heads, config.model.d_head = 4, 16   # divisible by a tensor axis of 4
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = mesh_shape
    return config


@functools.lru_cache(maxsize=None)
def _reference_params_and_batch():
    config = _config((1, 1, 1))
    model = TransformerLM(runtime.model_config(config))
    rows, _, _ = lm_rows(config.data)
    batch = lm_batches(rows, 8, seed=0).batch(3)
    params = model.init(jax.random.key(1), jnp.asarray(batch["inputs"]))["params"]
    params = jax.device_get(jax.tree.map(lambda x: x.value if hasattr(x, "value") else x, params,
                                         is_leaf=lambda x: hasattr(x, "value")))
    return params, batch


def _loss_and_grads(mesh_shape):
    config = _config(mesh_shape)
    n = int(np.prod(mesh_shape))
    mesh, rules = runtime.mesh_and_rules(config, devices=jax.devices()[:n])
    model = TransformerLM(runtime.model_config(config))
    optimizer, _ = make_optimizer(config.optimizer, 10)
    params, batch = _reference_params_and_batch()

    def init_params(rng):
        return model.init(rng, jnp.zeros((1, 64), jnp.int32))["params"]

    with runtime.sharding_context(mesh, rules):
        _, shardings = state_shardings(init_params, optimizer, mesh, rules)
    params = jax.device_put(params, shardings.params)
    batch_sh = shd.batch_sharding(mesh, rules)
    global_batch = shd.make_global_batch(batch, batch_sh, 8)

    def loss_and_grads(p, b):
        (objective, sums), grads = jax.value_and_grad(
            functools.partial(lm_loss_terms, model=model, z_loss=1e-4), has_aux=True)(p, b)
        return objective / sums["count"], jax.tree.map(lambda g: g / sums["count"], grads)

    step = runtime.compile_step(loss_and_grads, mesh, rules, (shardings.params, batch_sh),
                                (runtime.replicated(mesh), shardings.params))
    loss, grads = step(params, global_batch)
    return loss, grads, shardings.params


@pytest.mark.parametrize("mesh_shape", MESHES[:-1])
def test_loss_and_gradients_match_single_device(mesh_shape):
    ref_loss, ref_grads, _ = _loss_and_grads((1, 1, 1))
    loss, grads, _ = _loss_and_grads(mesh_shape)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-6)
    flat_ref = jax.tree_util.tree_leaves_with_path(jax.device_get(ref_grads))
    flat = jax.tree_util.tree_leaves(jax.device_get(grads))
    assert len(flat) == len(flat_ref)
    for (path, ref), got in zip(flat_ref, flat):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))
    # the gradients are not trivially zero (else equality would prove nothing)
    assert max(float(np.abs(g).max()) for _, g in flat_ref) > 1e-3


def test_weights_are_partitioned_on_fsdp_and_tensor():
    _, grads, shardings = _loss_and_grads((1, 2, 4))
    up = grads["stack"]["layer_0"]["mlp"]["up"]["kernel"]          # [embed 64, mlp 256]
    assert shardings["stack"]["layer_0"]["mlp"]["up"]["kernel"].spec == jax.sharding.PartitionSpec(
        "fsdp", "tensor")
    assert up.addressable_shards[0].data.shape == (64 // 2, 256 // 4)
    embedding = grads["embed"]["embedding"]                         # [vocab 384, embed 64]
    assert embedding.addressable_shards[0].data.shape == (384 // 4, 64 // 2)


def test_assert_partitioned_catches_replicated_weights():
    config = _config((1, 2, 4))
    mesh, _ = runtime.mesh_and_rules(config)
    abstract = {"w": jax.ShapeDtypeStruct((512, 512), jnp.float32)}
    replicated = {"w": runtime.replicated(mesh)}
    with pytest.raises(AssertionError, match=r"\['w'\].*fully replicated"):
        shd.assert_partitioned(replicated, abstract, 2**16, mesh)


def test_resolve_mesh_shape():
    assert shd.resolve_mesh_shape({"data": -1, "fsdp": 2, "tensor": 1}, 8) == (4, 2, 1)
    assert shd.resolve_mesh_shape({"data": 1, "fsdp": 1, "tensor": 1}, 1) == (1, 1, 1)
    with pytest.raises(ValueError, match="at most one axis may be -1"):
        shd.resolve_mesh_shape({"data": -1, "fsdp": -1}, 8)
    with pytest.raises(ValueError, match="needs 4 devices, but 8"):
        shd.resolve_mesh_shape({"data": 2, "fsdp": 2, "tensor": 1}, 8)
    with pytest.raises(ValueError, match="unknown axes"):
        shd.resolve_mesh_shape({"model": 8}, 8)


def test_rules_map_activations_and_weights_differently():
    rules = shd.rules_from_config(lm_config.get_config("smoke").sharding.rules)
    import flax.linen as nn
    P = jax.sharding.PartitionSpec
    assert nn.logical_to_mesh_axes(("batch", "length", "embed"), rules) == P(("data", "fsdp"), None, None)
    assert nn.logical_to_mesh_axes(("embed", "mlp"), rules) == P("fsdp", "tensor")
    assert nn.logical_to_mesh_axes(("layers", "embed", "heads"), rules) == P(None, "fsdp", "tensor")


def test_global_batch_rows_of_a_single_process():
    config = _config((2, 4, 1))
    mesh, rules = runtime.mesh_and_rules(config)
    sharding = shd.batch_sharding(mesh, rules)
    assert shd.process_row_range(sharding, 16) == (0, 16)
    local = {"inputs": np.arange(32).reshape(16, 2)}
    glob = shd.make_global_batch(local, sharding, 16)
    np.testing.assert_array_equal(np.asarray(glob["inputs"]), local["inputs"])
    assert glob["inputs"].addressable_shards[0].data.shape == (2, 2)


def test_row_sharding_splits_rows_and_keeps_other_dims_whole():
    config = _config((2, 4, 1))
    mesh, rules = runtime.mesh_and_rules(config)
    batch_sh = shd.batch_sharding(mesh, rules)
    P = jax.sharding.PartitionSpec
    assert shd.row_sharding(batch_sh, 3).spec == P(("data", "fsdp"), None, None)
    assert shd.row_sharding(batch_sh, 1).spec == P(("data", "fsdp"))
    assert shd.row_sharding(batch_sh, 0).spec == P()           # a scalar: replicated
    tree = {"tokens": np.zeros((16, 5), np.int32), "reward": jax.ShapeDtypeStruct((16,), jnp.float32)}
    shardings = shd.row_shardings(batch_sh, tree)
    assert shardings["tokens"] == shd.row_sharding(batch_sh, 2)
    assert shardings["reward"].shard_shape((16,)) == (2,)
    assert shardings["tokens"].shard_shape((16, 5)) == (2, 5)


def test_a_frozen_lower_half_has_no_optimizer_state_on_an_fsdp_mesh():
    """Frozen parameters carry no AdamW moments, and the sharded state layout (optax keeps an empty
    box where a moment would be) still lines up with the state: the moments of the trained
    parameters are sharded like the parameters, and a fresh state initialises into the layout."""
    from hh.train.state import init_state

    config = _config((1, 4, 1))
    config.optimizer.frozen = r"^(embed|stack/layer_0)/"     # an LM's lower half (a PM's is under trunk/)
    mesh, rules = runtime.mesh_and_rules(config, devices=jax.devices()[:4])
    model = TransformerLM(runtime.model_config(config))

    def init_params(rng):
        return model.init(rng, jnp.zeros((1, 64), jnp.int32))["params"]

    sizes = {}
    for frozen in ("", config.optimizer.frozen):
        config.optimizer.frozen = frozen
        optimizer, _ = make_optimizer(config.optimizer, 10)
        with runtime.sharding_context(mesh, rules):
            abstract, shardings = state_shardings(init_params, optimizer, mesh, rules)
            state = init_state(init_params, optimizer, shardings, jax.random.key(0))
        assert jax.tree.structure(state) == jax.tree.structure(abstract)
        sizes[frozen] = sum(x.size for x in jax.tree.leaves(state.opt_state))
        up = state.params["stack"]["layer_1"]["mlp"]["up"]["kernel"]
        moments = [x for path, x in jax.tree_util.tree_leaves_with_path(state.opt_state)
                   if "layer_1']['mlp']['up']['kernel" in jax.tree_util.keystr(path)]
        assert len(moments) == 2 and all(m.sharding == up.sharding for m in moments)
    trunk_lower = sum(x.size for x in jax.tree.leaves((state.params["embed"], state.params["stack"]["layer_0"])))
    assert sizes[""] - sizes[config.optimizer.frozen] == 2 * trunk_lower
