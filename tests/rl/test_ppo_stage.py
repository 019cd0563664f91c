"""The PPO stage end to end on the smoke LM -> PM chain (the session `pm_chain` fixture).

The chain's PM (20 steps at 0.01× the LM's learning rate) scores every response alike (spread
~1e-4), so PPO here optimises a reward PM finetuned from the chain's PMP for 60 steps at 3e-3
(score spread ~0.02), with a larger policy learning rate (3e-3) and 36 iterations to make the
climb measurable; seeded, so deterministic. Resume: a run restarted from its last checkpoint
before the end (iteration 30) reproduces the same metrics.
"""

import json
import shutil

import numpy as np
import pytest

from configs import pm as pm_config, ppo as ppo_config
from hh import main
from hh.train.metrics import read_metrics

ITERATIONS = 36
RESUME_FROM = 30        # checkpoints at 30 and 36: the resume test reruns the last 6 iterations
SAMPLES_EVERY = 4       # configs/ppo.py:smoke's rollout.samples_every
# The climb of the PM reward, mean of the last 4 iterations minus the first 4, measured at this
# config (LR 3e-3, 36 iterations, 2 minibatches) over PPO seeds 0-2: +0.037, +0.054, +0.067 (mean
# 0.053, sd 0.015). Threshold: about mean − 3 sd.
MIN_CLIMB = 0.01


@pytest.fixture(scope="module")
def reward_pm(pm_chain, tmp_path_factory):
    """A PM whose scores differ between responses: the chain's PMP finetuned for 60 steps at 3e-3."""
    config = pm_config.get_config("smoke")
    config.init_from = str(pm_chain["pmp"])
    config.optimizer.learning_rate = 3e-3
    config.loop.steps, config.data.train_pairs = 60, 480
    workdir = tmp_path_factory.mktemp("reward_pm") / "pm"
    main.run(config, str(workdir))
    return workdir


def _config(pm_chain, reward_pm, steps=ITERATIONS):
    config = ppo_config.get_config("smoke")
    config.init_from, config.reward_model = str(pm_chain["lm"]), str(reward_pm)
    config.loop.steps = steps
    config.ppo.minibatches = 2          # 8 rows each: one per fake device (data = 8)
    config.loop.checkpoint_every = RESUME_FROM
    config.loop.async_checkpoints = False
    config.optimizer.learning_rate = config.value_optimizer.learning_rate = 3e-3
    return config


def _series(workdir, key):
    rows = [r for r in read_metrics(workdir) if f"train/{key}" in r]
    return {r["step"]: r[f"train/{key}"] for r in rows}


@pytest.fixture(scope="module")
def ppo_run(pm_chain, reward_pm, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ppo") / "run"
    main.run(_config(pm_chain, reward_pm), str(workdir))
    return workdir


@pytest.mark.slow
def test_ppo_raises_the_pm_reward_and_writes_its_reports(ppo_run):
    reward = _series(ppo_run, "reward")
    assert sorted(reward) == list(range(1, ITERATIONS + 1))
    early = np.mean([reward[s] for s in range(1, 5)])
    late = np.mean([reward[s] for s in range(ITERATIONS - 3, ITERATIONS + 1)])
    assert late > early + MIN_CLIMB, (early, late)
    kl = _series(ppo_run, "kl")
    assert kl[1] == pytest.approx(0.0, abs=1e-5)   # the policy starts as the reference
    assert kl[ITERATIONS] > 0.1
    for key in ("kl_k1", "kl_k3", "sqrt_kl", "entropy", "clip_fraction", "approx_kl", "value_loss",
                "explained_variance", "response_length", "fraction_finished", "kl_coef"):
        assert len(_series(ppo_run, key)) == ITERATIONS, key
    samples = [json.loads(line) for line in (ppo_run / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == set(range(SAMPLES_EVERY, ITERATIONS + 1, SAMPLES_EVERY))
    assert all(set(s) == {"step", "prompt", "response", "reward", "kind"} for s in samples)
    assert {s["kind"] for s in samples} <= {"helpful", "harmless"}   # the gold labeler of each row
    assert all(s["prompt"].endswith("Assistant:") for s in samples)
    fit = json.loads((ppo_run / "reward_vs_sqrt_kl.json").read_text())
    assert {"slope", "intercept", "r2"} <= set(fit) and fit["n_fit"] == ITERATIONS // 2
    assert (ppo_run / "reward_vs_sqrt_kl.png").stat().st_size > 1000
    # no recompilation per iteration: each jitted phase compiled exactly once in 36 iterations
    assert json.loads((ppo_run / "phase_compiles.json").read_text()) == {"generate": 1, "score": 1, "update": 1}


@pytest.mark.slow
def test_resume_from_the_last_checkpoint_continues_identically(pm_chain, reward_pm, ppo_run, tmp_path):
    workdir = tmp_path / "resumed"
    shutil.copytree(ppo_run, workdir)
    shutil.rmtree(workdir / "checkpoints" / str(ITERATIONS))   # as if stopped after RESUME_FROM
    main.run(_config(pm_chain, reward_pm), str(workdir))
    samples = [json.loads(line) for line in (workdir / "samples.jsonl").read_text().splitlines()]
    n = ppo_config.get_config("smoke").rollout.n_samples
    due = range(SAMPLES_EVERY, ITERATIONS + 1, SAMPLES_EVERY)
    assert [s["step"] for s in samples] == [step for step in due for _ in range(n)]   # none written twice
    assert json.loads((workdir / "phase_compiles.json").read_text()) == {"generate": 1, "score": 1, "update": 1}
    for key in ("reward", "kl", "policy_loss", "kl_coef"):
        a, b = _series(ppo_run, key), _series(workdir, key)
        assert sorted(b) == list(range(1, ITERATIONS + 1))
        np.testing.assert_allclose([b[s] for s in range(RESUME_FROM + 1, ITERATIONS + 1)],
                                   [a[s] for s in range(RESUME_FROM + 1, ITERATIONS + 1)], rtol=1e-5, atol=1e-6)
