"""Elo: conversions by hand, the MLE against the Bradley–Terry MM algorithm (Hunter 2004, an
independent float64 reference), standard errors against a finite-difference Hessian, and PM-judged
soft wins reproducing ΔElo = 174·ΔPM."""

import math

import numpy as np
import pytest

from hh.eval.elo import (SCALE, _log_likelihood, elo_difference, elo_from_pm_difference, elo_table,
                         fit_elo, pm_soft_wins, win_probability)


def test_conversions_by_hand():
    assert win_probability(0, 0) == pytest.approx(0.5)
    assert win_probability(400, 0) == pytest.approx(10 / 11)
    assert win_probability(0, 400) == pytest.approx(1 / 11)
    assert elo_difference(10 / 11) == pytest.approx(400.0)
    assert elo_difference(0.75) == pytest.approx(400 * math.log10(3))
    assert elo_from_pm_difference(1.0) == pytest.approx(173.7178, abs=1e-4)
    np.testing.assert_allclose(elo_difference(win_probability([50, -120], [0, 30])), [50, -150])


def test_two_models_hand_worked():
    # 3 wins to 1: p̂ = 3/4, ΔElo = 400·log10(3); information 4·p(1−p)/SCALE² -> SE = SCALE/√0.75.
    fit = fit_elo([[0, 3], [1, 0]], anchor=1)
    assert fit.ratings[1] == 0.0
    assert fit.ratings[0] == pytest.approx(400 * math.log10(3), abs=1e-8)
    assert fit.stderr[0] == pytest.approx(SCALE / math.sqrt(0.75), rel=1e-8)
    assert fit.stderr[1] == 0.0


def bradley_terry_mm(wins, iterations=20000):
    """Hunter (2004) minorise-maximise updates for strengths π; Elo = 400·log10(π / π_0)."""
    games = wins + wins.T
    strength = np.ones(len(wins))
    for _ in range(iterations):
        denom = np.sum(games / (strength[:, None] + strength[None, :]), axis=1)
        strength = wins.sum(1) / denom
        strength /= strength[0]
    return 400 * np.log10(strength)


@pytest.fixture
def tournament():
    rng = np.random.default_rng(0)
    true = np.array([0.0, 120.0, -80.0, 300.0, 40.0])
    games = rng.integers(5, 40, size=(5, 5))
    games = np.triu(games, 1) + np.triu(games, 1).T
    p = win_probability(true[:, None], true[None, :])
    wins = rng.binomial(games, p).astype(float)
    wins = np.triu(wins, 1) + np.tril(games - wins.T, -1)   # i beat j + j beat i = games
    np.fill_diagonal(wins, 0)
    wins[1, 2] += 0.5                                       # a tie: half a win to each side
    wins[2, 1] += 0.5
    return wins


def test_mle_matches_bradley_terry_mm(tournament):
    fit = fit_elo(tournament, anchor=0)
    np.testing.assert_allclose(fit.ratings, bradley_terry_mm(tournament), atol=1e-6)
    assert fit.iterations < 20
    # At the maximum each model's expected wins equal its observed wins.
    games = tournament + tournament.T
    expected = np.sum(games * win_probability(fit.ratings[:, None], fit.ratings[None, :]), axis=1)
    np.testing.assert_allclose(expected, tournament.sum(1), atol=1e-8)


def test_stderr_from_finite_difference_hessian(tournament):
    fit = fit_elo(tournament, anchor=2)
    free = [i for i in range(5) if i != 2]
    h, eps = np.zeros((4, 4)), 1e-2
    for a, i in enumerate(free):
        for b, j in enumerate(free):
            def ll(di, dj):
                r = fit.ratings.copy()
                r[i] += di
                r[j] += dj
                return _log_likelihood(r, tournament)
            h[a, b] = (ll(eps, eps) - ll(eps, -eps) - ll(-eps, eps) + ll(-eps, -eps)) / (4 * eps * eps)
    np.testing.assert_allclose(fit.stderr[free], np.sqrt(np.diag(np.linalg.inv(-h))), rtol=1e-4)
    assert fit.stderr[2] == 0.0


def test_anchor_only_shifts(tournament):
    a, b = fit_elo(tournament, anchor=0), fit_elo(tournament, anchor=3)
    np.testing.assert_allclose(a.ratings - a.ratings[3], b.ratings, atol=1e-8)
    assert a.log_likelihood == pytest.approx(b.log_likelihood)


def test_pm_soft_wins_reproduce_the_174_rule():
    # Model 0's responses score d higher on every prompt: soft wins m·σ(d) vs m·σ(−d), whose MLE
    # gap is SCALE·d = (400/ln 10)·ΔPM exactly.
    d, m = 0.7, 50
    scores = np.stack([np.full(m, 1.0 + d), np.full(m, 1.0)])
    wins = pm_soft_wins(scores)
    assert wins[0, 1] == pytest.approx(m / (1 + math.exp(-d)))
    fit = fit_elo(wins, anchor=1)
    assert fit.ratings[0] == pytest.approx(elo_from_pm_difference(d), abs=1e-8)
    assert [row["model"] for row in elo_table(["rlhf", "base"], fit)] == ["rlhf", "base"]


def test_unbounded_cases_are_named():
    with pytest.raises(ValueError, match="model 0 never lost"):
        fit_elo([[0, 3], [0, 0]])
    with pytest.raises(ValueError, match="square"):
        fit_elo([[1, 3], [1, 0]])
