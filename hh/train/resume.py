"""Resume policy: a workdir's checkpoint is continued only by the config that wrote it.

Each checkpoint's `meta` stores the resolved config. A rerun compares its own resolved config with
the latest checkpoint's before anything in the workdir is rewritten: a difference outside the
operational fields is refused with the list of changed fields, unless
`config.resume_with_changes=True`, which resumes and records the change (provenance.json
`config_changes`, the previous config kept as `config.step-<N>.json`).
"""

import dataclasses
import json
from typing import Optional

from etils import epath

from hh.config import ConfigError
from hh.train.checkpoint import ShapeMismatchError, absolute
from hh.train.provenance import config_hash, dict_hash, write_provenance
from hh.train.workdir import CHECKPOINT_DIR, CONFIG_FILE, open_checkpoints

# Fields that change how a run is watched and saved, never what it computes: they may differ on
# resume without counting as a change. loop.steps is NOT among them: the learning-rate schedule
# decays over loop.steps (hh.train.optim) and PM runs derive it from their epochs, so extending a
# run changes the learning rate of every step after the resume point. Extend with
# resume_with_changes=True, which records the old and new step counts.
OPERATIONAL_FIELDS = frozenset({
    "loop.log_every", "loop.eval_every", "loop.checkpoint_every", "loop.keep_checkpoints",
    "loop.async_checkpoints", "resume_with_changes",
})
ABSENT = "<absent>"
# Fields added to the configs after workdirs were written, with the value that does what the code
# did before they existed: absent in a checkpoint's config and this value in the rerun's is no
# change, so upgrading hh does not strand a workdir.
ADDED_FIELDS = {"optimizer.frozen": "", "value_optimizer.frozen": ""}


@dataclasses.dataclass
class ResumePoint:
    """The latest checkpoint of a workdir: its step, the config that wrote it (None when neither
    the checkpoint nor the workdir records it) and its hash, and the changes recorded so far."""
    step: int
    config: Optional[dict]
    config_hash: Optional[str]
    config_changes: list


def canonical(config_dict: dict) -> dict:
    """As stored in JSON (tuples become lists), so a config and its stored copy compare equal."""
    return json.loads(json.dumps(config_dict, sort_keys=True, default=str))


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def changed_fields(previous: dict, current: dict) -> dict:
    """{dotted path: [old, new]} of the fields that differ, operational fields left out."""
    old, new = flatten(canonical(previous)), flatten(canonical(current))
    for path, value in ADDED_FIELDS.items():
        if path not in old and new.get(path, ABSENT) == value:
            old[path] = value
    return {path: [old.get(path, ABSENT), new.get(path, ABSENT)] for path in sorted(set(old) | set(new))
            if path not in OPERATIONAL_FIELDS and old.get(path, ABSENT) != new.get(path, ABSENT)}


def _recorded_config(workdir: epath.Path, step: int, meta: dict) -> Optional[dict]:
    """The checkpoint's config: from its meta (checkpoints written since it is stored there),
    else config.step-<step>.json or config.json when they match the hash the meta does record."""
    if "config" in meta:
        return meta["config"]
    for path in (workdir / f"config.step-{step}.json", workdir / CONFIG_FILE):
        if path.exists():
            stored = json.loads(path.read_text())
            if meta.get("config_hash") in (None, dict_hash(stored)):
                return stored
    return None


def resume_point(workdir) -> Optional[ResumePoint]:
    """None for a workdir without a checkpoint."""
    workdir = absolute(workdir)
    if not (workdir / CHECKPOINT_DIR).exists():
        return None
    with open_checkpoints(workdir) as ckpt:
        step = ckpt.latest_step()
        meta = ckpt.read_meta(step) if step is not None else {}
    if step is None:
        return None
    return ResumePoint(step, _recorded_config(workdir, step, meta), meta.get("config_hash"),
                       list(meta.get("config_changes", [])))


def _value_text(value) -> str:
    return repr(value) if isinstance(value, str) and value != ABSENT else str(value)


