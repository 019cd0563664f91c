"""Running steps in order, each in its own folder, skipping the ones that already finished.

A step is skipped only when its config section AND the fingerprints of its inputs' outputs match
what it recorded when it finished, and its own outputs are still the ones it recorded. A step
that started with the same config and inputs but did not finish (a crash, a kill, a preemption)
is run again in the same folder, so a training stage resumes from its last checkpoint. A step whose config or inputs changed starts afresh; its old folder is renamed
`<name>.stale-<n>`, never deleted.

Each step's record is `<workdir>/<name>/pipeline_step.json`, written atomically.
"""

import copy
import dataclasses
import hashlib
import json
import time
from typing import Callable

import jax
from etils import epath

from hh.io import atomic_write_text

STAMP = "pipeline_step.json"
WHOLE_FILE_BELOW = 64 << 20   # bigger files are fingerprinted by size + first and last MiB


@dataclasses.dataclass(frozen=True)
class Step:
    """name: its folder under the workdir; inputs: the earlier steps whose outputs it reads;
    section(config): the part of the pipeline config it depends on; run(config, folder, folders)
    -> a summary dict of headline numbers; outputs(folder): the paths its fingerprint covers."""
    name: str
    inputs: tuple
    section: Callable
    run: Callable
    outputs: Callable
    about: str = ""


class StepFailed(RuntimeError):
    pass


def file_digest(path: epath.Path) -> str:
    size = path.stat().length
    if size < WHOLE_FILE_BELOW:
        data = path.read_bytes()
    else:
        with path.open("rb") as f:
            head = f.read(1 << 20)
            f.seek(max(0, size - (1 << 20)))
            data = head + f.read() + str(size).encode()
    return hashlib.sha256(data).hexdigest()


def walk(folder: epath.Path):
    """Every file under `folder` (epath has no recursive glob on gs://)."""
    for p in folder.iterdir():
        if p.is_dir():
            yield from walk(p)
        else:
            yield p


def tree_digest(paths) -> str:
    """sha256 over every file under `paths` (relative names, sizes and contents), in sorted order;
    the step records themselves are left out."""
    h = hashlib.sha256()
    for root in paths:
        root = epath.Path(root)
        if not root.exists():
            h.update(f"missing:{root.name}".encode())
            continue
        files = sorted(p for p in ([root] if root.is_file() else walk(root)) if p.name != STAMP)
        for p in files:
            rel = p.name if root.is_file() else str(p.relative_to(root))
            h.update(f"{rel}\0{file_digest(p)}\0".encode())
    return h.hexdigest()[:16]


def section_dict(section) -> dict:
    return section.to_dict() if hasattr(section, "to_dict") else dict(section)


def step_key(step: Step, config, input_fingerprints: dict) -> str:
    """What must match for a finished step to be skipped: its config section and its inputs."""
    canonical = json.dumps({"step": step.name, "config": section_dict(step.section(config)),
                            "inputs": input_fingerprints}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def read_stamp(folder: epath.Path):
    path = folder / STAMP
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None            # a torn record (cannot happen with atomic writes) counts as none


def write_stamp(folder: epath.Path, record: dict) -> None:
    """Atomically; only process 0 writes (on a pod every process runs the same steps)."""
    if jax.process_index() != 0:
        return
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / STAMP, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")


def decide(step: Step, folder: epath.Path, key: str) -> str:
    """"skip", "resume" (same key, unfinished) or "fresh"."""
    stamp = read_stamp(folder)
    if stamp is None or stamp.get("key") != key:
        return "fresh"
    if stamp.get("done") and stamp.get("output") == tree_digest(step.outputs(folder)):
        return "skip"
    return "resume"


def set_aside(folder: epath.Path) -> epath.Path | None:
    """Renames a non-empty folder to `<name>.stale-<n>` (the first free n); returns the new path."""
    if jax.process_index() != 0 or not folder.exists() or not any(folder.iterdir()):
        return None
    n = 1
    while (target := folder.parent / f"{folder.name}.stale-{n}").exists():
        n += 1
    folder.rename(target)
    return target


def run_steps(steps, config, workdir, force=(), log=print) -> dict:
    """Runs `steps` in order under `workdir`; -> {name: summary}. `force`: step names to rerun
    from scratch even if they finished."""
    workdir = epath.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    folders = {s.name: workdir / s.name for s in steps}
    fingerprints, summaries, width = {}, {}, max(len(s.name) for s in steps)
    for i, step in enumerate(steps, 1):
        missing = [n for n in step.inputs if n not in fingerprints]
        if missing:
            raise StepFailed(f"step {step.name!r} needs {missing}, which run after it or are not steps")
        folder = folders[step.name]
        key = step_key(step, config, {n: fingerprints[n] for n in step.inputs})
        action = "fresh" if step.name in force else decide(step, folder, key)
        prefix = f"[{i:2d}/{len(steps)}] {step.name:<{width}}"
        if action == "skip":
            stamp = read_stamp(folder)
            fingerprints[step.name], summaries[step.name] = stamp["output"], stamp.get("summary", {})
            log(f"{prefix}  skipped: finished, config and inputs unchanged  {headline(summaries[step.name])}")
            continue
        if action == "fresh":
            moved = set_aside(folder)
            if moved is not None:
                log(f"{prefix}  config or inputs changed: the old run moved to {moved.name}")
        log(f"{prefix}  {'resuming' if action == 'resume' else 'running'}: {step.about}")
        write_stamp(folder, {"step": step.name, "key": key, "done": False, "started": time.time()})
        start = time.perf_counter()
        summary = step.run(copy.deepcopy(config), folder, folders)
        seconds = time.perf_counter() - start
        output = tree_digest(step.outputs(folder))
        write_stamp(folder, {"step": step.name, "key": key, "done": True, "output": output,
                             "seconds": seconds, "summary": summary, "finished": time.time()})
        fingerprints[step.name], summaries[step.name] = output, summary
        log(f"{prefix}  done in {seconds:.0f} s  {headline(summary)}")
    return summaries


def headline(summary: dict) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    return "  ".join(f"{k}={fmt(v)}" for k, v in summary.items() if not isinstance(v, (dict, list)))
