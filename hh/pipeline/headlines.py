"""Each training stage's headline numbers, read back from the metrics and files in its folder.

The steps return them (the runner records them and prints one progress line) and the main job's
report reads the same rows, so both live here rather than in either.
"""

import json
import math

from etils import epath

from hh.train.metrics import read_metrics


def last_row(folder: epath.Path, key: str):
    """The last logged value of `key` (NaN when it was never logged)."""
    rows = [r for r in read_metrics(folder) if key in r]
    return rows[-1][key] if rows else float("nan")


def mean_rows(folder: epath.Path, key: str, first: int = 0, last: int = 0) -> float:
    """Mean of the first (or last) n logged values of `key`."""
    values = [r[key] for r in sorted(read_metrics(folder), key=lambda r: r["step"]) if key in r]
    values = values[:first] if first else values[-last:]
    return float(sum(values) / len(values)) if values else float("nan")


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


# By the stage a config section runs (its `stage` field), not its name: the online job's `gold`
# section is a PM.
STAGE_HEADLINES = {"lm": lm_headline, "pmp": pm_headline, "pm": pm_headline,
                   "distill": distill_headline, "ppo": ppo_headline}
