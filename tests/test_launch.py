"""The sweep launcher without training: expansion and naming, field errors, the manifest, exit
statuses, TPU slice arithmetic, and the tpu backend's gcloud calls (a fake gcloud on PATH records
them; a golden file checks them: the TPU path is tested without a TPU)."""

import json
import os
import signal
import stat
import sys
from pathlib import Path

import pytest

from hh.parallel.distributed import EXIT_PREEMPTED
from launch import manifest as mf
from launch import processes, spec, sweep, tpu

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "tpu_sweep_gcloud.txt"


def test_product_of_axes_names_each_run_and_rederives_the_preset():
    runs = spec.expand("configs/pm.py", [spec.parse_axis("model=13M,42M,197M"),
                                         spec.parse_axis("data.train_pairs=1000,10000")])
    assert [r.name for r in runs] == [f"model-{m}_train_pairs-{n}" for m in ("13M", "42M", "197M")
                                      for n in (1000, 10000)]
    by_name = {r.name: r for r in runs}
    small, big = by_name["model-13M_train_pairs-1000"], by_name["model-197M_train_pairs-10000"]
    assert small.flags() == ["--config", "configs/pm.py:13M", "--config.data.train_pairs=1000"]
    # the preset is the :arg, so the fields derived from it change with it
    assert (small.config["model"]["d_model"], big.config["model"]["d_model"]) == (512, 1280)
    assert big.config["optimizer"]["learning_rate"] < small.config["optimizer"]["learning_rate"]
    assert big.config["data"]["train_pairs"] == 10000 and isinstance(big.overrides[0][1], int)


def test_unknown_field_fails_before_running_and_names_the_closest_field():
    with pytest.raises(spec.SweepError, match="no field data.num_train; did you mean data.train_pairs"):
        spec.expand("configs/pm.py", [spec.parse_axis("data.num_train=1000,10000")])
    with pytest.raises(spec.SweepError, match="data.train_pairs is a int"):
        spec.expand("configs/pm.py", [spec.parse_axis("data.train_pairs=lots")])
    with pytest.raises(spec.SweepError, match="expected KEY=V1,V2"):
        spec.parse_axis("model")


def test_file_sweep_and_fixed_overrides():
    runs = spec.expand("configs/pm.py", [], default_preset="smoke", use_file_sweep=True,
                       fixed=(("loop.log_every", "5"),))
    assert len(runs) == 11 and runs[3].config["data"]["helpful_fraction"] == pytest.approx(0.3)
    assert all(r.config["loop"]["log_every"] == 5 and r.preset == "smoke" for r in runs)
    assert runs[0].name == "helpful_fraction-0.0"


def test_manifest_is_atomic_json_and_refuses_a_changed_config(tmp_path):
    run = spec.expand("configs/lm.py", [spec.parse_axis("seed=0")], default_preset="smoke")[0]
    m = mf.Manifest(tmp_path, {"config": "configs/lm.py:smoke"})
    m.add(run, ["cmd"], str(tmp_path / run.name))
    m.update(run.name, status=mf.RUNNING)
    m.update(run.name, status=mf.DONE, returncode=0)
    again = mf.Manifest(tmp_path, {})
    entry = again.runs["seed-0"]
    assert (entry["status"], entry["attempts"], entry["overrides"]) == ("done", 1, {"seed": 0})
    assert not list(tmp_path.glob("*.tmp"))
    changed = spec.expand("configs/lm.py", [spec.parse_axis("seed=0")], default_preset="smoke",
                          fixed=(("loop.steps", "7"),))[0]
    with pytest.raises(spec.SweepError, match="exists with a different config"):
        again.add(changed, ["cmd"], "w")


def test_group_outcome_names_the_process_that_failed_first():
    assert processes.combine([0, 0], None).returncode == 0
    assert processes.combine([EXIT_PREEMPTED, EXIT_PREEMPTED], None).returncode == EXIT_PREEMPTED
    out = processes.combine([134, -signal.SIGKILL], first_failure=1)
    assert out.returncode == 128 + signal.SIGKILL
    assert out.message.startswith("process 1 failed first")
    assert "process 1 was killed by SIGKILL" in out.message and "134 (SIGABRT)" in out.message
    # Both found stopped at one poll (the peer aborted within the poll interval): the abort is the echo.
    both = processes.combine([-signal.SIGABRT, -signal.SIGKILL], first_failure=None)
    assert both.message.startswith("process 1 failed first")
    assert processes.combine([3, -signal.SIGABRT], None).message.startswith("process 0 failed first")


def test_a_dead_process_does_not_leave_its_peer_running(tmp_path):
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    crasher = [sys.executable, "-c", "import sys; sys.exit(3)"]
    group = processes.Group([sleeper, crasher], [None, None], [tmp_path / "a.log", tmp_path / "b.log"])
    out = group.wait(grace_s=1.0)
    assert out.returncode == 3 and "process 1 failed first" in out.message
    assert "process 0 was killed by SIGKILL" in out.message


