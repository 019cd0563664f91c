"""The main job (hh.pipeline): skip / resume / restart rules on fake steps, the config's links, the
step table, and (slow) the smoke pipeline end to end with its report and a rerun that skips all."""

import json
import shutil
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from etils import epath

from configs import pipeline as pipeline_config
from conftest import SMOKE_PIPELINE
from hh.data import sources, synthetic
from hh.config import ConfigError
from hh.pipeline import report as report_module
from hh.pipeline import runner
from hh.pipeline import steps as steps_module
from hh.pipeline.jobs import job_steps
from hh.pipeline.runner import Step, run_steps, tree_digest


def fake_steps(calls, fail=()):
    """a -> b: each writes out.txt from its config value (b also from a's output)."""
    def make(name):
        def run(config, folder, folders):
            calls.append(name)
            if name in fail:
                (folder / "partial.txt").write_text("half")
                raise RuntimeError(f"{name} crashed")
            text = str(config[name].value)
            if name == "b":
                text += (folders["a"] / "out.txt").read_text()
            (folder / "out.txt").write_text(text)
            return {"value": config[name].value}
        return run
    outputs = lambda folder: [folder / "out.txt"]   # noqa: E731
    return [Step("a", (), lambda c: c.a, make("a"), outputs),
            Step("b", ("a",), lambda c: c.b, make("b"), outputs)]


def fake_config(a=1, b=2):
    return ml_collections.ConfigDict({"a": {"value": a}, "b": {"value": b}})


def test_finished_steps_are_skipped(tmp_path):
    calls = []
    first = run_steps(fake_steps(calls), fake_config(), tmp_path, log=lambda s: None)
    assert calls == ["a", "b"] and first == {"a": {"value": 1}, "b": {"value": 2}}
    lines = []
    again = run_steps(fake_steps(calls), fake_config(), tmp_path, log=lines.append)
    assert calls == ["a", "b"], "nothing reran"
    assert again == first and all("skipped" in line for line in lines)


def test_changed_config_reruns_that_step_and_keeps_the_old_folder(tmp_path):
    calls = []
    run_steps(fake_steps(calls), fake_config(), tmp_path, log=lambda s: None)
    run_steps(fake_steps(calls), fake_config(b=5), tmp_path, log=lambda s: None)
    assert calls == ["a", "b", "b"]
    assert (tmp_path / "b" / "out.txt").read_text() == "51"
    assert (tmp_path / "b.stale-1" / "out.txt").read_text() == "21"   # never deleted


def test_changed_input_reruns_its_dependents(tmp_path):
    calls = []
    run_steps(fake_steps(calls), fake_config(), tmp_path, log=lambda s: None)
    run_steps(fake_steps(calls), fake_config(a=7), tmp_path, log=lambda s: None)
    assert calls == ["a", "b", "a", "b"]
    assert (tmp_path / "b" / "out.txt").read_text() == "27"


def test_an_edited_output_is_not_skipped(tmp_path):
    calls = []
    run_steps(fake_steps(calls), fake_config(), tmp_path, log=lambda s: None)
    (tmp_path / "a" / "out.txt").write_text("tampered")
    run_steps(fake_steps(calls), fake_config(), tmp_path, log=lambda s: None)
    # a reruns in place (same config and inputs) and writes its output again: b's input is
    # what b read, so b stays finished
    assert calls == ["a", "b", "a"]
    assert (tmp_path / "a" / "out.txt").read_text() == "1"
    assert not (tmp_path / "a.stale-1").exists()


def test_a_crashed_step_resumes_in_its_folder(tmp_path):
    calls = []
    with pytest.raises(RuntimeError, match="b crashed"):
        run_steps(fake_steps(calls, fail=("b",)), fake_config(), tmp_path, log=lambda s: None)
    assert json.loads((tmp_path / "b" / runner.STAMP).read_text())["done"] is False
    lines = []
    run_steps(fake_steps(calls), fake_config(), tmp_path, log=lines.append)
    assert calls == ["a", "b", "b"]
    assert (tmp_path / "b" / "partial.txt").exists(), "resumed in place, not moved aside"
    assert any("resuming" in line for line in lines) and not (tmp_path / "b.stale-1").exists()


