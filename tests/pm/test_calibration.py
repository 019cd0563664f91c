"""Calibration bins and ECE against a hand-worked example and a loop-by-loop float64 reference."""

import math

import numpy as np
import pytest

from hh.eval.calibration import calibration_bins, reliability_diagram, sigmoid


def _s(x):
    return 1.0 / (1.0 + math.exp(-x))


def test_hand_worked_example():
    deltas = [2.0, -1.0, 0.5, 3.0, -0.2, 0.0]
    bins = calibration_bins(deltas, np.zeros(6), n_bins=5)   # edges 0.5, 0.6, …, 1.0
    # bin 0: Δ=-0.2 (pred 1-s(-0.2), wrong) and Δ=0 (pred 0.5, a tie: half right)
    want_pred = [(_s(0.2) + 0.5) / 2, _s(0.5), _s(1.0), _s(2.0), _s(3.0)]
    want_obs = [0.25, 1.0, 0.0, 1.0, 1.0]
    assert bins["counts"] == [2, 1, 1, 1, 1]
    np.testing.assert_allclose(bins["predicted"], want_pred, rtol=1e-12)
    np.testing.assert_allclose(bins["observed"], want_obs, rtol=1e-12)
    ece = (2 * abs(0.25 - want_pred[0]) + abs(1 - _s(0.5)) + _s(1.0) + (1 - _s(2.0)) + (1 - _s(3.0))) / 6
    assert bins["ece"] == pytest.approx(ece, rel=1e-12)
    assert bins["ece"] == pytest.approx(0.3041772, abs=1e-6)


def _loop_reference(chosen, rejected, n_bins):
    width = 0.5 / n_bins
    sums = [[0, 0.0, 0.0] for _ in range(n_bins)]
    for c, r in zip(chosen, rejected):
        d = c - r
        p = 1.0 / (1.0 + math.exp(-abs(d)))
        k = min(int((p - 0.5) / width), n_bins - 1)
        sums[k][0] += 1
        sums[k][1] += p
        sums[k][2] += 1.0 if d > 0 else (0.5 if d == 0 else 0.0)
    ece = sum(n * abs(o / n - p / n) for n, p, o in sums if n) / len(chosen)
    return [n for n, _, _ in sums], ece


def test_matches_a_loop_reference_on_random_scores():
    rng = np.random.default_rng(0)
    chosen, rejected = rng.normal(0.5, 1.5, 3000), rng.normal(0.0, 1.5, 3000)
    bins = calibration_bins(chosen, rejected, n_bins=10)
    counts, ece = _loop_reference(chosen, rejected, 10)
    assert bins["counts"] == counts and sum(counts) == 3000
    assert bins["ece"] == pytest.approx(ece, rel=1e-10)


def test_a_calibrated_pm_has_small_ece_and_an_overconfident_one_does_not():
    rng = np.random.default_rng(1)
    delta = rng.normal(0.0, 2.0, 20000)
    # A beats B with probability sigmoid(s_A − s_B); "chosen" is whichever the labeller picked
    a_wins = rng.random(20000) < 1.0 / (1.0 + np.exp(-delta))
    chosen = np.where(a_wins, delta, -delta)   # chosen − rejected score gap (rejected = 0)
    assert calibration_bins(chosen, 0 * chosen)["ece"] < 0.02
    assert calibration_bins(3 * chosen, 0 * chosen)["ece"] > 0.05


def test_sigmoid_is_stable_and_the_diagram_is_written(tmp_path):
    np.testing.assert_allclose(sigmoid([-800.0, 0.0, 800.0]), [0.0, 0.5, 1.0])
    path = tmp_path / "r.png"
    reliability_diagram(calibration_bins([1.0, -2.0, 0.3], [0.0, 0.0, 0.0], 4), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
