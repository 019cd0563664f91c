"""PM reward against sqrt(KL(π ‖ π₀)) over a PPO run (Bai et al. 2022 §4.3, Fig. 4/13: roughly
linear early in training). Reads a workdir's metrics.jsonl; writes reward_vs_sqrt_kl.png and a
least-squares line (slope, intercept, r²) over the first `fit_fraction` of iterations as JSON.
"""

import json
import math

import numpy as np
from etils import epath

from hh.io import atomic_write_text
from hh.plots import pyplot
from hh.train.metrics import read_metrics

REWARD, SQRT_KL = "train/reward", "train/sqrt_kl"


def reward_and_sqrt_kl(rows):
    """-> (steps, sqrt_kl, reward) arrays of the rows that log both, in step order."""
    rows = sorted((r for r in rows if REWARD in r and SQRT_KL in r), key=lambda r: r["step"])
    return (np.array([r["step"] for r in rows]), np.array([float(r[SQRT_KL]) for r in rows]),
            np.array([float(r[REWARD]) for r in rows]))


def linear_fit(x, y) -> dict:
    """Least squares y ≈ slope·x + intercept, with r² = 1 − SS_res/SS_tot."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or np.ptp(x) == 0:
        return {"slope": float("nan"), "intercept": float("nan"), "r2": float("nan")}
    slope, intercept = np.polyfit(x, y, 1)
    residual = np.sum((y - (slope * x + intercept)) ** 2)
    total = np.sum((y - y.mean()) ** 2)
    return {"slope": float(slope), "intercept": float(intercept),
            "r2": float(1.0 - residual / total) if total > 0 else float("nan")}


def write_reward_curves(workdir, fit_fraction: float = 0.5) -> dict:
    """Writes reward_vs_sqrt_kl.{png,json} in `workdir`; returns the JSON's dict."""
    plt = pyplot()

    workdir = epath.Path(workdir)
    steps, sqrt_kl, reward = reward_and_sqrt_kl(read_metrics(workdir))
    n_fit = max(2, math.ceil(fit_fraction * len(steps))) if len(steps) else 0
    fit = linear_fit(sqrt_kl[:n_fit], reward[:n_fit])
    summary = {**fit, "fit_fraction": fit_fraction, "n_fit": int(min(n_fit, len(steps))),
               "iterations": int(len(steps)),
               "reward_start": float(reward[0]) if len(reward) else float("nan"),
               "reward_end": float(reward[-1]) if len(reward) else float("nan"),
               "sqrt_kl_end": float(sqrt_kl[-1]) if len(sqrt_kl) else float("nan")}
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(sqrt_kl, reward, c=steps, s=12, cmap="viridis")
    if math.isfinite(fit["slope"]):
        x = np.linspace(0, sqrt_kl[:n_fit].max(), 20)
        ax.plot(x, fit["slope"] * x + fit["intercept"], "r-",
                label=f"first {fit_fraction:.0%}: r² = {fit['r2']:.2f}")
        ax.legend()
    ax.set_xlabel("sqrt(KL(π ‖ π₀))  [nats^½, per response]")
    ax.set_ylabel("PM reward (mean)")
    ax.set_title("PPO: reward vs sqrt(KL)")
    fig.tight_layout()
    with (workdir / "reward_vs_sqrt_kl.png").open("wb") as f:
        fig.savefig(f, dpi=100)
    plt.close(fig)
    atomic_write_text(workdir / "reward_vs_sqrt_kl.json", json.dumps(
        {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in summary.items()},
        indent=2) + "\n")
    return summary


TRAIN_NORMALISED, TEST_NORMALISED = "train/reward_normalised", "train/test_reward_normalised"


def series(rows, key):
    """-> (steps, sqrt_kl, values of `key`) of the rows that log both, in step order."""
    rows = sorted((r for r in rows if key in r and SQRT_KL in r), key=lambda r: r["step"])
    return (np.array([r["step"] for r in rows]), np.array([float(r[SQRT_KL]) for r in rows]),
            np.array([float(r[key]) for r in rows]))