def change_text(path, old, new) -> str:
    """`config.optimizer.learning_rate: 0.001 -> 0.002` (strings quoted, so '' shows)."""
    return f"config.{path}: {_value_text(old)} -> {_value_text(new)}"


def _refusal(workdir, point: ResumePoint, changed: Optional[dict]) -> str:
    if changed is None:
        fields = (f"  (this older checkpoint records only its config hash {point.config_hash}, "
                  f"not the config; this run's is different)")
    else:
        fields = "\n".join(f"  {change_text(path, old, new)}" for path, (old, new) in changed.items())
    return (f"{workdir} has a checkpoint at step {point.step} written with another config:\n{fields}\n"
            f"Rerun with the same config to resume, use another --workdir to start afresh, or pass "
            f"--config.resume_with_changes=True to continue with the change (recorded in provenance.json)")


def check_resume(config, workdir, point: Optional[ResumePoint] = None) -> Optional[dict]:
    """Refuses (ConfigError listing the changed fields) to resume `workdir` with a config other than
    its checkpoint's, unless config.resume_with_changes; -> the change record to keep, or None."""
    point = point if point is not None else resume_point(workdir)
    if point is None:
        return None
    new_hash = config_hash(config)
    if point.config is None:
        if point.config_hash in (None, new_hash):   # nothing recorded to compare with, or equal
            return None
        changed = None
    else:
        changed = changed_fields(point.config, config.to_dict())
        if not changed:
            return None
    if not config.get("resume_with_changes", False):
        raise ConfigError(_refusal(workdir, point, changed))
    previous_hash = point.config_hash or dict_hash(point.config)
    return {"step": point.step, "previous_config_hash": previous_hash, "new_config_hash": new_hash,
            "changed": changed or {}}


def start_run(workdir, config, mesh) -> dict:
    """Checks the resume policy, then writes config.json and provenance.json (with the config
    changes so far, the previous config kept as config.step-<N>.json); -> the checkpoint meta
    that carries the config and its changes forward. Call it before building anything."""
    point = resume_point(workdir)
    change = check_resume(config, workdir, point)
    changes = (point.config_changes if point else []) + ([change] if change else [])
    previous = (point.step, point.config) if change and point.config is not None else None
    write_provenance(workdir, config, mesh, config_changes=changes, previous_config=previous)
    return {"config_hash": config_hash(config), "config": canonical(config.to_dict()),
            "config_changes": changes}


def _related(field_change, dims) -> bool:
    """Whether a changed field's old/new values explain a pair of differing dimensions: equal to
    them, or in the same ratio (d_head inside a fused heads × d_head axis)."""
    old, new = field_change
    if isinstance(old, bool) or isinstance(new, bool) or not all(isinstance(v, int) for v in (old, new)):
        return False
    return any((o, n) == (old, new) or o * new == n * old for o, n in dims)


def fields_behind(mismatch, previous: Optional[dict], current: Optional[dict]) -> dict:
    """The changed model fields behind a shape mismatch (path, saved shape, wanted shape): those
    whose values appear in the differing dimensions, else every changed model field."""
    if previous is None or current is None:
        return {}
    changed = {p: c for p, c in changed_fields(previous, current).items() if p.startswith("model.")}
    _, saved, wanted = mismatch
    dims = ([(o, n) for o, n in zip(saved, wanted) if o != n]
            if saved is not None and wanted is not None and len(saved) == len(wanted) else [])
    related = {p: c for p, c in changed.items() if _related(c, dims)}
    return related or changed


def explain_mismatch(error: ShapeMismatchError, previous: Optional[dict], current: Optional[dict]):
    """The error with the config fields behind it added to its message."""
    behind = fields_behind(error.mismatches[0], previous, current)
    if not behind:
        return error
    fields = ", ".join(change_text(p, old, new) for p, (old, new) in behind.items())
    return ShapeMismatchError(f"{error}; the config field(s) behind it: {fields}", error.mismatches)