def test_forced_step_starts_afresh(tmp_path):
    calls = []
    run_steps(fake_steps(calls), fake_config(), tmp_path, log=lambda s: None)
    run_steps(fake_steps(calls), fake_config(), tmp_path, force={"a"}, log=lambda s: None)
    assert calls == ["a", "b", "a"], "a reran; its output is the same, so b is still valid"
    assert (tmp_path / "a.stale-1" / "out.txt").exists()


def test_inputs_must_come_first(tmp_path):
    steps = fake_steps([])
    with pytest.raises(runner.StepFailed, match="needs"):
        run_steps(steps[::-1], fake_config(), tmp_path, log=lambda s: None)


def test_tree_digest(tmp_path, monkeypatch):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "x.bin").write_bytes(b"1" * 5000)
    base = tree_digest([epath.Path(d)])
    (d / runner.STAMP).write_text("{}")
    assert tree_digest([epath.Path(d)]) == base, "the step's own record is not part of its output"
    (d / "sub" / "x.bin").write_bytes(b"1" * 4999 + b"2")
    changed = tree_digest([epath.Path(d)])
    assert changed != base
    monkeypatch.setattr(runner, "WHOLE_FILE_BELOW", 100)   # big files: size + head + tail
    assert tree_digest([epath.Path(d)]) != base
    assert tree_digest([epath.Path(tmp_path / "missing")]) != tree_digest([])


@pytest.mark.parametrize("preset", ["smoke", "tiny", "13M"])
def test_config_links_and_step_order(preset):
    config = pipeline_config.get_config(preset)
    for name in pipeline_config.TRAINING_STAGES:
        assert config[name].stage == name
        assert config[name].model.vocab_size == config.lm.model.vocab_size
    assert config.ppo.data.seq_len == config.ppo.data.max_prompt_len + config.ppo.rollout.max_new_tokens
    names = [s.name for s in job_steps(config)]   # config.job = "main": hh/pipeline/steps.py
    assert names[:4] == ["tokenizer", "lm", "pmp", "pm"] and names[-1] == "report"
    seen = set()
    for step in job_steps(config):
        assert set(step.inputs) <= seen, step.name
        seen.add(step.name)


def test_tiny_preset_fits_the_synthetic_comparisons():
    """≥ 99% of pairs fit the PM's context and of RL prompts the PPO prompt budget, in the tiny
    run's own SentencePiece (a longer one loses the start of its prompt: earlier turns, never the
    final request)."""
    config = pipeline_config.get_config("tiny")
    data = config.lm.data
    tokenizer = sources.run_tokenizer(data, sources.lm_documents(data)[0])
    n = lambda text: len(tokenizer.encode(text))  # noqa: E731
    pairs = [p for k in synthetic.KINDS for p in synthetic.comparisons(k, 500, 0, "test", data.world_size)]
    longest = np.array([max(n(p["prompt"] + p["chosen"]), n(p["prompt"] + p["rejected"])) + 2 for p in pairs])
    prompts = np.array([n(p["prompt"]) for p in synthetic.rl_prompts(500, 0, "train", data.world_size)])
    assert np.mean(longest <= config.pm.data.seq_len) >= 0.99
    assert np.mean(prompts <= config.ppo.data.max_prompt_len) >= 0.99
    assert config.distill.data.seq_len <= config.lm.data.seq_len
    assert config.ood.n_fit > 2 * config.lm.model.d_model   # a non-singular covariance


