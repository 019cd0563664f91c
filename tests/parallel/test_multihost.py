"""Multi-host runs on JAX's own runtime, driven by the launcher, across real process boundaries:
2 processes × 4 CPU devices (gloo) train like 1 process × 8 devices; a preempted run (SIGTERM)
saves on every process and the launcher resumes it with the losses of an uninterrupted run; a
dead process stops its peer in bounded time with a message naming it; a 3-run local sweep."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hh.train.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[2]
STEPS = 40
LM = ["--config", "configs/lm.py:smoke", "--set", f"loop.steps={STEPS}", "--set", "loop.log_every=1",
      "--set", "loop.eval_every=20", "--set", "loop.checkpoint_every=10"]

pytestmark = pytest.mark.slow


def _losses(workdir):
    rows = read_metrics(workdir)
    return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


def _eval_losses(workdir):
    return {r["step"]: r["eval/loss"] for r in read_metrics(workdir) if "eval/loss" in r}


def _sweep(root, *args):
    """Starts `python -m launch.sweep` (a real launcher process)."""
    return subprocess.Popen([sys.executable, "-m", "launch.sweep", *LM, "--root", str(root), *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _manifest(root):
    try:
        return json.loads((root / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _wait_until(predicate, timeout, proc, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        assert proc.poll() is None, f"the launcher ended before {what}: {proc.stdout.read()[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _running_pids(root, name, step_at_least):
    """The run's pids once it has logged `step_at_least` steps (its metrics, written by process 0)."""
    m = _manifest(root)
    if not m or name not in m["runs"] or m["runs"][name]["status"] != "running":
        return None
    workdir = Path(m["runs"][name]["workdir"])
    if not (workdir / "metrics.jsonl").exists() or max(_losses(workdir) or [0]) < step_at_least:
        return None
    return m["runs"][name]["pids"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """1 process × 8 devices, uninterrupted."""
    workdir = tmp_path_factory.mktemp("reference") / "run"
    cmd = [sys.executable, "-m", "hh.main", "--config", "configs/lm.py:smoke", "--workdir", str(workdir),
           f"--config.loop.steps={STEPS}", "--config.loop.log_every=1", "--config.loop.eval_every=20",
           "--config.loop.checkpoint_every=10"]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    return workdir


def test_two_processes_preempted_and_resumed_match_one_process(tmp_path, reference):
    """2 × 4 devices via local-multihost; SIGTERM to one process mid-run: both save at the same
    step and exit 75; the launcher restarts the run, both processes restore, and every step's
    loss equals the 1 × 8 run (allclose: the reductions are grouped differently)."""
    root = tmp_path / "sweep"
    proc = _sweep(root, "--backend", "local-multihost", "--processes", "2", "--devices_per_process", "4",
                  "--heartbeat_timeout_s", "15")
    pids = _wait_until(lambda: _running_pids(root, "run", 12), 240, proc, "12 steps")
    os.kill(pids[1], signal.SIGTERM)     # the notice reaches one host; the runtime tells the other
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert "run: preempted; resuming from its checkpoint" in out

    entry = _manifest(root)["runs"]["run"]
    assert (entry["status"], entry["attempts"]) == ("done", 2)
    log0 = Path(entry["logs"][0]).read_text()
    log1 = Path(entry["logs"][1]).read_text()
    saved = [line for line in log0.splitlines() if line.startswith("SIGTERM: saved a checkpoint at step")]
    assert saved and saved[0] in log1, "both processes save at the same step"
    preempted_at = int(saved[0].rsplit(" ", 2)[-2].rstrip(";"))
    assert 12 <= preempted_at < STEPS
    assert f"resumed from {Path(entry['workdir']) / 'checkpoints'} at step {preempted_at}" in log0

    ref, two = _losses(reference), _losses(Path(entry["workdir"]))
    assert sorted(two) == list(range(1, STEPS + 1))
    np.testing.assert_allclose([two[s] for s in sorted(two)], [ref[s] for s in sorted(ref)],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(list(_eval_losses(Path(entry["workdir"])).values()),
                               list(_eval_losses(reference).values()), rtol=1e-5, atol=1e-6)
    provenance = json.loads((Path(entry["workdir"]) / "provenance.json").read_text())
    assert provenance["process_count"] == 2


def test_a_killed_process_stops_its_peer_in_bounded_time_with_a_clear_message(tmp_path):
    root = tmp_path / "sweep"
    proc = _sweep(root, "--backend", "local-multihost", "--processes", "2", "--heartbeat_timeout_s", "10",
                  "--set", "loop.steps=100000")
    pids = _wait_until(lambda: _running_pids(root, "run", 3), 240, proc, "3 steps")
    os.kill(pids[1], signal.SIGKILL)
    killed = time.time()
    out, _ = proc.communicate(timeout=120)
    elapsed = time.time() - killed
    assert proc.returncode == 1, out[-3000:]
    assert elapsed < 10 + 10 + 15, f"the peer took {elapsed:.0f} s to stop"   # heartbeat + grace + slack
    entry = _manifest(root)["runs"]["run"]
    assert entry["status"] == "failed"
    assert entry["message"].startswith("process 1 failed first; ")
    assert "process 1 was killed by SIGKILL" in entry["message"]
    for pid in pids:   # nothing left behind
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_local_sweep_of_three_runs_with_one_preempted(tmp_path, reference):
    root = tmp_path / "sweep"
    proc = _sweep(root, "--backend", "local", "--sweep", "seed=0,1,2")
    pids = _wait_until(lambda: _running_pids(root, "seed-0", 12), 240, proc, "seed-0 at 12 steps")
    os.kill(pids[0], signal.SIGTERM)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-3000:]
    runs = _manifest(root)["runs"]
    assert {n: e["status"] for n, e in runs.items()} == {"seed-0": "done", "seed-1": "done", "seed-2": "done"}
    assert runs["seed-0"]["attempts"] == 2 and runs["seed-1"]["attempts"] == 1
    resumed, ref = _losses(root / "seed-0"), _losses(reference)
    assert sorted(resumed) == list(range(1, STEPS + 1))
    for s in ref:   # the same process shape as the reference: equal up to float rounding
        assert resumed[s] == pytest.approx(ref[s], rel=1e-6, abs=1e-7), s
    assert _losses(root / "seed-1")[1] != ref[1]   # a different seed is a different run

    rerun = subprocess.run([sys.executable, "-m", "launch.sweep", *LM, "--root", str(root), "--backend",
                            "local", "--sweep", "seed=0,1,2"], cwd=ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0 and "starting" not in rerun.stdout   # all done: nothing reruns


def test_two_processes_on_shards_read_disjoint_rows_that_make_the_global_batch(tmp_path):
    """Two processes × 4 devices each read only their rows of every global batch from ArrayRecord
    shards (hh.data.prepare), and train exactly like one process × 8 devices reading all rows:
    the per-process row ranges partition the global batch."""
    from hh.data import synthetic
    from hh.data.prepare import prepare
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    docs = synthetic.pretraining_documents(1500, 0, "tiny")
    (corpus / "part.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    prepare(f"files:{corpus}/*.jsonl", tmp_path / "shards", tokenizer="bytes", seq_len=64)
    data = ["--set", f"data.source=array_record:{tmp_path / 'shards'}", "--set", "data.eval_rows=16"]
    short = ["--set", "loop.steps=10"]
    one = subprocess.run([sys.executable, "-m", "launch.sweep", *LM, *data, *short, "--root", str(tmp_path / "one")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "launch.sweep", *LM, *data, *short, "--root", str(tmp_path / "two"),
                          "--backend", "local-multihost", "--processes", "2", "--devices_per_process", "4"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    runs = [Path(_manifest(tmp_path / r)["runs"]["run"]["workdir"]) for r in ("one", "two")]
    ref, got = _losses(runs[0]), _losses(runs[1])
    assert sorted(got) == sorted(ref) == list(range(1, 11))
    np.testing.assert_allclose([got[s] for s in sorted(got)], [ref[s] for s in sorted(ref)], rtol=1e-5, atol=1e-6)
