"""The report's one plot of its own: best-of-k beside PPO, PM score against KL from the initial
policy (Bai et al. 2022 §4.3 / App. B.6 compare the two on the same axis)."""

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
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
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
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)
