"""What each step of the main job does: tokenizer → LM → PMP → PM → PM evaluation → context
distillation → PPO → best-of-k → Elo → OOD → report (Bai et al. 2022 end to end, small).

Training steps call the same stage functions as `python -m hh.main` (hh.main.run) on the stage's
own config section, with the links between stages filled in here: the shared tokenizer, each
`init_from`, the PPO reward model. Evaluation steps call the hh.eval / hh.rl libraries. Each step
returns a few headline numbers; the report reads the files the steps wrote.
"""

import json
import math
import sys

from etils import epath

from hh import main
from hh.data import synthetic
from hh.data.sources import lm_documents, run_tokenizer, TOKENIZER_DIR
from hh.parallel import distributed
from hh.pipeline.runner import Step
from hh.train.metrics import read_metrics

# Which stage each training stage starts from (init_from), and PPO's reward model.
INIT_FROM = {"pmp": "lm", "pm": "pmp", "distill": "lm", "ppo": "distill"}
REWARD_MODEL = "pm"


def latest_checkpoint(folder: epath.Path) -> list:
    """The newest checkpoint step folder (what later stages read), or nothing."""
    ckpts = folder / "checkpoints"
    steps = [int(p.name) for p in ckpts.iterdir() if p.name.isdigit()] if ckpts.exists() else []
    return [ckpts / str(max(steps))] if steps else []


def last_row(folder: epath.Path, key: str):
    rows = [r for r in read_metrics(folder) if key in r]
    return rows[-1][key] if rows else float("nan")


def mean_rows(folder: epath.Path, key: str, first: int = 0, last: int = 0) -> float:
    """Mean of the first (or last) n logged values of `key`."""
    values = [r[key] for r in sorted(read_metrics(folder), key=lambda r: r["step"]) if key in r]
    values = values[:first] if first else values[-last:]
    return float(sum(values) / len(values)) if values else float("nan")


# --- the tokenizer ------------------------------------------------------------------------------

def tokenizer_spec(config, folders) -> str:
    """The LM's data.tokenizer: the trained tokenizer's folder (or "bytes" / a given directory)."""
    spec = config.lm.data.tokenizer
    return str(folders["tokenizer"] / TOKENIZER_DIR) if spec == "sentencepiece" else spec


def run_tokenizer_step(config, folder, folders):
    """SentencePiece trained once on the LM's training documents; every stage reads this one."""
    data = config.lm.data
    if data.tokenizer != "sentencepiece":
        (folder / "tokenizer.txt").write_text(data.tokenizer + "\n")
        return {"tokenizer": data.tokenizer}
    train, _ = lm_documents(data)
    tokenizer = run_tokenizer(data, train, str(folder))
    return {"vocab": int(tokenizer.vocab_size), "documents": len(train)}


def tokenizer_section(config):
    d = config.lm.data
    return {k: d[k] for k in ("source", "tokenizer", "tokenizer_vocab_size", "seed", "synthetic_documents",
                              "eval_documents", "eval_fraction")}


# --- training stages ----------------------------------------------------------------------------

def linked(config, name, folders):
    """The stage's config section with the pipeline's links filled in."""
    cfg = config[name]
    if name == "lm":
        cfg.data.tokenizer = tokenizer_spec(config, folders)
    if name in INIT_FROM:
        cfg.init_from = str(folders[INIT_FROM[name]])
    if name == "ppo":
        cfg.reward_model = str(folders[REWARD_MODEL])
    return cfg


def train_step(name):
    def run(config, folder, folders):
        result = main.run(linked(config, name, folders), str(folder))
        if getattr(result, "preempted", False):
            print(f"{name} was preempted at step {result.step}; rerun the pipeline to resume",
                  file=sys.stderr, flush=True)
            sys.exit(distributed.EXIT_PREEMPTED)
        return STAGE_HEADLINES[name](folder)
    return run


def lm_headline(folder):
    return {"eval_loss": last_row(folder, "eval/loss"), "eval_accuracy": last_row(folder, "eval/accuracy")}


def pm_headline(folder):
    return {"eval_accuracy": last_row(folder, "eval/accuracy"), "train_loss": mean_rows(folder, "train/loss", last=5)}


def distill_headline(folder):
    before = json.loads((folder / "eval_before.json").read_text()) if (folder / "eval_before.json").exists() else {}
    return {"eval_kl_before": float(before.get("kl", math.nan)), "eval_kl_after": last_row(folder, "eval/kl")}


def ppo_headline(folder):
    fit = json.loads((folder / "reward_vs_sqrt_kl.json").read_text())
    return {"reward_first5": mean_rows(folder, "train/reward", first=5),
            "reward_last5": mean_rows(folder, "train/reward", last=5),
            "kl_last5": mean_rows(folder, "train/kl", last=5), "sqrt_kl_fit_r2": fit.get("r2")}


STAGE_HEADLINES = {"lm": lm_headline, "pmp": pm_headline, "pm": pm_headline,
                   "distill": distill_headline, "ppo": ppo_headline}


# --- evaluation steps ---------------------------------------------------------------------------

def run_pm_eval(config, folder, folders):
    from hh.eval.pm_eval import evaluate_pm

    report = evaluate_pm(folders["pm"], list(config.pm_eval.test_sources) or None, out_dir=folder,
                         n_bins=config.pm_eval.n_bins)
    return {"accuracy": report["all"]["accuracy"], "ece": report["all"]["calibration"]["ece"],
            "pairs": report["all"]["pairs"]}


