"""hh.trained: params restored from LM and PPO-like workdirs equal what was saved."""

import json
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from hh.trained import LoadedLM
from hh.train.checkpoint import Checkpointer


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def _assert_same(a, b):
    assert jax.tree.structure(jax.device_get(a)) == jax.tree.structure(jax.device_get(b))
    for x, y in zip(_leaves(a), _leaves(b)):
        np.testing.assert_array_equal(x, y)


def test_lm_workdir_params_equal_the_raw_checkpoint(pm_chain):
    lm = LoadedLM(pm_chain["lm"])
    assert lm.stage == "lm" and lm.seq_len == 64 and lm.tokenizer.vocab_size == 260
    # Independent reference: orbax's untargeted restore of the saved state item, as numpy.
    raw = ocp.StandardCheckpointer().restore(lm.workdir / "checkpoints" / str(lm.step) / "state")
    _assert_same(lm.params, raw["params"])
    assert all(x.sharding.mesh.devices.size == jax.device_count() for x in jax.tree.leaves(lm.params))


def test_ppo_checkpoint_restores_the_policy(pm_chain, tmp_path):
    lm = LoadedLM(pm_chain["lm"])
    workdir = tmp_path / "ppo"
    workdir.mkdir()
    config = json.loads((lm.workdir / "config.json").read_text())
    config["stage"] = "ppo"
    (workdir / "config.json").write_text(json.dumps(config))
    value = {"head": {"kernel": np.full((4, 1), 3.0, np.float32)}}
    policy = jax.tree.map(lambda x: np.asarray(x) + 1.0, jax.device_get(lm.params))   # not the LM's
    ckpt = Checkpointer(workdir / "checkpoints", keep=2, every=1, async_save=False)
    ckpt.save(7, {"step": np.int32(7), "params": {"policy": policy, "value": value}}, {}, {}, force=True)
    ckpt.close()
    loaded = LoadedLM(workdir)
    assert loaded.step == 7
    _assert_same(loaded.params, policy)


def test_non_lm_stage_is_refused(pm_chain, tmp_path):
    with pytest.raises(ValueError, match="'pm' run"):
        LoadedLM(pm_chain["pm"])
    copy = tmp_path / "empty"
    copy.mkdir()
    shutil.copy(pm_chain["lm"] / "config.json", copy / "config.json")
    (copy / "checkpoints").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        LoadedLM(copy)
