"""What each step of the main job does: tokenizer → LM → PMP → PM → PM evaluation → context
distillation → PPO → best-of-k → Elo → OOD → report (Bai et al. 2022 end to end, small).

Training steps call the same stage functions as `python -m hh.main` (hh.main.run) on the stage's
own config section, with the links between stages filled in here: the shared tokenizer, each
`init_from`, the PPO reward model. Evaluation steps call the hh.eval / hh.rl libraries. Each step
returns a few headline numbers; the report reads the files the steps wrote.

The tokenizer step and the step helpers (`train_step`, `report_step`, `files`,
`latest_checkpoint`) are also the online job's (hh/pipeline/online.py).
"""

import copy
import json
import sys

from etils import epath

from hh import main
from hh.config import ConfigError
from hh.data import pm_sources, synthetic
from hh.data.sources import lm_documents, run_tokenizer, TOKENIZER_DIR
from hh.eval import mc
from hh.eval.adversaries import evaluate_adversaries, novelty_auroc
from hh.eval.gold import accuracy_judge
from hh.eval.ood_study import ood_study, prompt_texts, write_study
from hh.eval.pm_eval import cross_matrix, evaluate_pm
from hh.eval.policy_elo import Entry, policy_elo, write_elo
from hh.io import atomic_write_text
from hh.parallel import distributed
from hh.pipeline.headlines import STAGE_HEADLINES
from hh.pipeline.plots import plot_best_of
from hh.pipeline.report import write_report
from hh.pipeline.runner import Step
from hh.rl.best_of import evaluate_best_of
from hh.trained import LoadedLM, LoadedPM
from hh.train.workdir import CHECKPOINT_DIR, latest_step


def latest_checkpoint(folder: epath.Path) -> list:
    """The newest checkpoint step folder (what later stages read), or nothing."""
    step = latest_step(folder)
    return [folder / CHECKPOINT_DIR / str(step)] if step is not None else []


# --- the tokenizer ------------------------------------------------------------------------------

def tokenizer_spec(config, folders) -> str:
    """The LM's data.tokenizer: the trained tokenizer's folder (or "bytes" / a given directory)."""
    spec = config.lm.data.tokenizer
    return str(folders["tokenizer"] / TOKENIZER_DIR) if spec == "sentencepiece" else spec


def run_tokenizer_step(config, folder, folders):
    """SentencePiece trained once on the LM's training documents; every stage reads this one."""
    data = config.lm.data
    if data.tokenizer != "sentencepiece":
        atomic_write_text(folder / "tokenizer.txt", data.tokenizer + "\n")
        return {"tokenizer": data.tokenizer}
    train, _ = lm_documents(data)
    tokenizer = run_tokenizer(data, train, str(folder))
    return {"vocab": int(tokenizer.vocab_size), "documents": len(train)}


def tokenizer_section(config):
    d = config.lm.data
    return {k: d[k] for k in ("source", "tokenizer", "tokenizer_vocab_size", "seed", "world_size", "synthetic_documents",
                              "eval_documents", "eval_fraction")}


# --- training stages ----------------------------------------------------------------------------

def linked(config, name: str, folders, init_from: str = "", reward_model: str = ""):
    """The config section `name` with its links to earlier steps filled in: the LM's tokenizer,
    `init_from` and PPO's `reward_model` (each the name of the step whose folder it reads)."""
    cfg = config[name]
    if cfg.stage == "lm":       # every LM of a job reads the job's tokenizer
        cfg.data.tokenizer = tokenizer_spec(config, folders)
    if init_from:
        cfg.init_from = str(folders[init_from])
    if reward_model:
        cfg.reward_model = str(folders[reward_model])
    return cfg


def run_stage(cfg, folder) -> None:
    """hh.main.run of one stage; a preempted stage exits with the preemption status (the
    checkpoint is saved: rerunning the same command resumes it)."""
    result = main.run(cfg, str(folder))
    if getattr(result, "preempted", False):
        print(f"{folder} was preempted at step {result.step}; rerun the same command to resume",
              file=sys.stderr, flush=True)
        sys.exit(distributed.EXIT_PREEMPTED)


def train_step(name: str, init_from: str = "", reward_model: str = "", link_data=None):
    """A step that trains the stage of config section `name` with hh.main.run, linked to earlier
    steps as `linked` says; `link_data(cfg, folders)`, when given, also points the section's data
    at an earlier step's output."""
    def run(config, folder, folders):
        cfg = linked(config, name, folders, init_from, reward_model)
        if link_data is not None:
            link_data(cfg, folders)
        run_stage(cfg, folder)
        return STAGE_HEADLINES[cfg.stage](folder)
    return run


# --- evaluation steps ---------------------------------------------------------------------------