def run_best_of(config, folder, folders):
    from hh.eval.lm_loader import LoadedLM
    from hh.eval.pm_eval import LoadedPM
    from hh.pipeline.plots import plot_best_of
    from hh.rl.best_of import evaluate_best_of

    c = config.best_of
    report = evaluate_best_of(LoadedLM(folders[c.policy]), LoadedPM(folders["pm"]), list(c.ks),
                              c.prompts, c.n_prompts, c.max_new_tokens, seed=c.seed)
    (folder / "best_of.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_best_of(report, folders["ppo"], folder / "best_of.png")
    return {f"k{k}": row["mean_best_score"] for k, row in report["k"].items()}


def parse_entry(text: str):
    """"STAGE" or "STAGE@K" -> (name, stage, k)."""
    stage, _, k = text.partition("@")
    return text, stage, int(k or 1)


def run_elo(config, folder, folders):
    from hh.eval.pm_eval import LoadedPM
    from hh.eval.policy_elo import Entry, plot_elo, policy_elo

    c = config.elo
    entries = [Entry(name, str(folders[stage]), k) for name, stage, k in map(parse_entry, c.entries)]
    report = policy_elo(entries, LoadedPM(folders["pm"]), list(c.prompts), c.n_prompts,
                        c.max_new_tokens, seed=c.seed)
    (folder / "elo.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_elo(report, folder / "elo.png")
    return {row["model"]: row["elo"] for row in report["table"]}


def run_alignment_tax(config, folder, folders):
    from hh.eval.mc import alignment_tax, write_report

    c = config.alignment_tax
    tasks = list(c.tasks)
    if c.n_arithmetic >= 0:
        path = folder / "world_questions.jsonl"
        path.write_text("".join(json.dumps(q) + "\n" for q in synthetic.world_questions(c.n_arithmetic, seed=c.seed)))
        tasks.insert(0, f"jsonl:{path}")
    result = alignment_tax(folders[c.base], folders[c.policy], tasks, c.shots, c.seed)
    write_report(result, folder)
    return {f"{r['task']}/{r['metric']}/delta": r["delta"] for r in result["rows"]}


def run_ood(config, folder, folders):
    from hh.eval.lm_loader import LoadedLM
    from hh.eval.ood_study import ood_study, write_study

    c = config.ood
    lm = LoadedLM(folders[c.model])
    data_cfg = lm.config.data
    with data_cfg.unlocked():
        data_cfg.manual_dir = c.manual_dir or data_cfg.get("manual_dir", "")
        data_cfg.tfds_data_dir = c.tfds_data_dir or str(folder / "tfds")
    report = ood_study(lm, c.in_source, list(c.out_sources), c.n_fit, c.n_test, c.exposure_m,
                       c.exposure_draws, c.pooling, c.seed, data_cfg)
    write_study(report, folder)
    return {f"{spec}/{method}": row["auroc"] for spec, methods in report["best"].items()
            for method, row in methods.items()}


def run_report(config, folder, folders):
    from hh.pipeline.report import write_report

    path = write_report(config, folders, folder)
    return {"report": str(path)}


# --- the step table -----------------------------------------------------------------------------

def files(*names):
    return lambda folder: [folder / n for n in names]


def steps(config):
    """The main job's steps, in order (the names are folders under the workdir)."""
    sec = lambda name: (lambda c: c[name])   # noqa: E731
    elo_inputs = tuple(dict.fromkeys(parse_entry(e)[1] for e in config.elo.entries)) + ("pm",)
    return [
        Step("tokenizer", (), tokenizer_section, run_tokenizer_step, files(TOKENIZER_DIR, "tokenizer.txt"),
             "SentencePiece on the LM's training text"),
        Step("lm", ("tokenizer",), sec("lm"), train_step("lm"), latest_checkpoint, "LM pretraining"),
        Step("pmp", ("lm",), sec("pmp"), train_step("pmp"), latest_checkpoint, "preference-model pretraining"),
        Step("pm", ("pmp",), sec("pm"), train_step("pm"), latest_checkpoint, "PM on helpful + harmless comparisons"),
        Step("pm_eval", ("pm",), sec("pm_eval"), run_pm_eval, files("pm_eval.json"),
             "PM accuracy and calibration"),
        Step("distill", ("lm",), sec("distill"), train_step("distill"), latest_checkpoint, "HHH context distillation"),
        Step("ppo", ("distill", "pm"), sec("ppo"), train_step("ppo"), latest_checkpoint, "PPO against the PM"),
        Step("best_of", (config.best_of.policy, "pm", "ppo"), sec("best_of"), run_best_of,
             files("best_of.json"), "best-of-k rejection sampling"),
        Step("elo", elo_inputs, sec("elo"), run_elo, files("elo.json"), "PM-judged Elo"),
        Step("alignment_tax", (config.alignment_tax.base, config.alignment_tax.policy),
             sec("alignment_tax"), run_alignment_tax, files("alignment_tax.json"),
             "multiple-choice evals of the LM and the PPO policy"),
        Step("ood", (config.ood.model,), sec("ood"), run_ood, files("ood.json"),
             "OOD detection of harmful requests"),
        Step("report", ("pm_eval", "ppo", "best_of", "elo", "alignment_tax", "ood"),
             lambda c: {"preset": c.preset},
             run_report, files("report.md"), "report.md"),
    ]