@pytest.mark.parametrize("topology, accelerator, hosts", [
    ("v5p:2x2x1", "v5p-8", 1), ("v5p:2x2x2", "v5p-16", 2), ("v5p:8x8x8", "v5p-1024", 128),
    ("v4:2x2x4", "v4-32", 4), ("v5e:2x4", "v5litepod-8", 1), ("v5e:4x4", "v5litepod-16", 4),
    ("v6e:2x2", "v6e-4", 1)])
def test_accelerator_types_and_hosts(topology, accelerator, hosts):
    assert tpu.accelerator_type(topology) == accelerator
    assert tpu.num_hosts(topology) == hosts


def test_tpu_backend_refuses_a_local_workdir_and_a_bad_topology():
    with pytest.raises(ValueError, match="gs://"):
        tpu.TpuBackend(tpu.TpuOptions(zone="z", workdir_root="/tmp/x"))
    with pytest.raises(ValueError, match="GEN:AxB"):
        tpu.accelerator_type("v9:2x2")


FAKE_GCLOUD = """#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_GCLOUD_LOG"], "a") as f:
    f.write(json.dumps(args) + "\\n")
if args[:4] == ["compute", "tpus", "tpu-vm", "describe"]:
    sys.exit(1)                       # no such slice yet: the launcher creates it
if args[:4] == ["compute", "tpus", "queued-resources", "describe"]:
    print("ACTIVE")
"""


def _normalise(line, root):
    return line.replace(str(root), "<root>")


def _fake_gcloud(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD)
    gcloud.chmod(gcloud.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "gcloud.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_GCLOUD_LOG", str(log))
    return log


TPU_ARGS = ["--config", "configs/pm.py", "--sweep", "model=13M,42M", "--sweep", "data.train_pairs=1000",
            "--backend", "tpu", "--zone", "us-east5-a", "--project", "my-proj",
            "--topology", "v5p:2x2x2", "--workdir_root", "gs://bucket/sweeps/pm", "--spot", "--queued",
            "--delete"]


def test_tpu_backend_gcloud_calls_match_the_golden_file(tmp_path, monkeypatch):
    log = _fake_gcloud(tmp_path, monkeypatch)
    root = tmp_path / "sweep"
    monkeypatch.chdir(ROOT)
    assert sweep.main(TPU_ARGS + ["--root", str(root)]) == 0
    calls = [_normalise(" ".join(["gcloud", *json.loads(line)]), root) for line in log.read_text().splitlines()]
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text("\n".join(calls) + "\n")
    assert calls == GOLDEN.read_text().splitlines()
    manifest = json.loads((root / "manifest.json").read_text())
    assert {e["status"] for e in manifest["runs"].values()} == {"done"}
    assert manifest["runs"]["model-13M_train_pairs-1000"]["workdir"] == \
        "gs://bucket/sweeps/pm/model-13M_train_pairs-1000"
    assert (root / tpu.TARBALL).stat().st_size > 10_000   # the code that was copied


def test_tpu_dry_run_prints_the_same_calls_and_touches_nothing(tmp_path, monkeypatch, capsys):
    log = _fake_gcloud(tmp_path, monkeypatch)
    root = tmp_path / "sweep"
    monkeypatch.chdir(ROOT)
    assert sweep.main(TPU_ARGS + ["--root", str(root), "--dry-run"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("gcloud ")]
    golden = GOLDEN.read_text().splitlines()
    # the dry run assumes no slice exists: the same calls as the recorded run
    assert [_normalise(" ".join(__import__("shlex").split(p)), root) for p in printed] == golden
    assert not log.exists() and not root.exists()


def test_local_dry_run_prints_one_command_per_process(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(ROOT)
    assert sweep.main(["--config", "configs/lm.py:smoke", "--sweep", "seed=0,1", "--backend",
                       "local-multihost", "--processes", "2", "--root", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("--process_id=0") == 2 and out.count("--process_id=1") == 2
    assert "--coordinator_address=127.0.0.1:" in out and not (tmp_path / "manifest.json").exists()


def test_an_explicit_larger_slice_gets_the_fit_checks_mesh():
    runs = spec.expand("configs/ppo.py", [], default_preset="52B")
    assert sweep.slice_devices("v5p:8x8x8") == 512
    moved = sweep.with_slice_mesh(runs, "v5p:8x8x8")
    assert moved[0].config["mesh"] == {"data": 1, "fsdp": 128, "tensor": 4}
    assert ("mesh.fsdp", 128) in moved[0].overrides and ("mesh.tensor", 4) in moved[0].overrides
    assert "--config.mesh.fsdp=128" in moved[0].flags()
    kept = sweep.with_slice_mesh(runs, "v5p:4x4x4")   # the preset's own slice: its mesh works
    assert kept[0] is runs[0]
    with pytest.raises(spec.SweepError, match="GEN:AxB"):
        sweep.slice_devices("v5p")