def run_pm_eval(config, folder, folders):
    report = evaluate_pm(folders["pm"], list(config.pm_eval.test_sources) or None, out_dir=folder,
                         n_bins=config.pm_eval.n_bins)
    baselines = pm_baselines(config.pm)
    atomic_write_text(folder / "adversaries.json", json.dumps(baselines, indent=2) + "\n")
    return {"accuracy": report["all"]["accuracy"], "ece": report["all"]["calibration"]["ece"],
            "pairs": report["all"]["pairs"],
            **{f"{name}/test": row["test"]["accuracy"] for name, row in baselines.items()}}


def pm_baselines(pm_cfg) -> dict:
    """The shallow adversaries (hh.eval.adversaries) fitted on the PM's own training mixture and
    scored on its held-out pairs: what the PM's held-out accuracy must be read against."""
    train = pm_sources.train_source(pm_cfg.data, pm_cfg.train)
    test = pm_sources.eval_source(pm_cfg.data)
    return evaluate_adversaries([train[i] for i in range(len(train))], [test[i] for i in range(len(test))])


def tension_tests(config) -> list:
    """The tension step's test sets: config.tension.test_sources, or fresh pairs of each synthetic
    tranche about its training entities, past the rows any of the step's PMs trains on."""
    if config.tension.test_sources:
        return list(config.tension.test_sources)
    start, n = config.pm.data.train_pairs, config.tension.fresh_pairs
    if start + n > config.pm.data.synthetic_comparisons:
        raise ConfigError(f"tension.fresh_pairs={n}: pm.data.train_pairs ({start}) + fresh_pairs is more than "
                          f"pm.data.synthetic_comparisons ({config.pm.data.synthetic_comparisons})")
    return [f"synthetic-{kind}:train[{start}:{start + n}]" for kind in ("helpful", "harmless")]


def run_tension(config, folder, folders):
    """Trains a PM per tension.helpful_fractions (the main PM's recipe and pair count, from the
    PMP checkpoint) and scores them with the main PM on the tension tests (hh.eval.pm_eval.
    cross_matrix); the headline: each single-tranche PM on the other tranche's conflicting pairs."""
    workdirs = [folders["pm"]]
    for fraction in config.tension.helpful_fractions:
        cfg = copy.deepcopy(linked(config, "pm", folders, init_from="pmp"))
        cfg.data.helpful_fraction = float(fraction)
        run_stage(cfg, folder / f"helpful-{fraction:.2f}")
        workdirs.append(folder / f"helpful-{fraction:.2f}")
    tests = tension_tests(config)
    result = cross_matrix(workdirs, tests, folder)
    heads = {}
    for fraction, conflicts in zip(result["helpful_fraction"], result["conflict_accuracy"]):
        for spec, value in zip(tests, conflicts):
            if value is not None:
                heads[f"h{fraction:.2f}/{pm_sources.parse_spec(spec, 'train')[0]}/conflict"] = value
    return heads


def run_best_of(config, folder, folders):
    c = config.best_of
    report = evaluate_best_of(LoadedLM(folders[c.policy]), LoadedPM(folders["pm"]), list(c.ks),
                              c.prompts, c.n_prompts, c.max_new_tokens, seed=c.seed,
                              gold=accuracy_judge(c.prompts))
    atomic_write_text(folder / "best_of.json", json.dumps(report, indent=2) + "\n")
    plot_best_of(report, folders["ppo"], folder / "best_of.png")
    gold = {f"k{k}/gold": row["gold"]["mean"] for k, row in report["k"].items() if "gold" in row}
    return {**{f"k{k}": row["mean_best_score"] for k, row in report["k"].items()}, **gold}


def parse_entry(text: str):
    """"STAGE" or "STAGE@K" -> (name, stage, k)."""
    stage, _, k = text.partition("@")
    return text, stage, int(k or 1)


def run_elo(config, folder, folders):
    c = config.elo
    entries = [Entry(name, str(folders[stage]), k) for name, stage, k in map(parse_entry, c.entries)]
    report = policy_elo(entries, LoadedPM(folders["pm"]), list(c.prompts), c.n_prompts,
                        c.max_new_tokens, seed=c.seed)
    write_elo(report, folder)
    gold = {f"gold_{labeler}/{row['model']}": row["elo"]
            for labeler, section in report["gold"].items() for row in section["table"]}
    return {**{row["model"]: row["elo"] for row in report["table"]}, **gold}


def run_alignment_tax(config, folder, folders):
    c = config.alignment_tax
    tasks = list(c.tasks)
    if c.n_arithmetic >= 0:
        path = folder / "world_questions.jsonl"
        atomic_write_text(path, "".join(json.dumps(q) + "\n" for q in synthetic.world_questions(c.n_arithmetic, seed=c.seed, world_size=config.lm.data.world_size)))
        tasks.insert(0, f"jsonl:{path}")
    result = mc.alignment_tax(folders[c.base], folders[c.policy], tasks, c.shots, c.seed)
    mc.write_report(result, folder)
    return {f"{r['task']}/{r['metric']}/delta": r["delta"] for r in result["rows"]}


