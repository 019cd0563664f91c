"""PM scaling laws (Bai et al. 2022 §3.3, App. A.3): fit accuracy = a + b·ln(P) + c·ln(D).

P = PM parameters, D = training comparisons. Ordinary least squares with standard errors
σ²·(XᵀX)⁻¹, σ² = RSS / (n − 3); plots vs P and vs D; the paper's helpful-only fit beside ours.
`python -m hh.eval.scaling --results sweep.json` (a list of {"params", "pairs", "accuracy"}).
"""

import json

import numpy as np
from absl import app, flags

from hh.plots import pyplot

# Bai et al. 2022 App. A.3; the log base is not stated, natural log assumed (docs/paper-notes.md §5).
PAPER_FIT = {"a": 0.72, "b": 0.007, "c": 0.015, "p0": 1e11, "d0": 8e4}


def paper_accuracy(params, pairs):
    """0.72 + 0.007·ln(P/1e11) + 0.015·ln(D/8e4)."""
    f = PAPER_FIT
    return f["a"] + f["b"] * np.log(np.asarray(params, float) / f["p0"]) + \
        f["c"] * np.log(np.asarray(pairs, float) / f["d0"])


def fit_scaling(params, pairs, accuracy) -> dict:
    """-> {"a", "b", "c", "se_a", "se_b", "se_c", "r2", "n"} by least squares on ln P, ln D.

    Solved through the normal equations (X^T X) θ = X^T y; needs at least 4 runs that vary both
    P and D (otherwise X^T X is singular and a ValueError says so).
    """
    p, d, y = (np.asarray(v, np.float64) for v in (params, pairs, accuracy))
    if not (len(p) == len(d) == len(y)):
        raise ValueError("params, pairs and accuracy must have the same length")
    x = np.stack([np.ones_like(p), np.log(p), np.log(d)], axis=1)
    n = len(y)
    if n < 4:
        raise ValueError(f"a 3-coefficient fit with standard errors needs >= 4 runs, got {n}")
    gram = x.T @ x
    if np.linalg.matrix_rank(gram) < 3:
        raise ValueError("the runs must vary both model size P and dataset size D")
    inverse = np.linalg.inv(gram)
    theta = inverse @ (x.T @ y)
    residual = y - x @ theta
    sigma2 = float(residual @ residual) / (n - 3)
    se = np.sqrt(np.diag(inverse) * sigma2)
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(residual @ residual) / total if total > 0 else float("nan")
    return {"a": float(theta[0]), "b": float(theta[1]), "c": float(theta[2]),
            "se_a": float(se[0]), "se_b": float(se[1]), "se_c": float(se[2]), "r2": r2, "n": n}


def predict(fit, params, pairs):
    return fit["a"] + fit["b"] * np.log(np.asarray(params, float)) + fit["c"] * np.log(np.asarray(pairs, float))


def describe(fit) -> str:
    """Our fit and the paper's on two lines (the paper's rewritten in ln P, ln D)."""
    f = PAPER_FIT
    a_paper = f["a"] - f["b"] * np.log(f["p0"]) - f["c"] * np.log(f["d0"])
    return (f"ours:  accuracy = {fit['a']:.4f} (±{fit['se_a']:.4f}) + {fit['b']:.4f} (±{fit['se_b']:.4f})·ln P"
            f" + {fit['c']:.4f} (±{fit['se_c']:.4f})·ln D   (n={fit['n']}, R²={fit['r2']:.3f})\n"
            f"paper: accuracy = 0.72 + 0.007·ln(P/1e11) + 0.015·ln(D/8e4) = {a_paper:.4f} + "
            f"0.0070·ln P + 0.0150·ln D   (Bai et al. 2022 App. A.3, helpful-only)")


def plot_scaling(params, pairs, accuracy, fit, path):
    """Two panels: accuracy vs P (one line per D) and vs D (one line per P), ours and the paper's."""
    plt = pyplot()

    p, d, y = (np.asarray(v, float) for v in (params, pairs, accuracy))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, x, other, label in ((axes[0], p, d, "parameters P"), (axes[1], d, p, "comparisons D")):
        for value in np.unique(other):
            sel = other == value
            order = np.argsort(x[sel])
            line, = ax.plot(x[sel][order], y[sel][order], "o", label=f"{'D' if label[0] == 'p' else 'P'}={value:.3g}")
            grid = np.geomspace(x.min(), x.max(), 50)
            pp, dd = (grid, np.full_like(grid, value)) if label[0] == "p" else (np.full_like(grid, value), grid)
            ax.plot(grid, predict(fit, pp, dd), "-", color=line.get_color())
            ax.plot(grid, paper_accuracy(pp, dd), ":", color=line.get_color())
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("PM test accuracy")
        ax.legend(fontsize=7)
    fig.suptitle("solid: our fit; dotted: Bai et al. 2022 App. A.3", fontsize=9)
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)


def main(argv):
    del argv
    runs = json.loads(open(flags.FLAGS.results).read())
    cols = [[r[k] for r in runs] for k in ("params", "pairs", "accuracy")]
    fit = fit_scaling(*cols)
    print(describe(fit))
    plot_scaling(*cols, fit, flags.FLAGS.plot)
    print(json.dumps(fit))


if __name__ == "__main__":
    flags.DEFINE_string("results", None, 'JSON list of {"params", "pairs", "accuracy"}')
    flags.DEFINE_string("plot", "scaling.png", "where the PNG goes")
    flags.mark_flags_as_required(["results"])
    app.run(main)
