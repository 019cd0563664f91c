"""The online job's steps (Bai et al. 2022 §4.5), run by hh.pipeline:
`python -m hh.pipeline --config configs/online.py:tiny --workdir DIR [--force STEP,...] [--until STEP]`.

    tokenizer, lm, distill, gold_lm, gold,
    round<r>/collect, round<r>/data, round<r>/pm, round<r>/ppo, round<r>/eval   for r < rounds,
    report

Each step has its own folder under the workdir and runs through the pipeline's runner
(hh/pipeline/runner.py): skipped when finished with the same config and inputs, resumed when
interrupted (training from its last checkpoint, collection after its last stored comparison), so
rounds resume after a crash: rerun the same command. The tokenizer and training steps are the main
job's (hh/pipeline/steps.py) with the loop's links; collect, data, eval and the report are the
loop's own (collect.py, mix.py, evaluate.py, report.py).
"""

import json

from hh.config import ConfigError
from hh.io import atomic_write_text
from hh.online import collect, evaluate, mix, report
from hh.online.pool import build_pool, round_specs
from hh.pipeline.runner import Step, read_stamp
from hh.pipeline.steps import files, latest_checkpoint, report_step, tokenizer_step, train_step
from hh.serve.export import write_jsonl
from hh.serve.store import Store
from hh.trained import LoadedPM

STORE = "comparisons.sqlite"


def round_name(r: int, part: str) -> str:
    return f"round{r}/{part}"


def sections(*names):
    """A step's config: these top-level sections, as {name: dict} (the form its recorded step keys
    hash, so existing workdirs keep resuming)."""
    return lambda config: {n: config[n].to_dict() for n in names}


# --- the loop's links -----------------------------------------------------------------------------

def round_data(r: int):
    """Points the round's PM at its data step's mixture: the `hh_rlhf/local` tranche it wrote."""
    def link(cfg, folders):
        data = folders[round_name(r, "data")]
        with cfg.unlocked():
            cfg.data.helpful_sources = ["hh_rlhf/local"]
            cfg.data.harmless_sources = []
            cfg.data.helpful_fraction = 1.0
            cfg.data.train_pairs = json.loads((data / "mix.json").read_text())["pairs"]
            cfg.data.manual_dir = str(data)
            cfg.data.tfds_data_dir = str(data / "tfds")
    return link


# --- round steps -----------------------------------------------------------------------------------

def collect_step(r: int):
    """Deploys the round's pool and collects its comparisons into the store, then exports them
    (train / held-out) and measures the labels against the gold labeler."""
    def run(config, folder, folders):
        c = config.collect
        previous_pm = LoadedPM(folders[round_name(r - 1, "pm")]) if r > 0 else None
        specs = round_specs(config.pool, r, folders["distill"],
                            folders[round_name(r - 1, "ppo")] if r > 0 else None)
        pool = build_pool(specs, config.pool, previous_pm, rows=c.rows_per_call, seed=c.seed + r)
        store = Store(folder / STORE)
        tag = f"round{r}"
        gold = evaluate.load_labeler(config, folders)   # also what the agreement is measured against
        if c.source == "simulated":
            labeler = gold if c.labeler == "gold" else evaluate.rule_labeler(config)
            stats = collect.collect_simulated(store, pool, labeler, c, r, tag, config.lm.data.seed)
        else:
            stats = collect.collect_human(store, pool, c, tag)
        rows = store.comparisons(tag)
        train, test, dropped = evaluate.export_round(rows, c.min_strength, c.test_fraction)
        write_jsonl(train, folder / mix.ONLINE_FILE)
        write_jsonl(test, folder / mix.HELD_OUT_FILE)
        margins = evaluate.gold_margins(gold, rows)
        summary = {"round": r, "pool": [s.name for s in specs], "stats": stats, "train": len(train),
                   "held_out": len(test), "dropped_weak": dropped, **collect.summary(rows, margins),
                   # the same choices against the world's exact judge: what the labels are worth
                   "agreement_with_judge": collect.agreement_with_gold(rows, evaluate.judge_margins(rows))}
        if previous_pm is not None:   # the deployed PM on data from its own policies: distribution shift
            # (its static and held-out accuracies are in its own round's eval.json)
            summary["previous_pm_accuracy"] = {"fresh": evaluate.pm_accuracy_on(previous_pm,
                                                                                evaluate.split_pairs(train + test))}
        atomic_write_text(folder / "collect.json", json.dumps(summary, indent=2) + "\n")
        return {"comparisons": len(rows), "kept": len(train) + len(test),
                "agreement_with_gold": summary.get("agreement_with_gold"),
                "agreement_with_judge": summary["agreement_with_judge"]}
    return run


