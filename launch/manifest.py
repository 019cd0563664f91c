"""The sweep's manifest: `<root>/manifest.json`, one entry per run (config, command, status).

Statuses: pending → running → done | failed | preempted (saved a checkpoint; resumed by the next
attempt). The file is rewritten atomically after every change, so a killed launcher leaves a
readable manifest; rerunning the same sweep skips runs that are done and resumes the rest.
"""

import datetime
import json
import threading
from pathlib import Path

from hh.io import atomic_write_text
from launch.spec import SweepError

PENDING, RUNNING, DONE, FAILED, PREEMPTED = "pending", "running", "done", "failed", "preempted"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Manifest:
    def __init__(self, root, sweep: dict, persist: bool = True):
        self.root, self.persist = Path(root), persist
        self.path = self.root / "manifest.json"
        self._lock = threading.Lock()
        if persist and self.path.exists():
            self.data = json.loads(self.path.read_text())
            self.data["sweep"].update(sweep)
        else:
            self.data = {"sweep": {**sweep, "created": _now()}, "runs": {}}

    @property
    def runs(self) -> dict:
        return self.data["runs"]

    def add(self, run, command: list, workdir: str):
        """Registers a run; an existing entry must describe the same config."""
        with self._lock:
            entry = self.runs.get(run.name)
            if entry is not None and entry["config"] != run.config:
                raise SweepError(f"{self.path}: run {run.name} exists with a different config; use "
                                 f"another --root, or delete its entry to start it again")
            if entry is None:
                self.runs[run.name] = {"status": PENDING, "attempts": 0, "overrides": dict(run.overrides),
                                       "config_arg": run.config_arg, "config": run.config}
            self.runs[run.name].update(command=command, workdir=workdir)
            self._write()

    def update(self, name: str, **fields):
        with self._lock:
            entry = self.runs[name]
            if fields.get("status") == RUNNING:
                entry["attempts"] += 1
                entry["started"] = _now()
            if fields.get("status") in (DONE, FAILED, PREEMPTED):
                entry["finished"] = _now()
            entry.update(fields)
            self._write()

    def status(self, name: str) -> str:
        return self.runs[name]["status"]

    def _write(self):
        if not self.persist:   # a dry run changes nothing on disk
            return
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")

    def summary(self) -> str:
        width = max([len(n) for n in self.runs] + [4])
        lines = [f"{'run':{width}}  {'status':9}  attempts  returncode"]
        for name, e in self.runs.items():
            lines.append(f"{name:{width}}  {e['status']:9}  {e['attempts']:8}  {e.get('returncode', '')}")
        return "\n".join(lines)
