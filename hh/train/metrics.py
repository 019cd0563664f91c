"""Metric sinks of the training loop: metrics.jsonl (one row per step) and TensorBoard.

Only process 0 writes. On resume, rows past the restored step (written by the interrupted run
after its last checkpoint) are dropped, so metrics.jsonl reads as one uninterrupted run.
"""

import json
import math

import jax
from etils import epath

from hh.data.records import field, jsonl_records
from hh.io import atomic_write_text


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
        truncate_log(self.path, step)

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


def log_rows(path):
    """(line, row) of an append-only log of {"step", …} rows; a last line torn by a kill is dropped
    with a warning, any other bad line is a DataError naming the file and line."""
    for line, row in jsonl_records(path, torn_tail="drop", allow_empty=True):
        field(row, "step", int, path, line)
        yield line, row


def truncate_log(path, step: int):
    """On resume: keep the log's rows up to `step` (an interrupted run wrote the later ones after
    its last checkpoint, maybe the last one half), rewritten atomically: a crash leaves the old or
    the new log, never half. The kept rows are read whole before the write starts, since on an
    object store the write goes to the log itself."""
    path = epath.Path(path)
    if not path.exists():
        return
    kept = "".join(json.dumps(row) + "\n" for _, row in log_rows(path) if row["step"] <= step)
    atomic_write_text(path, kept)


def read_metrics(workdir) -> list:
    """All rows of a workdir's metrics.jsonl (tests and tools use this)."""
    return [row for _, row in log_rows(epath.Path(workdir) / "metrics.jsonl")]
