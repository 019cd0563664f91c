"""Resuming a workdir with another config: refused before anything is rewritten (naming the changed
fields), or with `resume_with_changes` continued and recorded; operational fields may change; a
changed parameter shape names the parameter, both shapes and the config field behind them."""

import json
import shutil

import ml_collections
import numpy as np
import pytest

from configs import lm as lm_config
from hh import main
from hh.config import ConfigError
from hh.train.checkpoint import Checkpointer
from hh.train.metrics import read_metrics
from hh.train.provenance import config_hash

STEPS = 4


def _smoke(steps=STEPS):
    config = lm_config.get_config("smoke")
    config.loop.steps, config.loop.checkpoint_every, config.loop.log_every = steps, 2, 2
    config.loop.eval_every = 0
    config.optimizer.warmup_steps = 1
    config.data.synthetic_documents = 400
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A smoke LM run of STEPS steps, trained once; tests work on copies of it."""
    workdir = tmp_path_factory.mktemp("resume_policy") / "run"
    main.run(_smoke(), str(workdir))
    return workdir


@pytest.fixture
def run_copy(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def _records(workdir):
    return {name: (workdir / name).read_bytes() for name in ("config.json", "provenance.json")}


def test_a_changed_learning_rate_is_refused_before_anything_is_rewritten(run_copy):
    before = _records(run_copy)
    config = _smoke(steps=STEPS + 2)
    config.optimizer.learning_rate = 0.002
    with pytest.raises(ConfigError) as error:
        main.run(config, str(run_copy))
    message = str(error.value)
    assert "config.optimizer.learning_rate: 0.003 -> 0.002" in message
    assert "config.loop.steps: 4 -> 6" in message
    assert "resume_with_changes" in message
    assert _records(run_copy) == before
    assert Checkpointer(run_copy / "checkpoints", keep=3, every=1).latest_step() == STEPS


def test_resume_with_changes_continues_and_records_both_configs(run_copy):
    original = json.loads((run_copy / "config.json").read_text())
    config = _smoke(steps=STEPS + 2)
    config.optimizer.learning_rate = 0.002
    config.resume_with_changes = True
    result = main.run(config, str(run_copy))
    assert result.step == STEPS + 2
    rows = sorted(r["step"] for r in read_metrics(run_copy) if "train/loss" in r)
    assert rows == list(range(1, STEPS + 3))            # resumed, not restarted
    provenance = json.loads((run_copy / "provenance.json").read_text())
    [change] = provenance["config_changes"]
    assert change["step"] == STEPS
    assert change["previous_config_hash"] == config_hash(ml_collections.ConfigDict(original))
    assert change["new_config_hash"] == provenance["config_hash"] == config_hash(config)
    assert change["changed"] == {"optimizer.learning_rate": [0.003, 0.002], "loop.steps": [4, 6]}
    assert json.loads((run_copy / f"config.step-{STEPS}.json").read_text()) == original
    assert json.loads((run_copy / "config.json").read_text())["optimizer"]["learning_rate"] == 0.002
    # the change travels with the checkpoint: resuming again with the new config keeps the record
    config.resume_with_changes = False
    main.run(config, str(run_copy))
    assert json.loads((run_copy / "provenance.json").read_text())["config_changes"] == [change]


def test_operational_fields_may_change_on_resume(run_copy):
    config = _smoke()
    config.loop.log_every, config.loop.checkpoint_every, config.loop.keep_checkpoints = 1, 1, 5
    config.loop.eval_every, config.loop.async_checkpoints = 3, False
    result = main.run(config, str(run_copy))
    assert result.step == STEPS
    assert "config_changes" not in json.loads((run_copy / "provenance.json").read_text())


def test_a_changed_shape_names_the_parameter_and_the_field(run_copy):
    config = _smoke(steps=STEPS + 2)
    config.model.d_head = 16
    config.resume_with_changes = True
    with pytest.raises(ConfigError) as error:
        main.run(config, str(run_copy))
    message = str(error.value)
    assert "params/stack/layer_0/attention/key/kernel" in message
    assert "(64, 64)" in message and "(64, 32)" in message
    assert "config.model.d_head: 32 -> 16" in message
    # nothing of the refused attempt survives into the next resume's record
    main.run(_smoke(), str(run_copy))
    assert "config_changes" not in json.loads((run_copy / "provenance.json").read_text())


def test_an_older_checkpoint_falls_back_to_the_workdirs_config_json(tmp_path):
    """Checkpoints written before the config was stored in `meta` carry only its hash."""
    from hh.train import resume
    config = _smoke()
    (tmp_path / "config.json").write_text(config.to_json())
    ckpt = Checkpointer(tmp_path / "checkpoints", keep=3, every=1, async_save=False)
    ckpt.save(2, {"x": np.zeros(2)}, {}, {"config_hash": config_hash(config), "step": 2})
    ckpt.close()
    assert resume.check_resume(config, tmp_path) is None
    changed = _smoke()
    changed.train.z_loss = 1e-4
    with pytest.raises(ConfigError, match=r"config.train.z_loss: 0.0 -> 0.0001"):
        resume.check_resume(changed, tmp_path)


def test_a_field_added_since_the_checkpoint_is_no_change_at_its_old_behaviour():
    from hh.train.resume import changed_fields

    old = {"optimizer": {"learning_rate": 1e-3}}
    assert changed_fields(old, {"optimizer": {"learning_rate": 1e-3, "frozen": ""}}) == {}
    # a value that computes something else is still a change
    assert changed_fields(old, {"optimizer": {"learning_rate": 1e-3, "frozen": "embed"}}) == {
        "optimizer.frozen": ["<absent>", "embed"]}
