"""OOD detection of harmful requests from activations (Bai et al. 2022 §5.4, App. B.9).

Per layer, prompts are pooled to one vector (mean over real tokens by default: a prompt's last
token is often a dialogue marker shared by every prompt). A Gaussian fit to in-distribution
(helpful) prompts scores by Mahalanobis distance, or by the simplified relative Mahalanobis
distance (full-covariance minus diagonal-covariance distance); few-shot outlier exposure trains a
logistic layer on frozen activations with M known OOD examples. AUROC per layer says how well each
separates OOD (harmful / red-team) prompts. All statistics are float64 NumPy.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np

from hh.plots import pyplot

POOLINGS = ("mean", "last")


def pooled_hidden_states(params, model, prompts, pooling: str = "mean"):
    """prompts {"tokens","segment_ids","positions"} [b, P] left-padded -> [n_layers + 1, b, d]
    float32: the embeddings and every block's output, pooled over each prompt's real tokens."""
    out = model.apply({"params": params}, prompts["tokens"], prompts["positions"],
                      prompts["segment_ids"], return_hidden_states=True, compute_logits=False)
    hidden = out["hidden_states"].astype(jnp.float32)           # [L + 1, b, P, d]
    real = (prompts["segment_ids"] > 0).astype(jnp.float32)
    if pooling == "mean":
        return jnp.einsum("lbpd,bp->lbd", hidden, real) / jnp.maximum(real.sum(1), 1.0)[None, :, None]
    if pooling == "last":                                        # left padding: the last column
        return hidden[:, :, -1]
    raise ValueError(f"unknown pooling {pooling!r}: use one of {POOLINGS}")


@dataclasses.dataclass
class Gaussian:
    mean: np.ndarray          # [d]
    precision: np.ndarray     # [d, d] inverse of the (regularised) covariance
    diag_precision: np.ndarray   # [d] inverse of its diagonal


def fit_gaussian(x, ridge: float = 1e-6) -> Gaussian:
    """x [n, d] in-distribution vectors -> mean and precision (covariance + ridge·mean variance·I,
    so a rank-deficient covariance with n < d still inverts)."""
    x = np.asarray(x, np.float64)
    mean = x.mean(0)
    cov = np.cov(x - mean, rowvar=False, bias=True).reshape(x.shape[1], x.shape[1])
    cov = cov + ridge * max(float(np.trace(cov)) / len(cov), 1e-12) * np.eye(len(cov))
    return Gaussian(mean=mean, precision=np.linalg.inv(cov), diag_precision=1.0 / np.diag(cov))


def mahalanobis(x, g: Gaussian):
    """Squared Mahalanobis distance of each row of x [n, d] from the fit -> [n]."""
    centred = np.asarray(x, np.float64) - g.mean
    return np.einsum("nd,de,ne->n", centred, g.precision, centred)


def relative_mahalanobis(x, g: Gaussian):
    """The simplified relative Mahalanobis score: full-covariance minus diagonal-covariance
    distance (Bai et al. App. B.10, after Ren et al. 2021): directions that are merely wide are
    discounted, correlations that break are not."""
    centred = np.asarray(x, np.float64) - g.mean
    return mahalanobis(x, g) - np.sum(centred ** 2 * g.diag_precision, axis=1)


def auroc(in_scores, out_scores) -> float:
    """P(score of a random OOD example > a random in-distribution one), ties counting half
    (the Mann–Whitney statistic); higher scores mean "more OOD"."""
    a, b = np.asarray(in_scores, np.float64), np.asarray(out_scores, np.float64)
    values = np.concatenate([a, b])
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    for start, count in zip(first, counts):
        ranks[order[start:start + count]] = start + (count + 1) / 2.0
    rank_sum = ranks[len(a):].sum()
    return float((rank_sum - len(b) * (len(b) + 1) / 2.0) / (len(a) * len(b)))


def outlier_exposure(in_x, out_x, l2: float = 1e-2, iterations: int = 50):
    """Few-shot outlier exposure: a logistic layer on frozen (standardised) activations, class 1 =
    the M known OOD examples, classes balanced by weight; Newton's method (IRLS) in float64.
    -> score(x) [n] (the logit; higher = more OOD)."""
    in_x, out_x = np.asarray(in_x, np.float64), np.asarray(out_x, np.float64)
    x = np.concatenate([in_x, out_x])
    mu, sd = x.mean(0), x.std(0) + 1e-8
    features = np.concatenate([(x - mu) / sd, np.ones((len(x), 1))], axis=1)
    y = np.concatenate([np.zeros(len(in_x)), np.ones(len(out_x))])
    weight = np.where(y == 1, len(x) / (2.0 * len(out_x)), len(x) / (2.0 * len(in_x)))
    w = np.zeros(features.shape[1])
    penalty = l2 * np.eye(len(w))
    penalty[-1, -1] = 0.0                                       # no penalty on the bias
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-features @ w))
        grad = features.T @ (weight * (p - y)) + penalty @ w
        hessian = (features * (weight * p * (1 - p))[:, None]).T @ features + penalty
        step = np.linalg.solve(hessian, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break

    def score(z):
        z = (np.asarray(z, np.float64) - mu) / sd
        return z @ w[:-1] + w[-1]
    return score


def layer_aurocs(train_in, test_in, test_out, exposure_out=None) -> dict:
    """Per layer ([L, n, d] arrays): AUROC of Mahalanobis, relative Mahalanobis and (given
    exposure_out [L, M, d], disjoint from test_out) few-shot outlier exposure."""
    report = {"mahalanobis": [], "relative_mahalanobis": [], "outlier_exposure": []}
    for layer in range(len(train_in)):
        g = fit_gaussian(train_in[layer])
        report["mahalanobis"].append(auroc(mahalanobis(test_in[layer], g), mahalanobis(test_out[layer], g)))
        report["relative_mahalanobis"].append(auroc(relative_mahalanobis(test_in[layer], g),
                                                    relative_mahalanobis(test_out[layer], g)))
        if exposure_out is not None:
            score = outlier_exposure(train_in[layer], exposure_out[layer])
            report["outlier_exposure"].append(auroc(score(test_in[layer]), score(test_out[layer])))
    if exposure_out is None:
        del report["outlier_exposure"]
    return report


def plot_layer_aurocs(report: dict, path, title="OOD detection by layer") -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, values in report.items():
        ax.plot(range(len(values)), values, marker="o", label=name.replace("_", " "))
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("AUROC")
    ax.set_ylim(0.0, 1.0)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)
