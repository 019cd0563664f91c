"""The dpo stage end to end on the smoke preset: it trains from an LM workdir with either reference
mode (the same losses), refuses bad settings by field, leaves a policy workdir that loads and
exports like an LM and deploys in the labeling interface and the online loop, and resumes after
SIGKILL with the same losses."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from configs import dpo as dpo_config, lm as lm_config
from hh import main
from hh.config import ConfigError
from hh.train.metrics import read_metrics
from finished_checkpoints import finished_checkpoints

ROOT = Path(__file__).resolve().parents[2]
STEPS = 12


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dpo") / "lm"
    main.run(lm_config.get_config("smoke"), str(workdir))
    return workdir


def _config(lm_dir, **dpo):
    config = dpo_config.get_config("smoke")
    config.init_from = str(lm_dir)
    config.loop.steps, config.loop.eval_every, config.loop.log_every = STEPS, STEPS, 1
    config.dpo.update(dpo)
    return config


def _losses(workdir):
    return {r["step"]: r["train/loss"] for r in read_metrics(workdir) if "train/loss" in r}


def test_both_reference_modes_train_alike(lm_dir, tmp_path):
    per_batch = main.run(_config(lm_dir), str(tmp_path / "batch"))
    cached = main.run(_config(lm_dir, reference="cached"), str(tmp_path / "cached"))
    a, b = _losses(tmp_path / "batch"), _losses(tmp_path / "cached")
    assert sorted(a) == sorted(b) == list(range(1, STEPS + 1))
    np.testing.assert_allclose([a[s] for s in a], [b[s] for s in a], rtol=1e-4, atol=1e-5)
    assert a[1] == pytest.approx(np.log(2.0), abs=1e-3)   # the policy starts as its reference: h = 0
    for result in (per_batch, cached):
        metrics = result.last_eval
        assert metrics["pairs"] == 512 and metrics["kl_to_reference"] > 0
        assert metrics["chosen_drift"] - metrics["rejected_drift"] == pytest.approx(metrics["reward_margin"] / 0.1, rel=1e-3)
    assert (tmp_path / "cached" / "reference_logprobs.npz").exists()


def test_ipo_and_smoothing_run(lm_dir, tmp_path):
    config = _config(lm_dir, loss="ipo", tau=0.5)
    config.loop.steps = 3
    result = main.run(config, str(tmp_path / "ipo"))
    assert _losses(tmp_path / "ipo")[1] == pytest.approx(1.0, abs=1e-3)   # (0 − 1/(2τ))² at h = 0
    assert np.isfinite(result.last_eval["loss"])


@pytest.mark.parametrize("field, value, match", [
    ("dpo.loss", "kto", "config.dpo.loss='kto'"),
    ("dpo.reference", "disk", "config.dpo.reference='disk'"),
    ("dpo.label_smoothing", 0.5, "label_smoothing=0.5"),
    ("data.max_response_len", 30, "config.data.seq_len=64 must equal"),
    ("init_from", "", "config.init_from must name the policy"),
])
def test_bad_settings_name_the_field(lm_dir, tmp_path, field, value, match):
    config = _config(lm_dir)
    section, name = field.split(".") if "." in field else (None, field)
    (config[section] if section else config)[name] = value
    with pytest.raises(ConfigError, match=match):
        main.run(config, str(tmp_path / "bad"))


def test_the_policy_loads_and_exports_like_an_lm(lm_dir, tmp_path):
    from hh.checkpoints import hf_export, hf_import
    from hh.trained import LoadedLM
    config = _config(lm_dir)
    config.loop.steps = 2
    main.run(config, str(tmp_path / "dpo"))
    policy = LoadedLM(tmp_path / "dpo")
    hf_export.export_hf(tmp_path / "hf", policy.params, policy.model.cfg, tokenizer=policy.tokenizer)
    assert (tmp_path / "hf" / "config.json").exists()
    import jax
    _, imported = hf_import.load_hf_model(tmp_path / "hf", scan_layers=policy.model.cfg.scan_layers)
    flat = lambda tree: {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(tree)}  # noqa: E731
    a, b = flat(imported), flat(policy.params)
    assert b.keys() <= a.keys()
    for key in a:   # the exported family may carry biases the hh model has not: they are zero
        np.testing.assert_array_equal(a[key], b.get(key, np.zeros_like(a[key])), err_msg=key)


@pytest.mark.slow   # ~40 s: a DPO run, two pools and their compiles
def test_a_dpo_policy_deploys_in_the_labeling_interface_and_the_online_loop(lm_dir, tmp_path):
    """Issue: the interface and the online loop deploy a DPO workdir like any policy workdir: a
    deployment "NAME=WORKDIR[#STEP]" and a round's pool of the previous policy's snapshots."""
    import configs.online
    import configs.serve
    from hh.online.pool import build_pool, round_specs
    from hh.serve.models import load_pool
    config = _config(lm_dir)
    config.loop.steps, config.loop.checkpoint_every = 4, 2
    main.run(config, str(tmp_path / "dpo"))
    contexts = ["\n\nHuman: Hi there.\n\nAssistant:", "\n\nHuman: What is 2 plus 3?\n\nAssistant:"]

    serve = configs.serve.get_config("smoke")
    serve.deployments = [f"dpo={tmp_path / 'dpo'}", f"dpo-early={tmp_path / 'dpo'}#2"]
    serve.pairing, serve.rows_per_call = "given", 2
    serve.pair = ["dpo", "dpo-early"]
    pool = load_pool(serve)
    pairs = pool.candidates(contexts, [pool.pick() for _ in contexts], seed=0)
    assert [(a.model, b.model) for a, b in pairs] == [("dpo", "dpo-early")] * 2
    assert all(isinstance(c.text, str) for pair in pairs for c in pair)

    pool_cfg = configs.online.get_config("smoke").pool
    pool_cfg.best_of_k = 0
    specs = round_specs(pool_cfg, 1, lm_dir, previous_ppo=tmp_path / "dpo")   # the DPO run as the previous round's policy
    assert [(s.workdir, s.step) for s in specs] == [(str(tmp_path / "dpo"), 2), (str(tmp_path / "dpo"), 4)]
    online_pool = build_pool(specs, pool_cfg, rows=2)
    got = online_pool.candidates(contexts, [online_pool.pick() for _ in contexts], seed=1)
    assert {c.model for pair in got for c in pair} <= {s.name for s in specs}


def _command(workdir, lm_dir):
    return [sys.executable, "-m", "hh.main", "--config", "configs/dpo.py:smoke", "--workdir", str(workdir),
            f"--config.init_from={lm_dir}", "--config.loop.steps=40", "--config.loop.checkpoint_every=10",
            "--config.loop.log_every=1"]


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_with_identical_losses(lm_dir, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(_command(reference, lm_dir), cwd=ROOT, check=True, capture_output=True, timeout=300)
    proc = subprocess.Popen(_command(killed, lm_dir), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not any(s >= 10 for s in finished_checkpoints(killed)):
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = max(finished_checkpoints(killed))
    assert saved < 40
    rerun = subprocess.run(_command(killed, lm_dir), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resumed from {killed / 'checkpoints'} at step {saved}" in rerun.stdout
    a, b = _losses(reference), _losses(killed)
    assert sorted(b) == list(range(1, 41))
    for s in range(saved + 1, 41):
        assert b[s] == pytest.approx(a[s], rel=1e-6, abs=1e-7), s