def test_tension_tests_are_fresh_rows_past_every_pms_pairs():
    config = pipeline_config.get_config("tiny")
    n, m = config.pm.data.train_pairs, config.tension.fresh_pairs
    assert steps_module.tension_tests(config) == [f"synthetic-helpful:train[{n}:{n + m}]",
                                                  f"synthetic-harmless:train[{n}:{n + m}]"]
    config.tension.fresh_pairs = config.pm.data.synthetic_comparisons
    with pytest.raises(ConfigError, match="tension.fresh_pairs"):
        steps_module.tension_tests(config)
    config.tension.test_sources = ["synthetic-helpful:test"]
    assert steps_module.tension_tests(config) == ["synthetic-helpful:test"]


def test_tension_headlines_read_each_single_tranche_pm_on_the_other_tranches_conflicts():
    matrix = {"test_sets": ["synthetic-helpful:train[10:20]", "synthetic-harmless:train[10:20]"],
              "helpful_fraction": [0.0, 0.5, 1.0],
              "conflict_accuracy": [[0.1, 0.9], [0.5, 0.5], [0.95, 0.05]]}
    assert report_module.tension_headlines(matrix) == {"helpful_only_on_harmless_conflicts": 0.05,
                                                       "harmless_only_on_helpful_conflicts": 0.1}
    assert report_module.tension_headlines(None) is None


def test_set_path_names_a_misspelt_field():
    config = pipeline_config.get_config("smoke")
    pipeline_config.set_path(config, "ppo.loop.steps", 3)
    assert config.ppo.loop.steps == 3
    with pytest.raises(KeyError, match="ppo.loop.stepz"):
        pipeline_config.set_path(config, "ppo.loop.stepz", 3)


@pytest.mark.slow
def test_smoke_pipeline_end_to_end_then_skips_everything(smoke_pipeline, tmp_path):
    workdir, _ = smoke_pipeline
    cmd = [sys.executable, *SMOKE_PIPELINE, "--workdir", str(workdir)]
    report = (workdir / "report" / "report.md").read_text()
    for png in ("pm_calibration.png", "pm_cross_matrix.png", "reward_vs_sqrt_kl.png", "best_of.png", "elo.png",
                "ood_auroc_by_layer.png"):
        assert (workdir / "report" / png).stat().st_size > 1000, png
        assert f"({png})" in report
    assert "## Alignment tax" in report and "jsonl/world_questions" in report
    assert "## Helpful vs harmless" in report
    heads = json.loads((workdir / "report" / "headlines.json").read_text())
    matrix = json.loads((workdir / "tension" / "cross_matrix.json").read_text())
    assert matrix["helpful_fraction"] == [0.0, 0.5, 1.0]     # harmless-only, the main PM, helpful-only
    assert set(heads["tension"]) == {"helpful_only_on_harmless_conflicts", "harmless_only_on_helpful_conflicts"}
    assert 0.0 <= heads["pm_accuracy"] <= 1.0 and heads["elo_anchor"] == "distill"
    assert 0.0 <= heads["best_ood"]["auroc"] <= 1.0
    ood = json.loads((workdir / "ood" / "ood.json").read_text())["sets"]["synthetic-redteam"]
    assert ood["relative_mahalanobis"] != ood["mahalanobis"]   # n_fit > d_model: not degenerate
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    progress = [line for line in again.stdout.splitlines() if line.startswith("[")]
    assert len(progress) == 13 and all("skipped" in line for line in progress), again.stdout
    # a changed PPO field reruns PPO and everything that reads it, nothing before it (on a copy:
    # the session's pipeline stays as it finished; the skip keys do not depend on the folder)
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    cmd = [sys.executable, *SMOKE_PIPELINE, "--workdir", str(copy)]
    third = subprocess.run(cmd + ["--config.ppo.loop.steps=2", "--until=ppo"], capture_output=True,
                           text=True, timeout=600)
    assert third.returncode == 0, third.stderr[-3000:]
    lines = [line for line in third.stdout.splitlines() if line.startswith("[")]
    assert all("skipped" in line for line in lines[:6]) and any("ppo.stale-1" in line for line in lines)
    assert lines[-1].split("]", 1)[1].split()[0] == "ppo"   # --until stopped after it
