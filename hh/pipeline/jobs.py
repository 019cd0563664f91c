"""The pipeline's jobs: which steps a config runs, chosen by its `job` field.

    main    configs/pipeline.py   every stage of Bai et al. 2022 once (hh/pipeline/steps.py)
    online  configs/online.py     the iterated online loop, §4.5 (hh/pipeline/online.py)
    findings configs/findings.py  the paper's findings over seeds, with verdicts (hh/pipeline/findings.py)

Both run through the same runner (runner.py): one folder per step, skipped when finished with the
same config and inputs, resumed when interrupted, `--force` and `--until`.
"""

from hh.config import ConfigError, validate_counts
from hh.pipeline import findings, online, steps as main_steps
from hh.pipeline.runner import run_steps, Step

JOBS = {"main": main_steps.steps, "online": online.steps, "findings": findings.steps}


def job_steps(config) -> list[Step]:
    """The steps of the config's job, in order, after checking every size and count field (a
    ConfigError names a bad field before anything runs)."""
    job = config.get("job")
    if job not in JOBS:
        raise ConfigError(f"config.job={job!r}: known jobs are {sorted(JOBS)} (a single stage's "
                          f"config runs with `python -m hh.main`)")
    validate_counts(config)
    return JOBS[job](config)


def select(all_steps: list[Step], until: str = "", force=()) -> list[Step]:
    """The steps up to and including `until` (all of them when it is empty); every name in `until`
    and `force` must be a step."""
    names = [s.name for s in all_steps]
    for name in list(force) + ([until] if until else []):
        if name not in names:
            raise ConfigError(f"unknown step {name!r}: the steps are {', '.join(names)}")
    return all_steps[:names.index(until) + 1] if until else all_steps


def run_job(config, workdir, until: str = "", force=(), log=print) -> dict:
    """Runs (or resumes) the config's job under `workdir`; -> {step: headline numbers}.
    `force`: steps to rerun from scratch even if they finished; `until`: the last step to run."""
    chosen = select(job_steps(config), until, force)
    return run_steps(chosen, config, workdir, force=set(force), log=log)