def robustness_summary(rows, fit_fraction: float = 0.5, tail_fraction: float = 0.1) -> dict:
    """Train-PM vs test-PM rewards (each mean-normalised) against sqrt(KL): a line fitted to each
    over the first `fit_fraction` of iterations, and the train − test gap averaged over the last
    `tail_fraction` (Bai et al. 2022 §4.2: they agree early, then the train PM runs ahead)."""
    steps, sqrt_kl, train = series(rows, TRAIN_NORMALISED)
    _, _, test = series(rows, TEST_NORMALISED)
    if len(steps) < 2 or len(test) != len(train):
        raise ValueError("metrics.jsonl has no train/test normalised rewards: run PPO with "
                         "config.test_reward_model set")
    n_fit = max(2, math.ceil(fit_fraction * len(steps)))
    n_tail = max(1, math.ceil(tail_fraction * len(steps)))
    return {"train_pm": linear_fit(sqrt_kl[:n_fit], train[:n_fit]),
            "test_pm": linear_fit(sqrt_kl[:n_fit], test[:n_fit]),
            "fit_fraction": fit_fraction, "n_fit": int(n_fit), "iterations": int(len(steps)),
            "gap_start": float(np.mean(train[:n_tail] - test[:n_tail])),
            "gap_end": float(np.mean(train[-n_tail:] - test[-n_tail:])),
            "train_end": float(np.mean(train[-n_tail:])), "test_end": float(np.mean(test[-n_tail:])),
            "sqrt_kl_end": float(sqrt_kl[-1])}


def gold_against_sqrt_kl(rows, gold_by_step: list) -> list:
    """[{"step", "sqrt_kl", "gold", "se", "n"}]: each logged iteration's gold accuracy (rows of
    hh.eval.gold.gold_by_step) at that iteration's sqrt(KL); iterations without either are left out."""
    sqrt_kl = {r["step"]: float(r[SQRT_KL]) for r in rows if SQRT_KL in r}
    return [{"step": g["step"], "sqrt_kl": sqrt_kl[g["step"]], "gold": g["gold"]["mean"], "se": g["gold"]["se"],
             "n": g["gold"]["n"]} for g in gold_by_step if g["step"] in sqrt_kl and g["gold"]["n"]]


def write_robustness_curves(workdir, fit_fraction: float = 0.5, gold_by_step: list | None = None) -> dict:
    """Writes robustness.{png,json} in `workdir` (both PMs' normalised rewards vs sqrt(KL)); with
    `gold_by_step` (hh.eval.gold.gold_by_step of the run's logged samples) the gold accuracy of
    the policy's samples too, on a second axis: what neither PM can say, whether the policy got better."""
    plt = pyplot()

    workdir = epath.Path(workdir)
    rows = read_metrics(workdir)
    summary = robustness_summary(rows, fit_fraction)
    _, sqrt_kl, train = series(rows, TRAIN_NORMALISED)
    _, _, test = series(rows, TEST_NORMALISED)
    gold = gold_against_sqrt_kl(rows, gold_by_step or [])
    if gold:
        summary.update(gold=gold, gold_start=gold[0]["gold"], gold_end=gold[-1]["gold"])
    fig, ax = plt.subplots(figsize=(5, 4))
    x = np.linspace(0, sqrt_kl[:summary["n_fit"]].max(), 20)
    for name, y, colour in (("train PM", train, "tab:blue"), ("test PM", test, "tab:orange")):
        fit = summary["train_pm" if name == "train PM" else "test_pm"]
        ax.scatter(sqrt_kl, y, s=10, color=colour, label=f"{name} (early slope {fit['slope']:.3g})")
        if math.isfinite(fit["slope"]):
            ax.plot(x, fit["slope"] * x + fit["intercept"], color=colour, lw=1)
    ax.set_xlabel("sqrt(KL(π ‖ π₀))  [nats^½, per response]")
    ax.set_ylabel("PM reward − held-out mean")
    ax.set_title("Robustness: train PM vs test PM")
    ax.legend(fontsize=8, loc="upper left")
    if gold:
        twin = ax.twinx()
        twin.errorbar([g["sqrt_kl"] for g in gold], [g["gold"] for g in gold], yerr=[g["se"] for g in gold],
                      fmt="s--", color="tab:green", ms=4, capsize=2, label="gold accuracy of samples")
        twin.set_ylabel("gold accuracy (world's labeler)"), twin.set_ylim(-0.05, 1.05)
        twin.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with (workdir / "robustness.png").open("wb") as f:
        fig.savefig(f, dpi=100)
    plt.close(fig)
    atomic_write_text(workdir / "robustness.json", json.dumps(summary, indent=2, default=str) + "\n")
    return summary
