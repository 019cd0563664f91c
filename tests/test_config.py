"""Bad config fields fail before any compile, with messages naming the field."""

import subprocess
import sys
from pathlib import Path

import pytest

from configs import lm as lm_config
from hh.config import ConfigError, validate

ROOT = Path(__file__).resolve().parents[1]


def _smoke():
    return lm_config.get_config("smoke")


@pytest.mark.parametrize("edit, message", [
    (lambda c: setattr(c.model, "activation", "relu"), r"config.model.activation='relu'"),
    (lambda c: setattr(c.model, "n_kv_heads", 3), r"config.model.n_heads=2 is not a multiple of config.model.n_kv_heads=3"),
    (lambda c: (setattr(c.mesh, "tensor", 8), setattr(c.mesh, "data", 1)), r"config.model.n_heads=2 is not divisible by the tensor axis \(8\)"),
    (lambda c: setattr(c.train, "microbatches", 3), r"config.train.global_batch_size=8 is not divisible by config.train.microbatches=3"),
    (lambda c: setattr(c.train, "global_batch_size", 4), r"global_batch_size=4 / microbatches=1 = 4 rows is not divisible by data×fsdp = 8"),
    (lambda c: setattr(c.optimizer, "warmup_steps", 100), r"config.optimizer.warmup_steps=100"),
    (lambda c: setattr(c.optimizer, "schedule", "step"), r"config.optimizer.schedule='step'"),
    (lambda c: setattr(c.model, "remat", "some"), r"config.model.remat='some'"),
    (lambda c: (setattr(c.mesh, "data", 3)), r"needs 3 devices, but 8"),
])
def test_validate_names_the_field(edit, message):
    config = _smoke()
    edit(config)
    with pytest.raises(ConfigError, match=message):
        validate(config, n_devices=8)


def test_presets_validate():
    for preset in ("smoke", "tiny", "13M", "810M", "52B"):
        validate(lm_config.get_config(preset), n_devices=8)


def _cli(tmp_path, *overrides):
    cmd = [sys.executable, "-m", "hh.main", "--config", "configs/lm.py:smoke",
           "--workdir", str(tmp_path / "w"), *overrides]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_rejects_a_bad_value_before_compiling(tmp_path):
    out = _cli(tmp_path, "--config.train.microbatches=3")
    assert out.returncode == 2, out.stderr[-2000:]
    assert "config.train.global_batch_size=8 is not divisible by config.train.microbatches=3" in out.stderr
    assert not (tmp_path / "w").exists()   # nothing written, nothing compiled


def test_cli_rejects_a_misspelt_field(tmp_path):
    out = _cli(tmp_path, "--config.loop.stpes=5")
    assert out.returncode != 0
    assert "stpes" in out.stderr
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("path", ["train.microbatches", "train.eval_batch_size", "data.seq_len",
                                  "train.global_batch_size", "model.attention_block"])
def test_a_zero_size_names_the_field(path):
    """Zero sizes used to surface as a ZeroDivisionError, a `range()` error after compiling, or a
    run that trained on nothing."""
    config = _smoke()
    section, field = path.split(".")
    config[section][field] = 0
    with pytest.raises(ConfigError, match=rf"config\.{path}=0 must be positive"):
        validate(config, n_devices=8)


def _stage_configs():
    from configs import distill, online, pipeline, pm, pmp, ppo
    return {"lm": _smoke(), "pm": pm.get_config("smoke"), "pmp": pmp.get_config("smoke"),
            "distill": distill.get_config("smoke"), "ppo": ppo.get_config("smoke"),
            "online": online.get_config("smoke"), "pipeline": pipeline.get_config("smoke")}


@pytest.mark.parametrize("name, path, value", [
    ("pm", "train.epochs", 0.0), ("pm", "data.train_pairs", 0), ("pmp", "data.eval_comparisons", 0),
    ("distill", "data.distill_texts", 0), ("distill", "distill.top_k", 0),
    ("ppo", "ppo.minibatches", 0), ("ppo", "ppo.epochs", 0), ("ppo", "rollout.max_new_tokens", 0),
    ("ppo", "rollout.samples_every", 0), ("ppo", "data.max_prompt_len", 0),
    ("online", "collect.comparisons", 0), ("online", "pool.best_of_k", -1),
    ("online", "eval.n_prompts", 0), ("online", "ppo.ppo.minibatches", 0),
    ("pipeline", "best_of.n_prompts", 0), ("pipeline", "elo.max_new_tokens", 0),
    ("pipeline", "ppo.train.microbatches", 0), ("pipeline", "ood.n_fit", 0),
])
def test_stage_counts_name_the_field(name, path, value):
    """Every stage's (and the nested online / pipeline configs') size and count fields."""
    from hh.config import validate_counts
    config = _stage_configs()[name]
    *parents, leaf = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[leaf] = value
    with pytest.raises(ConfigError, match=rf"config\.{path}={value} must be"):
        validate_counts(config)


@pytest.mark.parametrize("name", ["lm", "pm", "pmp", "distill", "ppo", "online", "pipeline"])
def test_stage_presets_pass_the_count_checks(name):
    from hh.config import validate_counts
    validate_counts(_stage_configs()[name])


@pytest.mark.parametrize("override, field, value", [
    ("--config.model.n_kv_heads=2", "n_kv_heads", 2),
    ("--config.model.mlp_bias=True", "mlp_bias", True),
    ("--config.pm.model.n_kv_heads=1", None, None),
])
def test_optional_model_fields_are_overridable_from_the_command_line(override, field, value):
    """None-default fields must be typed placeholders: ml_collections cannot override a NoneType."""
    from absl import flags
    from ml_collections import config_flags

    spec = "configs/pipeline.py:smoke" if ".pm." in override else "configs/lm.py:smoke"
    argv = ["prog", f"--config={ROOT / spec}", override]
    flag_values = flags.FlagValues()   # the override flags are defined from the argv, as in main
    config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, sys_argv=argv)
    flag_values(argv)
    config = flag_values.config
    if field is None:
        assert config.pm.model.n_kv_heads == 1 and config.lm.model.n_kv_heads is None
        return
    assert config.model[field] == value
    validate(config, n_devices=8)
    defaults = _smoke()
    assert defaults.model[field] is None and defaults.to_dict()["model"][field] is None


def test_cli_zero_microbatches_is_a_config_error_without_a_traceback(tmp_path):
    out = _cli(tmp_path, "--config.train.microbatches=0")
    assert out.returncode == 2, out.stderr[-2000:]
    assert "config error: config.train.microbatches=0 must be positive" in out.stderr
    assert "Traceback" not in out.stderr
