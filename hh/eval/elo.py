"""Elo scores from pairwise comparisons (Bai et al. 2022 §2.4, eq. 2.1, App. B.5).

P(A beats B) = 1 / (1 + 10^((E_B − E_A)/400)). `fit_elo` is the maximum-likelihood fit to win
counts (ties count half to each side), by Newton's method in float64, with standard errors from
the inverse Hessian of the log-likelihood and one model anchored at 0. `pm_soft_wins` turns PM
scores of several models' responses to the same prompts into expected win counts.
"""

import dataclasses

import numpy as np

SCALE = 400.0 / np.log(10.0)   # Elo points per natural-log unit of odds: ΔElo ≈ 173.7·ΔPM


def win_probability(elo_a, elo_b):
    """P(A beats B) under the Elo model (eq. 2.1)."""
    return 1.0 / (1.0 + 10.0 ** ((np.asarray(elo_b, float) - np.asarray(elo_a, float)) / 400.0))


def elo_difference(win_fraction):
    """ΔElo = E_A − E_B that makes A win this fraction of the time (eq. 2.1 inverted)."""
    p = np.asarray(win_fraction, float)
    return 400.0 * np.log10(p / (1.0 - p))


def elo_from_pm_difference(delta_pm):
    """ΔElo = (400 / ln 10)·ΔPM ≈ 174·ΔPM: a PM score gap read as log-odds of preference."""
    return SCALE * np.asarray(delta_pm, float)


@dataclasses.dataclass
class EloFit:
    ratings: np.ndarray         # [n] Elo, ratings[anchor] = 0
    stderr: np.ndarray          # [n] from the inverse Hessian; 0 for the anchor
    covariance: np.ndarray      # [n, n] (anchor row and column 0)
    log_likelihood: float
    iterations: int


def _log_likelihood(ratings, wins):
    logit = (ratings[:, None] - ratings[None, :]) / SCALE          # log-odds that i beats j
    return float(np.sum(wins * -np.logaddexp(0.0, -logit)))


def fit_elo(wins, anchor: int = 0, max_iterations: int = 100, tol: float = 1e-10) -> EloFit:
    """Maximum-likelihood Elo ratings from wins[i, j] = (possibly fractional) times i beat j.

    Every model must have won and lost at least once against a connected set of others, or the
    maximum is at infinity; that case raises with the offending model's index.
    """
    wins = np.asarray(wins, float)
    n = wins.shape[0]
    if wins.shape != (n, n) or np.any(wins < 0) or np.any(np.diag(wins) != 0):
        raise ValueError("wins must be a square, non-negative matrix with a zero diagonal")
    for i in range(n):
        if wins[i].sum() == 0 or wins[:, i].sum() == 0:
            raise ValueError(f"model {i} never {'won' if wins[i].sum() == 0 else 'lost'}: its "
                             f"maximum-likelihood Elo is infinite")
    games = wins + wins.T
    free = np.array([i != anchor for i in range(n)])
    ratings = np.zeros(n)
    for iteration in range(1, max_iterations + 1):
        p = 1.0 / (1.0 + np.exp(-(ratings[:, None] - ratings[None, :]) / SCALE))   # P(i beats j)
        grad = (wins.sum(1) - (games * p).sum(1)) / SCALE
        weight = games * p * (1.0 - p) / SCALE ** 2
        hessian = weight - np.diag(weight.sum(1))                  # negative semi-definite
        step = np.linalg.solve(hessian[np.ix_(free, free)], grad[free])
        ratings[free] -= step
        if np.max(np.abs(step)) < tol:
            break
    p = 1.0 / (1.0 + np.exp(-(ratings[:, None] - ratings[None, :]) / SCALE))
    weight = games * p * (1.0 - p) / SCALE ** 2
    hessian = weight - np.diag(weight.sum(1))
    covariance = np.zeros((n, n))
    covariance[np.ix_(free, free)] = np.linalg.inv(-hessian[np.ix_(free, free)])
    return EloFit(ratings=ratings, stderr=np.sqrt(np.diag(covariance)), covariance=covariance,
                  log_likelihood=_log_likelihood(ratings, wins), iterations=iteration)


def pm_soft_wins(scores):
    """scores: [n_models, n_prompts] PM scores of each model's response to the same prompts ->
    wins[i, j] = Σ_prompts sigmoid(r_i − r_j): the PM's expected preferences as win counts."""
    s = np.asarray(scores, float)
    diff = s[:, None, :] - s[None, :, :]
    wins = np.sum(0.5 * (1.0 + np.tanh(0.5 * diff)), axis=-1)   # sigmoid without exp overflow
    np.fill_diagonal(wins, 0.0)
    return wins


def elo_table(names, fit: EloFit) -> list:
    """[{"model", "elo", "stderr"}] sorted best first, for reports."""
    rows = [{"model": name, "elo": float(r), "stderr": float(e)}
            for name, r, e in zip(names, fit.ratings, fit.stderr)]
    return sorted(rows, key=lambda row: -row["elo"])
