"""Reward-vs-sqrt(KL) fit and plot from a metrics.jsonl; the PPO config presets by name."""

import json

import numpy as np
import pytest

from configs import ppo as ppo_config
from hh.rl.curves import linear_fit, write_reward_curves


def test_linear_fit_hand_values():
    fit = linear_fit([0, 1, 2, 3], [1, 3, 5, 7])
    assert fit["slope"] == pytest.approx(2) and fit["intercept"] == pytest.approx(1)
    assert fit["r2"] == pytest.approx(1)
    noisy = linear_fit([0, 1, 2, 3], [0, 1, 0, 1])   # slope 0.2, SS_res 0.8 of SS_tot 1
    assert noisy["slope"] == pytest.approx(0.2) and noisy["r2"] == pytest.approx(0.2)


def test_write_reward_curves_fits_the_early_part(tmp_path):
    rows = []
    for step in range(1, 21):
        sqrt_kl = 0.1 * step
        reward = 2 * sqrt_kl + 0.5 if step <= 10 else 2.5 - sqrt_kl   # linear early, then not
        rows.append({"step": step, "train/reward": reward, "train/sqrt_kl": sqrt_kl})
    rows.append({"step": 20, "perf/tokens_per_second": 1.0})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = write_reward_curves(tmp_path, fit_fraction=0.5)
    assert out["n_fit"] == 10 and out["slope"] == pytest.approx(2) and out["r2"] == pytest.approx(1)
    assert json.loads((tmp_path / "reward_vs_sqrt_kl.json").read_text())["intercept"] == pytest.approx(0.5)
    assert (tmp_path / "reward_vs_sqrt_kl.png").read_bytes()[:4] == b"\x89PNG"
    assert write_reward_curves(tmp_path, fit_fraction=1.0)["r2"] < 0.9


@pytest.mark.parametrize("preset", ["smoke", "tiny", "13M", "52B"])
def test_presets_by_name(preset):
    config = ppo_config.get_config(preset)
    assert config.stage == "ppo" and config.kl.init_coef == 0.001 and config.ppo.clip_eps == 0.2
    assert config.ppo.gamma == 1.0 and config.ppo.entropy_coef == 0.0
    assert config.data.seq_len == config.data.max_prompt_len + config.rollout.max_new_tokens
    if preset in ("13M", "52B"):   # Bai et al. App. B.1: 0.01× the pretraining LR, 128 tokens
        from hh.models import presets
        assert config.optimizer.learning_rate == pytest.approx(0.01 * presets.learning_rate(preset))
        assert config.rollout.max_new_tokens == 128
    assert np.isfinite(config.optimizer.learning_rate)
