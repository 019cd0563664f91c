"""What every workdir records about how it was made: config, code version, packages, devices.

`config.json` (the resolved config), and `provenance.json` with the config hash, git commit and
dirtiness, installed packages, the device mesh and, for a run resumed with another config
(hh.train.resume), its `config_changes`. Only process 0 writes.
"""

import hashlib
import importlib.metadata
import json
import pathlib
import subprocess

import jax
from etils import epath

from hh.io import atomic_write_text


def dict_hash(config_dict: dict) -> str:
    """sha256 of a config dict's canonical JSON: equal configs, equal hashes."""
    canonical = json.dumps(config_dict, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def config_hash(config) -> str:
    return dict_hash(config.to_dict())


def _git(*args):
    repo = pathlib.Path(__file__).resolve().parents[2]
    try:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def code_version() -> dict:
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def installed_packages() -> list:
    """`pip freeze`-like lines, from package metadata (no subprocess, works in any venv)."""
    return sorted({f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
                   if d.metadata["Name"]})


def write_provenance(workdir, config, mesh, config_changes=(), previous_config=None) -> dict:
    """config_changes: [{step, previous_config_hash, new_config_hash, changed}] of a resumed run;
    previous_config: (step, config dict) to keep as config.step-<step>.json (never overwritten)."""
    record = {
        "config_hash": config_hash(config),
        **code_version(),
        "jax_version": jax.__version__,
        "process_count": jax.process_count(),
        "devices": [str(d) for d in jax.devices()],
        "mesh": {k: int(v) for k, v in mesh.shape.items()},
        "packages": installed_packages(),
    }
    if config_changes:
        record["config_changes"] = list(config_changes)
    if jax.process_index() == 0:
        workdir = epath.Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        if previous_config is not None:
            step, previous = previous_config
            kept = workdir / f"config.step-{step}.json"
            if not kept.exists():
                atomic_write_text(kept, json.dumps(previous, indent=2, sort_keys=True))
        atomic_write_text(workdir / "config.json", config.to_json(indent=2, sort_keys=True))
        atomic_write_text(workdir / "provenance.json", json.dumps(record, indent=2))
    return record
