"""Resume after a kill, across a real process boundary: SIGKILL the CLI mid-run, rerun
the same command, and the resumed steps' losses equal those of an uninterrupted run. Both input
paths: packed in memory, and ArrayRecord shards from `hh.data.prepare` read by grain worker
processes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hh.train.metrics import read_metrics
from finished_checkpoints import finished_checkpoints

ROOT = Path(__file__).resolve().parents[2]
STEPS = 60


def _command(workdir, data_args=()):
    return [sys.executable, "-m", "hh.main", "--config", "configs/lm.py:smoke", "--workdir", str(workdir),
            f"--config.loop.steps={STEPS}", "--config.loop.checkpoint_every=10",
            "--config.loop.log_every=1", "--config.loop.eval_every=0", *data_args]


def _shards(tmp_path):
    """A text corpus in two files, prepared into shards the smoke LM reads (bytes, 64 tokens)."""
    import json

    from hh.data import synthetic
    from hh.data.prepare import prepare
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    docs = synthetic.pretraining_documents(2000, 0, "tiny")
    for part in range(2):
        (corpus / f"part-{part}.jsonl").write_text("".join(json.dumps({"text": d}) + "\n"
                                                           for d in docs[part::2]))
    prepare(f"files:{corpus}/*.jsonl", tmp_path / "shards", tokenizer="bytes", seq_len=64)
    return [f"--config.data.source=array_record:{tmp_path / 'shards'}", "--config.data.eval_rows=16",
            "--config.data.workers=2"]


def _train_losses(workdir):
    return {r["step"]: r["train/loss"] for r in read_metrics(workdir) if "train/loss" in r}


@pytest.mark.slow
@pytest.mark.parametrize("data", ["in_memory", "array_record"])
def test_sigkill_then_rerun_resumes_with_identical_losses(tmp_path, data):
    data_args = _shards(tmp_path) if data == "array_record" else []
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(_command(reference_dir, data_args), cwd=ROOT, check=True, capture_output=True, timeout=300)

    proc = subprocess.Popen(_command(killed_dir, data_args), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not any(s >= 20 for s in finished_checkpoints(killed_dir)):
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = finished_checkpoints(killed_dir)
    assert saved and max(saved) < STEPS, f"killed too late to test resumption: {saved}"
    killed_at = max(_train_losses(killed_dir))

    rerun = subprocess.run(_command(killed_dir, data_args), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resumed from {killed_dir / 'checkpoints'} at step {max(saved)}" in rerun.stdout

    reference, resumed = _train_losses(reference_dir), _train_losses(killed_dir)
    assert sorted(resumed) == list(range(1, STEPS + 1))
    assert killed_at < STEPS
    for step in range(max(saved) + 1, STEPS + 1):   # the steps recomputed after the restart
        assert resumed[step] == pytest.approx(reference[step], rel=1e-6, abs=1e-7), step
