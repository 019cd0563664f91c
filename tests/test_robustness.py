"""The robustness study: comparison sources split into disjoint halves; PPO with a test PM logs
both rewards mean-normalised (with the SAME PM as train and test, the two agree exactly and the
gap is 0); the config refuses a robustness run without a test PM; the study end to end (slow)."""

import json

import numpy as np
import pytest

from configs import ppo as ppo_config
from hh import main
from hh.config import ConfigError
from hh.eval.robustness import pm_configs, run_study, split_specs
from hh.pm.data import spec_source
from hh.train.metrics import read_metrics


def test_split_specs_are_disjoint_halves():
    from configs import pm as pm_config
    data = pm_config.get_config("smoke").data
    n = len(spec_source("synthetic-helpful", "train", data))
    assert split_specs(["synthetic-helpful"], data, 0) == [f"synthetic-helpful:train[0:{n // 2}]"]
    assert split_specs(["synthetic-helpful"], data, 1) == [f"synthetic-helpful:train[{n // 2}:{n}]"]
    assert split_specs(["synthetic-harmless:train[100:301]"], data, 1) == ["synthetic-harmless:train[200:301]"]
    first, second = pm_configs("smoke", "")
    a = spec_source(first.data.helpful_sources[0], "train", data)
    b = spec_source(second.data.helpful_sources[0], "train", data)
    assert len(a) + len(b) == n
    assert first.data.train_pairs == pm_config.get_config("smoke").data.train_pairs // 2
    # disjoint rows of the same source (the synthetic world itself may repeat a text)
    assert (a.start, a.stop, b.start, b.stop) == (0, n // 2, n // 2, n)


def _config(pm_chain, steps=3):
    config = ppo_config.get_config("smoke,robustness")
    config.init_from, config.reward_model = str(pm_chain["lm"]), str(pm_chain["pm"])
    config.test_reward_model = str(pm_chain["pm"])      # the same PM: the two series must agree
    config.loop.steps, config.loop.checkpoint_every = steps, steps
    config.ppo.minibatches = 2
    config.loop.async_checkpoints = False
    return config


@pytest.mark.slow
def test_same_pm_as_train_and_test_agrees_exactly(pm_chain, tmp_path):
    workdir = tmp_path / "ppo"
    main.run(_config(pm_chain), str(workdir))
    rows = [r for r in read_metrics(workdir) if "train/test_reward" in r]
    assert len(rows) == 3
    for r in rows:
        assert r["train/test_reward"] == pytest.approx(r["train/reward"], rel=1e-5, abs=1e-6)
        assert r["train/test_reward_normalised"] == pytest.approx(r["train/reward_normalised"], rel=1e-5, abs=1e-6)
    offsets = json.loads((workdir / "reward_offsets.json").read_text())
    assert offsets["reward"] == pytest.approx(offsets["test_reward"])
    assert rows[0]["train/reward_normalised"] == pytest.approx(rows[0]["train/reward"] - offsets["reward"], abs=1e-6)
    summary = json.loads((workdir / "robustness.json").read_text())
    assert summary["gap_end"] == pytest.approx(0.0, abs=1e-5)
    assert summary["train_pm"]["slope"] == pytest.approx(summary["test_pm"]["slope"], rel=1e-4, abs=1e-6)
    assert (workdir / "robustness.png").stat().st_size > 1000
    assert json.loads((workdir / "phase_compiles.json").read_text())["test_score"] == 1


def test_robustness_needs_a_test_pm(pm_chain, tmp_path):
    config = _config(pm_chain)
    config.test_reward_model = ""
    with pytest.raises(ConfigError, match="test_reward_model"):
        main.run(config, str(tmp_path / "ppo"))


def test_robustness_variant_fields():
    plain, robust = ppo_config.get_config("tiny"), ppo_config.get_config("tiny,robustness")
    assert (plain.ppo.epochs, robust.ppo.epochs) == (1, 2)          # App. B.1: K = 2
    assert robust.rollout.max_new_tokens <= 32 and robust.data.seq_len == plain.data.seq_len
    with pytest.raises(ValueError, match="variant"):
        ppo_config.get_config("tiny,online")


@pytest.mark.slow
def test_study_end_to_end(pm_chain, tmp_path):
    summary = run_study(str(pm_chain["lm"]), tmp_path / "study", "smoke", pm_steps=10, ppo_steps=4,
                        ppo_overrides={"ppo.minibatches": 2})
    assert summary["iterations"] == 4
    assert np.isfinite(summary["gap_end"])
    for name in ("train_pm", "test_pm", "ppo"):
        assert (tmp_path / "study" / name / "config.json").exists()
    offsets = json.loads((tmp_path / "study" / "ppo" / "reward_offsets.json").read_text())
    assert offsets["reward"] != offsets["test_reward"]   # two different PMs
