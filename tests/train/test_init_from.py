"""Params-only init from a previous stage: LM -> PMP fills the trunk (fresh zero score head),
PMP -> PM copies everything, the source's tokenizer is reused, and mismatches name the field."""

import jax
import numpy as np
import pytest

from configs import pm as pm_config
from hh.config import ConfigError
from hh.data.byte_tokenizer import ByteTokenizer
from hh.trained import LoadedPM
from hh.train import init_from
from hh.train.checkpoint import Checkpointer


def _restore_all(workdir):
    """The raw params tree of a workdir's latest checkpoint (no target: as saved)."""
    import orbax.checkpoint as ocp
    ckpt = Checkpointer(workdir / "checkpoints", keep=10, every=1, async_save=False)
    restored = ckpt.manager.restore(ckpt.latest_step(), args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore()))
    ckpt.close()
    return restored.state["params"]


def test_initial_params_from_an_lm_fill_the_trunk_and_keep_a_fresh_head(pm_chain):
    pm = LoadedPM(pm_chain["pm"])
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), pm.params)
    fresh_calls = []

    def fresh():
        fresh_calls.append(1)
        return jax.tree.map(lambda a: jax.numpy.full(a.shape, 7.0, a.dtype), pm.params)

    params = init_from.initial_params(str(pm_chain["lm"]), abstract, fresh)
    lm = _restore_all(pm_chain["lm"])
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params["trunk"], lm)
    np.testing.assert_array_equal(params["score_head"]["score"]["kernel"], 7.0)
    assert fresh_calls == [1]
    # from a PM-shaped source everything is copied and no fresh init is needed
    params = init_from.initial_params(str(pm_chain["pmp"]), abstract, fresh)
    pmp = _restore_all(pm_chain["pmp"])
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params, pmp)
    assert fresh_calls == [1]
    assert init_from.initial_params("", abstract, fresh) is not None and fresh_calls == [1, 1]


def test_pmp_started_from_the_lm_and_moved_its_head(pm_chain):
    pmp = _restore_all(pm_chain["pmp"])
    lm = _restore_all(pm_chain["lm"])
    # the head started at zero (ScalarHead) and trained; the trunk moved away from the LM's
    assert np.abs(np.asarray(pmp["score_head"]["score"]["kernel"])).max() > 0
    assert set(pmp["trunk"]) == set(lm)


def test_tokenizer_and_vocab_come_from_the_source(pm_chain, tmp_path):
    config = pm_config.get_config("smoke")
    config.init_from = str(pm_chain["pmp"])
    config.data.tokenizer = "sentencepiece"         # overridden by the source's
    init_from.resolve_from_source(config)
    assert config.data.tokenizer == "bytes"
    assert isinstance(init_from.initial_tokenizer(config, [], str(tmp_path)), ByteTokenizer)
    config.model.vocab_size = 512
    with pytest.raises(ConfigError, match=r"config\.model\.vocab_size=512"):
        init_from.resolve_from_source(config)


def test_a_saved_sentencepiece_model_is_reused_and_copied(tmp_path):
    from hh.data.tokenizer import train_sentencepiece
    source = tmp_path / "src"
    (source / "checkpoints").mkdir(parents=True)
    config = pm_config.get_config("smoke")
    config.data.tokenizer, config.model.vocab_size = "sentencepiece", 512
    (source / "config.json").write_text(config.to_json())
    trained = train_sentencepiece(["the cat sat on the mat. " * 20, "a dog ran far away. " * 20], 300)
    trained.save(source / "tokenizer")
    target = pm_config.get_config("smoke")
    target.init_from, target.model.vocab_size = str(source), 512
    init_from.resolve_from_source(target)
    got = init_from.initial_tokenizer(target, ["unused"], str(tmp_path / "dst"))
    assert got.fingerprint() == trained.fingerprint()
    assert (tmp_path / "dst" / "tokenizer" / "tokenizer.model").exists()


def test_a_source_of_another_shape_names_the_parameter_and_the_field(tmp_path):
    """init_from a checkpoint whose shapes differ: the parameter, both shapes and the model field
    (checked on the saved tree's metadata before anything is read)."""
    import json

    import flax.linen as nn
    import jax.numpy as jnp

    from configs import lm as lm_config
    from hh.models.transformer import TransformerLM
    from hh.train import runtime
    from hh.train.checkpoint import ShapeMismatchError

    source = lm_config.get_config("smoke")
    model = TransformerLM(runtime.model_config(source))
    params = nn.unbox(model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"])
    ckpt = Checkpointer(tmp_path / "checkpoints", keep=1, every=1, async_save=False)
    ckpt.save(1, {"params": params}, {}, {"step": 1})
    ckpt.close()
    (tmp_path / "config.json").write_text(json.dumps(source.to_dict()))
    target = lm_config.get_config("smoke")
    target.model.d_head = 16
    cfg = runtime.model_config(target)
    abstract = jax.eval_shape(lambda: nn.unbox(
        TransformerLM(cfg).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]))
    with pytest.raises(ShapeMismatchError) as error:
        init_from.initial_params(str(tmp_path), abstract, lambda: None, cfg)
    message = str(error.value)
    assert f"config.init_from={str(tmp_path)!r}" in message
    assert "params/stack/layer_0/attention/key/kernel: saved (64, 64), this run needs (64, 32)" in message
    assert "config.model.d_head: 32 -> 16" in message
