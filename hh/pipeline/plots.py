"""The report's one plot of its own: best-of-k beside PPO, PM score against KL from the initial
policy (Bai et al. 2022 §4.3 / App. B.6 compare the two on the same axis), and, for prompts the
world judges, the gold score of best-of-k against k beside its PM score."""

import numpy as np

from hh.plots import pyplot
from hh.train.metrics import read_metrics


def ppo_reward_and_kl(ppo_folder):
    """(KL per response, mean PM reward) per PPO iteration, in step order."""
    rows = sorted((r for r in read_metrics(ppo_folder) if "train/reward" in r and "train/kl" in r),
                  key=lambda r: r["step"])
    return np.array([r["train/kl"] for r in rows], float), np.array([r["train/reward"] for r in rows], float)


def plot_best_of(report: dict, ppo_folder, path) -> None:
    """Best-of-k (mean best score ± s.e. at its KL bound log k − (k−1)/k) and the PPO run."""
    plt = pyplot()

    ks = sorted(report["k"], key=int)
    kl = [report["k"][k]["kl_upper_bound"] for k in ks]
    score = [report["k"][k]["mean_best_score"] for k in ks]
    err = [report["k"][k]["stderr"] for k in ks]
    gold_ks = [k for k in ks if report["k"][k].get("gold", {}).get("n")]
    fig, axes = plt.subplots(1, 2 if gold_ks else 1, figsize=(10.5 if gold_ks else 5.5, 3.8), squeeze=False)
    ax = axes[0, 0]
    ax.errorbar(kl, score, yerr=err, marker="o", capsize=3, label="best-of-k (held-out prompts)")
    for k, x, y in zip(ks, kl, score):
        ax.annotate(f"k={k}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ppo_kl, ppo_reward = ppo_reward_and_kl(ppo_folder)
    if len(ppo_kl):
        ax.plot(ppo_kl, ppo_reward, ".-", alpha=0.6, color="tab:orange", label="PPO iterations (train prompts)")
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlabel("KL from the initial policy [nats per response] (best-of-k: upper bound)")
    ax.set_ylabel("PM score")
    ax.set_title("Rejection sampling vs PPO")
    ax.legend(fontsize=7)
    if gold_ks:
        plot_gold_vs_k(axes[0, 1], report, gold_ks)
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)


def plot_gold_vs_k(ax, report: dict, ks) -> None:
    """The gold score of the best-of-k samples against k, the PM score of the same samples on a
    second axis: the proxy keeps rising with k where the true score may not (Gao et al. 2022)."""
    gold = [report["k"][k]["gold"] for k in ks]
    ax.errorbar([int(k) for k in ks], [g["mean"] for g in gold], yerr=[g["se"] for g in gold], marker="o",
                capsize=3, color="tab:green", label=f"gold ({report['labeler']} labeler)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples per prompt)")
    ax.set_ylabel("gold score of the best sample")
    ax.set_title("Best-of-k judged by the world")
    pm = ax.twinx()
    pm.errorbar([int(k) for k in ks], [report["k"][k]["mean_best_score"] for k in ks],
                yerr=[report["k"][k]["stderr"] for k in ks], marker="s", capsize=3, color="tab:blue",
                alpha=0.6, label="PM score")
    pm.set_ylabel("PM score of the best sample")
    lines = ax.get_legend_handles_labels()
    more = pm.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7)
