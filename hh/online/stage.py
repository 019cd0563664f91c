"""The iterated online loop as one hh.main stage (`stage = "online"`, configs/online.py).

It is a list of pipeline steps (hh.pipeline.runner): each in its own folder under the workdir,
skipped when finished with the same config and inputs, resumed when interrupted (training from
its last checkpoint, collection after its last stored comparison). So rounds resume after a crash:
rerun the same command.

    tokenizer, lm, distill, gold,
    round<r>/collect, round<r>/data, round<r>/pm, round<r>/ppo, round<r>/eval   for r < rounds,
    report
"""

import json
import sys

from etils import epath

from hh import main
from hh.config import ConfigError
from hh.online import collect, evaluate, mix
from hh.online.pool import build_pool, round_specs
from hh.parallel import distributed
from hh.pipeline import steps as pipeline_steps
from hh.pipeline.runner import Step, run_steps

STORE = "comparisons.sqlite"


def round_name(r: int, part: str) -> str:
    return f"round{r}/{part}"


def training(name: str, link):
    """A step that runs a stage (hh.main.run) on the config section `name`, linked by `link`."""
    def run(config, folder, folders):
        cfg = link(config, folders)
        result = main.run(cfg, str(folder))
        if getattr(result, "preempted", False):
            print(f"{folder} was preempted at step {result.step}; rerun to resume", file=sys.stderr, flush=True)
            sys.exit(distributed.EXIT_PREEMPTED)
        kind = cfg.stage
        return pipeline_steps.STAGE_HEADLINES[kind](folder)
    return run


def link_lm(config, folders):
    cfg = config.lm
    cfg.data.tokenizer = pipeline_steps.tokenizer_spec(config, folders)
    return cfg


def link_from_lm(section):
    def link(config, folders):
        cfg = config[section]
        cfg.init_from = str(folders["lm"])
        return cfg
    return link


def link_gold(config, folders):
    cfg = config.gold
    cfg.init_from = str(folders["lm"])
    return cfg


def link_pm(r):
    def link(config, folders):
        cfg = config.pm
        cfg.init_from = str(folders["lm"])
        data = folders[round_name(r, "data")]
        with cfg.unlocked():
            cfg.data.helpful_sources = ["hh_rlhf/local"]
            cfg.data.harmless_sources = []
            cfg.data.helpful_fraction = 1.0
            cfg.data.train_pairs = json.loads((data / "mix.json").read_text())["pairs"]
            cfg.data.manual_dir = str(data)
            cfg.data.tfds_data_dir = str(data / "tfds")
        return cfg
    return link


def link_ppo(r):
    def link(config, folders):
        cfg = config.ppo
        cfg.init_from = str(folders["distill"])
        cfg.reward_model = str(folders[round_name(r, "pm")])
        return cfg
    return link


# --- round steps ---------------------------------------------------------------------------------

def collect_step(r):
    def run(config, folder, folders):
        from hh.eval.pm_eval import LoadedPM
        from hh.serve.store import Store

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
        mix.write_jsonl(train, folder / mix.ONLINE_FILE)
        mix.write_jsonl(test, folder / mix.HELD_OUT_FILE)
        margins = evaluate.gold_margins(gold, rows)
        report = {"round": r, "pool": [s.name for s in specs], "stats": stats, "train": len(train),
                  "held_out": len(test), "dropped_weak": dropped, **collect.summary(rows, margins)}
        if previous_pm is not None:   # the deployed PM on data from its own policies: distribution shift
            # (its static and held-out accuracies are in its own round's eval.json)
            report["previous_pm_accuracy"] = {"fresh": evaluate.pm_accuracy_on(previous_pm,
                                                                               evaluate.split_pairs(train + test))}
        (folder / "collect.json").write_text(json.dumps(report, indent=2) + "\n")
        return {"comparisons": len(rows), "kept": len(train) + len(test),
                "agreement_with_gold": report.get("agreement_with_gold")}
    return run


def data_step(r):
    def run(config, folder, folders):
        online = [mix.read_jsonl(folders[round_name(k, "collect")] / mix.ONLINE_FILE) for k in range(r + 1)]
        rows, counts = mix.mixture(config.mix, online, seed=config.lm.data.seed)
        mix.write_jsonl(rows, folder / "local" / "train.jsonl.gz")
        (folder / "mix.json").write_text(json.dumps({"pairs": len(rows), "sources": counts}, indent=2) + "\n")
        return {"pairs": len(rows), **counts}
    return run


def eval_step(r):
    def run(config, folder, folders):
        report = evaluate.evaluate_round(config, folders, r, folder)
        return {"gold_win_rate_vs_round0": report["gold_win_rate"], "pm_elo_vs_round0": report["pm_elo"],
                "pm_static_accuracy": report["pm_accuracy"]["static"]}
    return run


def report_step(config, folder, folders):
    from hh.online.report import write_report

    path = write_report(config, folders, folder)
    return {"report": str(path)}


def files(*names):
    return lambda folder: [folder / n for n in names]


def online_steps(config) -> list[Step]:
    sec = lambda *names: (lambda c: {n: c[n].to_dict() for n in names})   # noqa: E731
    latest = pipeline_steps.latest_checkpoint
    out = [
        Step("tokenizer", (), pipeline_steps.tokenizer_section, pipeline_steps.run_tokenizer_step,
             files("tokenizer", "tokenizer.txt"), "SentencePiece on the LM's training text"),
        Step("lm", ("tokenizer",), sec("lm"), training("lm", link_lm), latest, "LM pretraining"),
        Step("distill", ("lm",), sec("distill"), training("distill", link_from_lm("distill")), latest,
             "HHH context distillation (the initial policy)"),
        Step("gold", ("lm",), sec("gold"), training("gold", link_gold), latest,
             "the gold PM (the simulated labeler)"),
    ]
    for r in range(config.rounds):
        previous = (round_name(r - 1, "pm"), round_name(r - 1, "ppo")) if r else ()
        out += [
            Step(round_name(r, "collect"), ("distill", "gold") + previous, sec("collect", "pool"),
                 collect_step(r), files(STORE, "collect.json", mix.ONLINE_FILE, mix.HELD_OUT_FILE),
                 f"round {r}: {config.collect.comparisons} comparisons ({config.collect.source})"),
            Step(round_name(r, "data"), tuple(round_name(k, "collect") for k in range(r + 1)), sec("mix"),
                 data_step(r), files("local", "mix.json"), "fresh + earlier + static comparisons"),
            Step(round_name(r, "pm"), ("lm", round_name(r, "data")), sec("pm"),
                 training("pm", link_pm(r)), latest, f"round {r}: a new PM"),
            Step(round_name(r, "ppo"), ("distill", round_name(r, "pm")), sec("ppo"),
                 training("ppo", link_ppo(r)), latest, f"round {r}: a new policy (PPO)"),
            Step(round_name(r, "eval"), (round_name(r, "ppo"), round_name(r, "pm"), "gold")
                 + tuple(round_name(k, "collect") for k in range(r + 1)) + ((round_name(0, "eval"),) if r else ()),
                 sec("eval", "collect"), eval_step(r), files("eval.json", "responses.jsonl"),
                 f"round {r}: gold and PM scores of the policy"),
        ]
    out.append(Step("report", tuple(round_name(r, p) for r in range(config.rounds) for p in ("collect", "eval")),
                    lambda c: {"rounds": c.rounds}, report_step, files("report.md"), "report.md"))
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


def train_and_evaluate(config, workdir):
    """Runs (or resumes) every step; -> {step: headline numbers}."""
    validate(config)
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    return run_steps(online_steps(config), config, workdir)
