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
