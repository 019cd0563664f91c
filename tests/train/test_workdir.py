"""hh.train.workdir: a finished run's config, model config, tokenizer and checkpoint steps are read
as written; params restore at a step or the latest, onto the shardings asked for (an (fsdp 2,
tensor 4) mesh of the 8 fake devices), or only a subtree; a missing workdir or step is an error
naming it."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from hh.config import ConfigError
from hh.models.transformer import TransformerConfig, TransformerLM
from hh.parallel import sharding as shd
from hh.train import workdir as wd
from hh.train.checkpoint import Checkpointer


def _saved_params(workdir, step):
    """Orbax's untargeted restore of the step's saved state (an independent reference), as numpy."""
    return ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "state")["params"]


def _assert_equal(a, b):
    a, b = jax.device_get(a), jax.device_get(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _lm_abstract(workdir, mesh, rules):
    model = TransformerLM(wd.read_model_config(workdir))
    tokens = jnp.zeros((1, 8), jnp.int32)
    return shd.abstract_with_shardings(lambda rng: model.init(rng, tokens)["params"], mesh, rules)


def _mesh_and_rules(workdir, data, fsdp, tensor):
    mesh = shd.make_mesh({"data": data, "fsdp": fsdp, "tensor": tensor})
    return mesh, shd.rules_from_config(wd.read_config(workdir)["sharding"]["rules"])


def test_config_model_config_tokenizer_and_steps_are_read_as_written(pm_chain):
    lm = pm_chain["lm"]
    config = wd.read_config(lm)
    assert config == json.loads((lm / "config.json").read_text()) and config["stage"] == "lm"
    assert wd.read_model_config(lm) == TransformerConfig(**config["model"])
    assert wd.read_tokenizer(lm).vocab_size == 260   # the smoke preset's byte tokenizer
    on_disk = sorted(int(p.name) for p in (lm / "checkpoints").iterdir() if p.name.isdigit())
    assert wd.checkpoint_steps(lm) == on_disk == [10, 20]   # loop.steps 20, checkpoint_every 10
    assert wd.latest_step(lm) == 20


def test_restore_at_a_step_and_at_the_latest_onto_a_sharded_mesh(pm_chain):
    lm = pm_chain["lm"]
    mesh, rules = _mesh_and_rules(lm, 1, 2, 4)
    abstract = _lm_abstract(lm, mesh, rules)
    step, latest = wd.restore_params(lm, abstract)
    assert step == 20
    _assert_equal(latest, _saved_params(lm, 20))
    step, earlier = wd.restore_params(lm, abstract, step=10)
    assert step == 10
    _assert_equal(earlier, _saved_params(lm, 10))
    for got, want in zip(jax.tree.leaves(earlier), jax.tree.leaves(abstract)):
        assert got.sharding == want.sharding
    kernel = earlier["stack"]["layer_0"]["mlp"]["up"]["kernel"]   # [embed/fsdp, mlp/tensor]
    assert kernel.addressable_shards[0].data.shape == (kernel.shape[0] // 2, kernel.shape[1] // 4)


def test_a_subtree_is_restored_alone(pm_chain, tmp_path):
    """A PPO-shaped checkpoint ({"policy", "value"}): the policy is read without the value model."""
    lm = pm_chain["lm"]
    mesh, rules = _mesh_and_rules(lm, 8, 1, 1)
    policy = jax.tree.map(lambda x: np.asarray(x) + 1.0, _saved_params(lm, 20))
    ckpt = Checkpointer(tmp_path / "checkpoints", keep=2, every=1, async_save=False)
    ckpt.save(3, {"params": {"policy": policy, "value": {"w": np.ones((5,), np.float32)}}}, {}, {},
              force=True)
    ckpt.close()
    step, restored = wd.restore_params(tmp_path, _lm_abstract(lm, mesh, rules), subtree="policy")
    assert step == 3
    _assert_equal(restored, policy)


def test_missing_workdir_step_or_checkpoint_is_an_error_naming_it(pm_chain, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(wd.WorkdirError, match="is not an hh workdir") as error:
        wd.read_config(missing)
    assert str(missing) in str(error.value)
    # one error for both kinds of caller: config fields (init_from) and tools given a folder
    assert isinstance(error.value, ConfigError) and isinstance(error.value, FileNotFoundError)
    assert wd.checkpoint_steps(missing) == [] and not missing.exists()   # listing creates nothing

    lm = pm_chain["lm"]
    abstract = _lm_abstract(lm, *_mesh_and_rules(lm, 8, 1, 1))
    with pytest.raises(wd.WorkdirError, match=r"has no checkpoint at step 15 \(it has \[10, 20\]\)"):
        wd.restore_params(lm, abstract, step=15)

    empty = tmp_path / "empty"
    (empty / "checkpoints").mkdir(parents=True)
    shutil.copy(lm / "config.json", empty / "config.json")
    assert wd.read_config(empty)["stage"] == "lm" and wd.latest_step(empty) is None
    with pytest.raises(wd.WorkdirError, match=f"{empty} has no checkpoint$"):
        wd.restore_params(empty, abstract)


def test_a_sentencepiece_run_without_its_saved_model_is_an_error(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(wd.WorkdirError, match="trained a SentencePiece model but .* is missing"):
        wd.read_tokenizer(tmp_path, {"tokenizer": "sentencepiece", "tokenizer_vocab_size": 300})