def data_step(r: int):
    """The round's PM data: the collected rounds so far mixed with static comparisons (mix.py)."""
    def run(config, folder, folders):
        online = [mix.read_jsonl(folders[round_name(k, "collect")] / mix.ONLINE_FILE) for k in range(r + 1)]
        rows, counts = mix.mixture(config.mix, online, seed=config.lm.data.seed)
        write_jsonl(rows, folder / "local" / "train.jsonl.gz")
        atomic_write_text(folder / "mix.json", json.dumps({"pairs": len(rows), "sources": counts}, indent=2) + "\n")
        return {"pairs": len(rows), **counts}
    return run


def eval_step(r: int):
    """Gold and PM scores of the round's policy against round 0's (evaluate.py)."""
    def run(config, folder, folders):
        result = evaluate.evaluate_round(config, folders, r, folder)
        return {"gold_win_rate_vs_round0": result["gold_win_rate"], "pm_elo_vs_round0": result["pm_elo"],
                "pm_static_accuracy": result["pm_accuracy"]["static"]}
    return run


# --- the step table --------------------------------------------------------------------------------

def round_steps(config, r: int) -> list[Step]:
    """Round r's collect, data, pm, ppo and eval steps."""
    previous = (round_name(r - 1, "pm"), round_name(r - 1, "ppo")) if r else ()
    collected = tuple(round_name(k, "collect") for k in range(r + 1))
    return [
        Step(round_name(r, "collect"), ("distill", "gold") + previous, sections("collect", "pool"),
             collect_step(r), files(STORE, "collect.json", mix.ONLINE_FILE, mix.HELD_OUT_FILE),
             f"round {r}: {config.collect.comparisons} comparisons ({config.collect.source})"),
        Step(round_name(r, "data"), collected, sections("mix"),
             data_step(r), files("local", "mix.json"), "fresh + earlier + static comparisons"),
        Step(round_name(r, "pm"), ("lm", round_name(r, "data")), sections("pm"),
             train_step("pm", init_from="lm", link_data=round_data(r)), latest_checkpoint, f"round {r}: a new PM"),
        Step(round_name(r, "ppo"), ("distill", round_name(r, "pm")), sections("ppo"),
             train_step("ppo", init_from="distill", reward_model=round_name(r, "pm")), latest_checkpoint,
             f"round {r}: a new policy (PPO)"),
        Step(round_name(r, "eval"), (round_name(r, "ppo"), round_name(r, "pm"), "gold") + collected
             + ((round_name(0, "eval"),) if r else ()),
             sections("eval", "collect"), eval_step(r), files("eval.json", "responses.jsonl"),
             f"round {r}: gold and PM scores of the policy"),
    ]


def write_report(config, folders, out):
    """The loop's report (hh.online.report), with each step's wall time from its stamp."""
    seconds = {name: (read_stamp(folder) or {}).get("seconds") for name, folder in folders.items()}
    return report.write_report(config, folders, out, seconds)


def steps(config) -> list[Step]:
    """The online job's steps, in order (the names are folders under the workdir); the loop's own
    fields are checked first."""
    validate(config)
    out = [
        tokenizer_step(),
        Step("lm", ("tokenizer",), sections("lm"), train_step("lm"), latest_checkpoint, "LM pretraining"),
        Step("distill", ("lm",), sections("distill"), train_step("distill", init_from="lm"), latest_checkpoint,
             "HHH context distillation (the initial policy)"),
        Step("gold_lm", ("tokenizer",), sections("gold_lm"), train_step("gold_lm"), latest_checkpoint,
             "the gold PM's LM (larger than the round LM)"),
        Step("gold", ("gold_lm",), sections("gold"), train_step("gold", init_from="gold_lm"), latest_checkpoint,
             "the gold PM (the simulated labeler)"),
    ]
    for r in range(config.rounds):
        out += round_steps(config, r)
    out.append(Step("report", tuple(round_name(r, p) for r in range(config.rounds) for p in ("collect", "eval")),
                    lambda c: {"rounds": c.rounds}, report_step(write_report), files("report.md"),
                    "report.md"))
    return out


CHOICES = {"collect.source": ("simulated", "human"), "collect.labeler": ("gold", "rule"),
           "pool.pairing": ("same", "random")}


def validate(config) -> None:
    """The loop's own fields, before a step runs (each stage checks its own section)."""
    for path, choices in CHOICES.items():
        section, field = path.split(".")
        if config[section][field] not in choices:
            raise ConfigError(f"config.{path}={config[section][field]!r}: use one of {list(choices)}")
    if config.rounds < 1:
        raise ConfigError(f"config.rounds={config.rounds}: at least 1")
    if not 0.0 <= config.mix.online_fraction <= 1.0 or not 0.0 <= config.collect.red_team_fraction <= 1.0:
        raise ConfigError("config.mix.online_fraction and config.collect.red_team_fraction must be in [0, 1]")
    if not 0.0 <= config.collect.test_fraction < 1.0:
        raise ConfigError(f"config.collect.test_fraction={config.collect.test_fraction}: use 0 <= f < 1")
