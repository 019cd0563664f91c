"""Metric sinks of the training loop: metrics.jsonl (one row per step) and TensorBoard.

Only process 0 writes. On resume, rows past the restored step (written by the interrupted run
after its last checkpoint) are dropped, so metrics.jsonl reads as one uninterrupted run.
"""

import json
import math

import jax
from etils import epath


def _plain(value):
    value = float(value)
    return value if math.isfinite(value) else str(value)


class MetricsWriter:
    def __init__(self, workdir, resume_step=None):
        self.is_chief = jax.process_index() == 0
        self.path = epath.Path(workdir) / "metrics.jsonl"
        self._tb = None
        if not self.is_chief:
            return
        if resume_step is not None:
            self._truncate_after(resume_step)
        elif self.path.exists():
            self.path.unlink()  # a fresh run in a reused workdir starts a fresh log
        try:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(str(epath.Path(workdir) / "tensorboard"))
        except ImportError:  # TensorBoard is optional; metrics.jsonl is the record
            self._tb = None

    def _truncate_after(self, step):
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= step]
        tmp = self.path.parent / (self.path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(self.path)  # atomic: a crash leaves the old or the new log, never half

    def write(self, step: int, metrics: dict, prefix: str = "train"):
        if not self.is_chief:
            return
        row = {"step": int(step), **{f"{prefix}/{k}": _plain(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(f"{prefix}/{k}", float(v), int(step))

    def flush(self):
        if self._tb is not None:
            self._tb.flush()

    def close(self):
        if self._tb is not None:
            self._tb.close()


def read_metrics(workdir) -> list:
    """All rows of a workdir's metrics.jsonl (tests and tools use this)."""
    path = epath.Path(workdir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
