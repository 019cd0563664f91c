"""PM calibration (Bai et al. 2022 §3.3, Fig 9): is P(chosen > rejected) = sigmoid(Δscore)?

Pairs are oriented so that the predicted probability is ≥ 1/2 (the PM's preferred side), binned by
that probability; each bin's observed accuracy is compared with its mean prediction. The expected
calibration error is the pair-weighted mean |observed − predicted| over bins.
"""

import numpy as np

from hh.plots import pyplot


def sigmoid(x):
    x = np.asarray(x, np.float64)
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def calibration_bins(chosen, rejected, n_bins: int = 10) -> dict:
    """chosen, rejected: [pairs] scores. -> per-bin predicted, observed, counts and the ECE.

    Bins split [0.5, 1] into n_bins equal intervals (the last one closed); empty bins report NaN.
    """
    delta = np.asarray(chosen, np.float64) - np.asarray(rejected, np.float64)
    p_chosen = sigmoid(delta)
    predicted = np.maximum(p_chosen, 1.0 - p_chosen)          # probability of the PM's pick
    # the PM's pick is right when it picked chosen (Δ > 0); an exact tie counts half
    correct = np.where(delta > 0, 1.0, np.where(delta == 0, 0.5, 0.0))
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, predicted, side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore"):
        mean_pred = np.bincount(which, predicted, n_bins) / counts
        observed = np.bincount(which, correct, n_bins) / counts
    filled = counts > 0
    ece = float(np.sum(counts[filled] * np.abs(observed[filled] - mean_pred[filled])) / max(len(delta), 1))
    return {"edges": edges.tolist(), "predicted": mean_pred.tolist(), "observed": observed.tolist(),
            "counts": counts.astype(int).tolist(), "ece": ece, "pairs": int(len(delta))}


def reliability_diagram(bins: dict, path, title: str = "PM calibration"):
    """Observed accuracy vs predicted probability per bin, with the diagonal; writes a PNG."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    pred, obs = np.array(bins["predicted"], float), np.array(bins["observed"], float)
    ok = np.isfinite(obs)
    ax.plot([0.5, 1.0], [0.5, 1.0], "k--", lw=1, label="calibrated")
    ax.plot(pred[ok], obs[ok], "o-", label=f"PM (ECE {bins['ece']:.3f})")
    ax.set_xlabel("predicted P(preferred) = sigmoid(|Δscore|)")
    ax.set_ylabel("observed accuracy")
    ax.set_xlim(0.5, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)