def run_ood(config, folder, folders):
    c = config.ood
    lm = LoadedLM(folders[c.model])
    data_cfg = lm.config.data
    with data_cfg.unlocked():
        data_cfg.manual_dir = c.manual_dir or data_cfg.get("manual_dir", "")
        data_cfg.tfds_data_dir = c.tfds_data_dir or str(folder / "tfds")
    report = ood_study(lm, c.in_source, list(c.out_sources), c.n_fit, c.n_test, c.exposure_m,
                       c.exposure_draws, c.pooling, c.seed, data_cfg)
    report["novelty_auroc"] = novelty_aurocs(c, data_cfg)
    write_study(report, folder)
    headlines = {f"{spec}/{method}": row["auroc"] for spec, methods in report["best"].items()
                 for method, row in methods.items()}
    headlines.update({f"{spec}/novelty": value for spec, value in report["novelty_auroc"].items()})
    return headlines


def novelty_aurocs(c, data_cfg) -> dict:
    """{OOD source: lexical-novelty AUROC} on the prompts the OOD study scores (the vocabulary of
    its n_fit in-distribution train prompts; its n_test held-out and OOD prompts, the first rows
    of each source as in hh.eval.ood_study): the bar an activation detector must clear (§5.4)."""
    fit_in = prompt_texts(c.in_source, "train", c.n_fit, data_cfg)
    test_in = prompt_texts(c.in_source, "test", c.n_test, data_cfg)
    return {spec: novelty_auroc(fit_in, test_in, prompt_texts(spec, "test", c.n_test, data_cfg))
            for spec in c.out_sources}


def report_step(write):
    """A step that writes the job's report with `write(config, folders, folder)` -> report.md's path."""
    def run(config, folder, folders):
        return {"report": str(write(config, folders, folder))}
    return run


# --- the step table -----------------------------------------------------------------------------

def files(*names):
    """A step's outputs: these files or folders in its folder."""
    return lambda folder: [folder / n for n in names]


def tokenizer_step() -> Step:
    """The first step of both jobs: the run's SentencePiece model, trained on the LM's text."""
    return Step("tokenizer", (), tokenizer_section, run_tokenizer_step, files(TOKENIZER_DIR, "tokenizer.txt"),
                "SentencePiece on the LM's training text")


def steps(config):
    """The main job's steps, in order (the names are folders under the workdir)."""
    sec = lambda name: (lambda c: c[name])   # noqa: E731
    tension_tests(config)     # a tension field that does not fit fails before anything runs
    elo_inputs = tuple(dict.fromkeys(parse_entry(e)[1] for e in config.elo.entries)) + ("pm",)
    return [
        tokenizer_step(),
        Step("lm", ("tokenizer",), sec("lm"), train_step("lm"), latest_checkpoint, "LM pretraining"),
        Step("pmp", ("lm",), sec("pmp"), train_step("pmp", init_from="lm"), latest_checkpoint,
             "preference-model pretraining"),
        Step("pm", ("pmp",), sec("pm"), train_step("pm", init_from="pmp"), latest_checkpoint,
             "PM on helpful + harmless comparisons"),
        Step("pm_eval", ("pm",), sec("pm_eval"), run_pm_eval, files("pm_eval.json", "adversaries.json"),
             "PM accuracy and calibration"),
        Step("tension", ("pmp", "pm"), lambda c: {"pm": c.pm.to_dict(), "tension": c.tension.to_dict()},
             run_tension, files("cross_matrix.json", "cross_matrix.png"),
             "single-tranche PMs beside the mixture: the helpful-vs-harmless tension"),
        Step("distill", ("lm",), sec("distill"), train_step("distill", init_from="lm"), latest_checkpoint,
             "HHH context distillation"),
        Step("ppo", ("distill", "pm"), sec("ppo"), train_step("ppo", init_from="distill", reward_model="pm"),
             latest_checkpoint, "PPO against the PM"),
        Step("best_of", (config.best_of.policy, "pm", "ppo"), sec("best_of"), run_best_of,
             files("best_of.json"), "best-of-k rejection sampling"),
        Step("elo", elo_inputs, sec("elo"), run_elo, files("elo.json"), "PM-judged Elo"),
        Step("alignment_tax", (config.alignment_tax.base, config.alignment_tax.policy),
             sec("alignment_tax"), run_alignment_tax, files("alignment_tax.json"),
             "multiple-choice evals of the LM and the PPO policy"),
        Step("ood", (config.ood.model,), sec("ood"), run_ood, files("ood.json"),
             "OOD detection of harmful requests"),
        Step("report", ("pm_eval", "tension", "ppo", "best_of", "elo", "alignment_tax", "ood"),
             lambda c: {"preset": c.preset},
             report_step(write_report), files("report.md"), "report.md"),
    ]
