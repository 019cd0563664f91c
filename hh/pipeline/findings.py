"""The findings job's steps (configs/findings.py), run by hh.pipeline:
`python -m hh.pipeline --config configs/findings.py:tiny --workdir DIR`.

    main-s<k>, capacity, robustness-s<k>, online-s<k>, frontier-s<k>, findings

Each experiment step runs an existing job or study in its folder: the main job and the online
loop through their own step runners (so a rerun skips their finished steps and resumes an
interrupted one), the capacity grid, the robustness study and the PPO/DPO/IPO/best-of-k frontier
through hh.main.run (a finished stage resumes at its end). The `findings` step only reads: it measures (hh/findings/measures.py),
decides each verdict by the config's rule (hh/findings/verdicts.py) and writes findings/findings.md,
findings.json and one PNG per finding (hh/findings/report.py).
"""

import copy

from etils import epath

from hh.config import validate_counts
from hh.eval.robustness import run_study
from hh.findings.capacity import run_capacity
from hh.findings.frontier import run_frontier
from hh.findings.measures import MEASURES
from hh.findings.report import write_findings
from hh.findings.verdicts import parse_criterion, verdict
from hh.pipeline import online as online_job
from hh.pipeline import steps as main_job
from hh.pipeline.runner import Step, read_stamp, run_steps, walk
from hh.train.provenance import code_version

TRAINING_STAGES = ("lm", "pmp", "pm", "distill", "ppo")
ONLINE_STAGES = ("lm", "distill", "pm", "ppo")
# The online loop's judge (the gold LM and gold PM) is the instrument, not the thing measured: one
# judge for every seed, trained in the first online seed's workdir and reused by the others.
SHARED_ONLINE_STEPS = ("tokenizer", "gold_lm", "gold")


def seeded(config, stages, seed: int):
    """A copy of a job config with every training stage's `seed` (initialisation, data order) set."""
    config = copy.deepcopy(config)
    for name in stages:
        config[name].seed = seed
    return config


def main_config(config, seed: int):
    return seeded(config.main, TRAINING_STAGES, seed)


def online_config(config, seed: int):
    c = seeded(config.online, ONLINE_STAGES, seed)
    c.collect.seed = seed
    return c


def copy_tree(source: epath.Path, target: epath.Path) -> None:
    for path in walk(source):
        out = target / str(path.relative_to(source))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(path.read_bytes())


def reuse_finished(source: epath.Path, target: epath.Path, names) -> None:
    """Copies the finished steps `names` of one job's workdir into another's that lacks them, so the
    second job's runner skips them (same config section, same inputs: same step key)."""
    for name in names:
        stamp = read_stamp(source / name)
        if stamp and stamp.get("done") and read_stamp(target / name) is None:
            copy_tree(source / name, target / name)


def sub_job(make_config, job_steps, seed: int, reuse=None):
    """A step that runs a whole job (its own steps, skipping and resuming) in the step's folder;
    `reuse(folders)` -> (workdir, step names) of finished steps to copy in first."""
    def run(config, folder, folders):
        cfg = make_config(config, seed)
        if reuse is not None:
            source, names = reuse(folders)
            reuse_finished(source, folder, names)
        summaries = run_steps(job_steps(cfg), cfg, folder, log=lambda line: print(f"  {folder.name} {line}", flush=True))
        return {"steps": len(summaries)}
    return run


def run_robustness(seed: int):
    """A step running the robustness study (hh.eval.robustness) from the seed's main-job LM."""
    def run(config, folder, folders):
        r = config.robustness
        ppo = copy.deepcopy(r.ppo)
        ppo.seed = seed
        pm = copy.deepcopy(r.pm)
        pm.seed = seed
        summary = run_study(str(folders[f"main-s{seed}"] / "lm"), folder, pm, ppo, ppo_steps=r.ppo_steps)
        return {"gap_end": summary["gap_end"], "gold_end": summary.get("gold_end")}
    return run


def run_findings(config, folder, folders):
    """Measures every finding of config.verdicts from the experiment steps' folders, decides its
    verdict by its criteria, and writes the report with the code version it was decided at."""
    findings = {}
    for fid, rule in sorted(config.verdicts.items(), key=lambda item: int(item[0][1:])):
        measured = MEASURES[fid](config, folders)
        decided = verdict(list(rule.criteria), measured["per_seed"])
        findings[fid] = {"claim": rule.claim, "source": rule.source, **decided, **measured}
    provenance = {**code_version(), "preset": config.preset, "seeds": list(config.seeds),
                  "online_seeds": list(config.online_seeds)}
    path = write_findings(findings, provenance, folder)
    return {"report": str(path), **{fid: f["verdict"] for fid, f in findings.items()}}


def check_config(config) -> None:
    """Before anything runs: every finding has a measure function and well-formed criteria, and the
    nested jobs' configs pass their own checks (a ConfigError or ValueError names the field)."""
    validate_counts(config.main, "config.main")
    validate_counts(config.online, "config.online")
    main_job.tension_tests(config.main)
    online_job.steps(config.online)
    if not set(config.capacity.seeds) <= set(config.seeds):
        raise ValueError(f"config.capacity.seeds={list(config.capacity.seeds)}: each must be one of config.seeds "
                         f"{list(config.seeds)} (the grid reuses that seed's main-job LM)")
    for fid, rule in config.verdicts.items():
        if fid not in MEASURES:
            raise ValueError(f"config.verdicts.{fid}: no such finding (known: {', '.join(MEASURES)})")
        for text in rule.criteria:
            parse_criterion(text)


def steps(config):
    """The findings job's steps, in order."""
    check_config(config)
    seeds, online_seeds = list(config.seeds), list(config.online_seeds)
    mains = [Step(f"main-s{k}", (), lambda c, k=k: main_config(c, k).to_dict(),
                  sub_job(main_config, main_job.steps, k), lambda folder: [folder / "report"],
                  f"the main job at seed {k}") for k in seeds]
    capacity = Step("capacity", tuple(f"main-s{k}" for k in config.capacity.seeds),
                    lambda c: {"capacity": c.capacity.to_dict(), "main": c.main.to_dict()},
                    run_capacity, lambda folder: [folder / "capacity.json"], "PM accuracy by size, pairs and PMP")
    robust = [Step(f"robustness-s{k}", (f"main-s{k}",), lambda c: c.robustness.to_dict(), run_robustness(k),
                   lambda folder: [folder / "ppo" / "robustness.json"], f"train PM vs test PM vs gold, seed {k}")
              for k in seeds]
    first = f"online-s{online_seeds[0]}" if online_seeds else ""
    online = [Step(f"online-s{k}", () if i == 0 else (first,), lambda c, k=k: online_config(c, k).to_dict(),
                   sub_job(online_config, online_job.steps, k,
                           reuse=None if i == 0 else (lambda folders: (folders[first], SHARED_ONLINE_STEPS))),
                   lambda folder: [folder / "report"], f"the online loop at seed {k}")
              for i, k in enumerate(online_seeds)]
    frontier = [Step(f"frontier-s{k}", (f"main-s{k}",), lambda c: {"frontier": c.frontier.to_dict()}, run_frontier(k),
                     lambda folder: [folder / "frontier.json"], f"PPO, DPO, IPO, best-of-k: gold against KL, seed {k}")
                for k in seeds]
    every = mains + [capacity] + robust + online + frontier
    return every + [Step("findings", tuple(s.name for s in every),
                         lambda c: {"verdicts": c.verdicts.to_dict(), "seeds": list(c.seeds)},
                         run_findings, lambda folder: [folder / "findings.json"], "verdicts and the report")]
