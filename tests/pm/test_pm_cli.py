"""The three-stage chain from the command line (smoke preset): LM -> PMP -> PM with
--config.init_from, then `python -m hh.eval.pm_eval` writing its JSON and PNGs."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_lm_pmp_pm_chain_and_eval_from_the_command_line(tmp_path):
    lm, pmp, pm = (str(tmp_path / s) for s in ("lm", "pmp", "pm"))
    _run("hh.main", "--config", "configs/lm.py:smoke", "--workdir", lm)
    _run("hh.main", "--config", "configs/pmp.py:smoke", "--workdir", pmp, f"--config.init_from={lm}")
    _run("hh.main", "--config", "configs/pm.py:smoke", "--workdir", pm, f"--config.init_from={pmp}",
         "--config.data.helpful_fraction=0.25")
    assert json.loads(open(os.path.join(pm, "config.json")).read())["data"]["helpful_fraction"] == 0.25
    out = _run("hh.eval.pm_eval", "--workdir", pm, "--workdir", pmp,
               "--out", str(tmp_path / "eval"))
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert 0.0 <= lines[0]["accuracy"] <= 1.0 and "ece" in lines[0]
    report = json.loads((tmp_path / "eval" / "pm" / "pm_eval.json").read_text())
    assert report["all"]["pairs"] == 1000
    assert (tmp_path / "eval" / "pm" / "reliability.png").exists()
    matrix = json.loads((tmp_path / "eval" / "cross_matrix.json").read_text())
    assert matrix["helpful_fraction"] == [0.25, 1.0]
    assert (tmp_path / "eval" / "cross_matrix.png").exists()
